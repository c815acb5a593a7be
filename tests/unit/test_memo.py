"""IdentityMemo derives once per live object, never confuses two objects, and keeps none alive."""

from __future__ import annotations

import gc
import threading
from dataclasses import replace
from functools import partial

import orjson

from clawq_server.memo import IdentityMemo
from clawq_server.model import ToolResult
from clawq_server.queue.result_meta import decode_result, encode_meta


class Obj:
    """A weakly referenceable key."""

    def __init__(self, n: int = 0) -> None:
        self.n = n


def test_one_derivation_per_object_and_none_shared_between_equal_objects() -> None:
    memo: IdentityMemo[str] = IdentityMemo(4)
    calls: list[object] = []

    def derive(obj: object) -> str:
        calls.append(obj)
        return f"v{len(calls)}"

    first, twin = ToolResult(output=b"a"), ToolResult(output=b"a")
    assert memo.get(first, partial(derive, first)) == "v1"
    assert memo.get(first, partial(derive, first)) == "v1"
    assert memo.get(twin, partial(derive, twin)) == "v2"  # equal but not the same object
    assert calls == [first, twin]


def test_a_value_goes_with_its_object() -> None:
    """The memo never keeps an object alive: once it is gone, so is what it derived."""
    memo: IdentityMemo[int] = IdentityMemo(8)
    kept = Obj(1)
    memo.get(kept, lambda: 1)
    for n in range(100):
        assert memo.get(Obj(n), partial(int, n)) == n  # a recycled id never answers
    gc.collect()
    assert len(memo) == 1
    del kept
    gc.collect()
    assert len(memo) == 0


def test_objects_without_weak_references_are_derived_every_time() -> None:
    memo: IdentityMemo[int] = IdentityMemo(8)
    key = {"a": 1}
    derived: list[int] = []

    def derive() -> int:
        derived.append(1)
        return 1

    for _ in range(2):
        memo.get(key, derive)
    assert (derived, len(memo)) == ([1, 1], 0)


def test_least_recently_used_objects_are_dropped_beyond_the_size() -> None:
    memo: IdentityMemo[int] = IdentityMemo(2)
    keys = [Obj(n) for n in range(3)]
    derived: list[int] = []

    def get(n: int) -> None:
        def derive() -> int:
            derived.append(n)
            return n

        assert memo.get(keys[n], derive) == n

    for n in (0, 1, 0, 2):  # 1 is now the least recently used, and dropped
        get(n)
    for n in (0, 2, 1):
        get(n)
    assert derived == [0, 1, 2, 1]


def test_threads_each_get_the_value_of_their_own_object() -> None:
    memo: IdentityMemo[int] = IdentityMemo(16)
    objects = [Obj(n) for n in range(64)]
    wrong: list[int] = []

    def hammer() -> None:
        for _ in range(200):
            for obj in objects:
                if memo.get(obj, partial(int, obj.n)) != obj.n:
                    wrong.append(obj.n)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_cached_results_store_the_same_metadata_as_computed_ones() -> None:
    payload = {"entries": [{"path": f"f{i}", "type": "file", "size": i} for i in range(50)]}
    computed = ToolResult(output=b"x", exit_code=0, payload=payload)
    hit = replace(computed, cached=True)
    for _ in range(2):  # the second encoding comes from the memo
        meta = orjson.loads(encode_meta(hit))
        assert meta == {**orjson.loads(encode_meta(computed)), "cached": True}
        assert decode_result(b"x", b"", encode_meta(hit)) == hit


def test_a_cached_payload_is_encoded_once_per_result() -> None:
    """What a cache hit stores reuses its result's encoding (payloads never change once made)."""
    payload: dict[str, object] = {"entries": [1, 2]}
    hit = ToolResult(payload=payload, cached=True)
    first = encode_meta(hit)
    payload["entries"] = [3]  # never done by clawq; shows the memo answered
    assert encode_meta(hit) == first
    assert orjson.loads(encode_meta(replace(hit, cached=False)))["payload"] == {"entries": [3]}
