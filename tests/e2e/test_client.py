"""The Python client against a real clawq server (SQLite, in-process workers), over a channel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import clawq


@pytest.fixture
async def client(served: Any) -> Any:
    """An AsyncClient connected to the test server."""
    async with clawq.AsyncClient(served.target) as c:
        yield c


async def test_execute_read_file(served: Any, client: clawq.AsyncClient) -> None:
    """execute returns the file's content as a Result of a succeeded task."""
    (served.root / "notes.txt").write_text("hello clawq")
    result = await client.execute("read_file", path="notes.txt")
    assert result.output == "hello clawq"
    assert result.data == b"hello clawq"
    assert result.task_id
    task = await client.get(result.task_id)
    assert (task.state, task.tool, task.args) == ("SUCCEEDED", "read_file", {"path": "notes.txt"})
    assert task.created is not None
    assert task.created.tzinfo is not None


async def test_write_then_read(served: Any, client: clawq.AsyncClient) -> None:
    """write_file with content= writes the file that read_file then returns."""
    await client.execute("write_file", path="out.txt", content="written", mode="create")
    assert (served.root / "out.txt").read_text() == "written"
    await client.execute("write_file", path="out.txt", content=b" more", mode="append")
    assert (await client.execute("read_file", path="out.txt")).output == "written more"


async def test_failed_task_raises_task_failed(client: clawq.AsyncClient) -> None:
    """A tool failure is a TaskFailed carrying the FAILED task and its reason."""
    with pytest.raises(clawq.TaskFailed) as info:
        await client.execute("read_file", path="does-not-exist.txt")
    assert info.value.task.state == "FAILED"
    assert info.value.reason
    assert info.value.task.error is not None


async def test_unknown_tool_is_an_rpc_error(client: clawq.AsyncClient) -> None:
    """An unknown tool raises a typed RPC error with the TOOL_NOT_FOUND reason."""
    with pytest.raises((clawq.NotFound, clawq.InvalidArgument)) as info:
        await client.execute("no_such_tool", x=1)
    assert info.value.reason == "TOOL_NOT_FOUND"


async def test_misspelled_argument_is_named(client: clawq.AsyncClient) -> None:
    """An argument the tool does not have comes back as a field violation naming it."""
    with pytest.raises(clawq.InvalidArgument) as info:
        await client.execute("read_file", path="notes.txt", paht="notes.txt")
    assert [f for f, _ in info.value.field_violations] == ["call.args.paht"]
    with pytest.raises(clawq.InvalidArgument) as info:
        await client.execute("read_file", path=12)
    assert [f for f, _ in info.value.field_violations] == ["call.args.path"]


async def test_submit_batch_wait_and_get_many(served: Any, client: clawq.AsyncClient) -> None:
    """A batch's tasks run; wait returns a terminal task; get_many omits unknown ids."""
    (served.root / "a.txt").write_text("a")
    ids = await client.submit_batch(
        [clawq.Call("list_directory", path="."), clawq.Call("read_file", path="a.txt")]
    )
    assert len(ids) == 2
    task = await client.wait(ids[0], timeout=10)
    assert task.done
    assert task.state == "SUCCEEDED"
    assert task.result is not None
    tasks = await client.get_many([*ids, "0" * 26])
    assert [t.id for t in tasks] == ids


async def test_submit_batch_is_atomic(client: clawq.AsyncClient) -> None:
    """One invalid call rejects the whole batch, naming calls[i], and stores nothing."""
    with pytest.raises(clawq.InvalidArgument) as info:
        await client.submit_batch(
            [clawq.Call("read_file", path="a"), clawq.Call("read_file", path="b", paht="b")]
        )
    assert any(f.startswith("calls[1]") for f, _ in info.value.field_violations)
    pages = [page async for page in client.list_tasks()]
    assert sum(len(p) for p in pages) == 0


async def test_idempotency_key(client: clawq.AsyncClient) -> None:
    """The same key returns the same task; reusing it with other arguments is AlreadyExists."""
    first = await client.submit("read_file", path="a.txt", idempotency_key="key-1", delay=60)
    again = await client.submit("read_file", path="a.txt", idempotency_key="key-1", delay=60)
    assert first == again
    with pytest.raises(clawq.AlreadyExists):
        await client.submit("read_file", path="b.txt", idempotency_key="key-1")
    assert (await client.get(first)).idempotency_key == "key-1"


async def test_submit_many_streams_with_per_item_errors(client: clawq.AsyncClient) -> None:
    """2,500 streamed calls get 2,500 acks in order; the one bad call is rejected alone."""
    calls = (
        clawq.Call("no_such_tool") if i == 1234 else clawq.Call("read_file", path=f"f{i}", delay=60)
        for i in range(2500)
    )
    acks = [ack async for ack in client.submit_many(calls, batch_size=1000)]
    assert [a.index for a in acks] == list(range(2500))
    rejected = [a for a in acks if not a.accepted]
    assert [a.index for a in rejected] == [1234]
    assert isinstance(rejected[0].error, clawq.Error)
    assert rejected[0].error.reason == "TOOL_NOT_FOUND"
    # Named as the call's own field, not by its position in a server-side batch.
    assert [f for f, _ in rejected[0].error.field_violations] == ["call.tool"]
    assert len({a.task_id for a in acks if a.accepted}) == 2499


async def test_messages_over_the_size_limit(client: clawq.AsyncClient) -> None:
    """Calls adding up to more than a request may hold go in several batches, and a call
    larger than any request is rejected on its own; the rest are stored. Listing them
    pages in pages that fit; fetching them all at once is refused with a clear reason."""
    big = b"x" * (4 << 20)
    calls = [clawq.Call("write_file", path=f"w{i}", content=big, delay=60) for i in range(20)]
    calls.insert(7, clawq.Call("write_file", path="huge", content=b"x" * (65 << 20), delay=60))
    acks = [ack async for ack in client.submit_many(calls, batch_size=1000)]
    assert [a.index for a in acks] == list(range(21))
    assert [a.index for a in acks if not a.accepted] == [7]
    assert isinstance(acks[7].error, clawq.InvalidArgument)
    assert acks[7].error.field_violations[0][0] == "call"
    ids = [a.task_id for a in acks if a.accepted]
    pages = [page async for page in client.list_tasks(page_size=1000)]
    assert [len(page) for page in pages] == [15, 5]  # as many 4 MiB tasks as fit in 63 MiB
    assert sorted(t.id for page in pages for t in page) == sorted(ids)
    with pytest.raises(clawq.ResourceExhausted) as caught:
        await client.get_many(ids)
    assert caught.value.reason == "RESPONSE_TOO_LARGE"
    assert len(await client.get_many(ids[:10])) == 10


async def test_list_tasks_pages_and_filters(client: clawq.AsyncClient) -> None:
    """list_tasks pages through every task and filters by tool, state and creation time."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    ids = [await client.submit("read_file", path=f"p{i}", delay=60) for i in range(5)]
    await client.submit("list_directory", path=".", delay=60)
    pages = [page async for page in client.list_tasks(tool="read_file", page_size=2)]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert {t.id for p in pages for t in p} == set(ids)
    queued = [t async for p in client.list_tasks(state="queued", created_after=before) for t in p]
    assert len(queued) == 6
    assert [p async for p in client.list_tasks(state=["SUCCEEDED", "FAILED"])] == [[]]


async def test_cancel(client: clawq.AsyncClient) -> None:
    """A queued task can be cancelled once; cancelling it again is FailedPrecondition."""
    task_id = await client.submit("read_file", path="x", delay=timedelta(minutes=5))
    assert (await client.cancel(task_id)).state == "CANCELLED"
    with pytest.raises(clawq.FailedPrecondition):
        await client.cancel(task_id)


async def test_get_unknown_task_is_not_found(client: clawq.AsyncClient) -> None:
    """An unknown task id raises NotFound with the TASK_NOT_FOUND reason."""
    with pytest.raises(clawq.NotFound) as info:
        await client.get("0" * 26)
    assert info.value.reason == "TASK_NOT_FOUND"


async def test_watch_until_terminal(served: Any, client: clawq.AsyncClient) -> None:
    """watch yields state changes and ends once the task is terminal."""
    (served.root / "w.txt").write_text("w")
    task_id = await client.submit("read_file", path="w.txt")
    seen = [t async for t in client.watch([task_id])]
    assert seen
    assert seen[-1].done
    assert {t.id for t in seen} == {task_id}


async def test_tools_lists_the_file_tools(client: clawq.AsyncClient) -> None:
    """tools() lists the built-in file tools with schemas and side effects."""
    tools = {t.name: t for t in await client.tools()}
    assert {"read_file", "write_file", "list_directory", "delete_file"} <= set(tools)
    assert tools["read_file"].side_effect == "READ_ONLY"
    assert tools["write_file"].side_effect == "WRITE"
    assert "path" in tools["read_file"].schema.get("properties", {})


async def test_admin_calls(client: clawq.AsyncClient) -> None:
    """Queue, cache and dead-letter administration answer with typed figures."""
    await client.submit("read_file", path="later", delay=60)
    stats = await client.queue_stats()
    assert stats.delayed + stats.ready >= 1
    assert stats.dead == 0
    assert isinstance((await client.cache_stats()).enabled, bool)
    assert await client.cache_clear() >= 0
    assert await client.cache_invalidate(path_prefix="sub") >= 0
    assert [p async for p in client.dead_letters()] == [[]]
    assert await client.requeue_dead() == 0


async def test_sync_client(served: Any) -> None:
    """The blocking Client does the same through ordinary calls and iterators."""
    (served.root / "s.txt").write_text("sync")

    def use() -> tuple[str, list[clawq.Ack], int]:
        with clawq.Client(served.target) as c:
            output = c.execute("read_file", path="s.txt").output
            acks = list(c.submit_stream([clawq.Call("read_file", path="s.txt")] * 3))
            total = sum(len(page) for page in c.list_tasks(page_size=2))
            return output, acks, total

    output, acks, total = await asyncio.to_thread(use)
    assert output == "sync"
    assert [a.accepted for a in acks] == [True] * 3
    assert total == 4
