"""`python -m benchmarks`: run every figure group, print the table, write latest.json."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import logging
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_cache,
    bench_e2e,
    bench_latency,
    bench_memory,
    bench_peers,
    bench_submit,
)
from benchmarks.harness import Figure, Sizes, Status, table, write_json
from benchmarks.services import REPO, Context, Group, private_redis, python_process

LATEST = REPO / "benchmarks" / "results" / "latest.json"
README = REPO / "benchmarks" / "README.md"
START, END = "<!-- latest:start -->", "<!-- latest:end -->"
log = logging.getLogger("benchmarks")


def groups(quick: bool) -> list[Group]:
    """Every group in table order; the peers are left out of a quick run."""
    selected = [
        *bench_submit.GROUPS,
        *bench_latency.GROUPS,
        *bench_e2e.GROUPS,
        *bench_cache.GROUPS,
        *bench_memory.GROUPS,
    ]
    return selected if quick else [*selected, *bench_peers.GROUPS]


async def run_group(ctx: Context, group: Group) -> list[Figure]:
    """The group's figures, or one error line per expected figure if it raised."""
    log.info("measuring %s (%d figures)", group.names[0], len(group.names))
    try:
        figures = await group.run(ctx)
    except Exception as exc:  # one broken figure must not stop the others
        traceback.print_exc(file=sys.stderr)
        note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        return [Figure.failed(name, Status.ERROR, note) for name in group.names]
    return figures


async def run_all(sizes: Sizes, tmp: Path, selected: list[Group]) -> list[Figure]:
    """Every selected group in order; groups that failed are retried once at the end."""
    root = tmp / "workspace"
    root.mkdir()
    (root / "a.txt").write_text("hello from the benchmark\n")
    async with (
        private_redis(tmp) as redis_url,
        python_process("benchmarks.echo", ready=b"listening") as ready,
    ):
        os.environ["CLAWQ_BENCH_REDIS_URL"] = redis_url
        ctx = Context(sizes, tmp, redis_url, root, echo_target=ready.split()[-1])
        results = [await run_group(ctx, group) for group in selected]
        for index, group in enumerate(selected):
            # Only a group that failed whole is retried (the peers retry each peer themselves).
            if all(f.status is Status.ERROR for f in results[index]):
                log.info("retrying %s", group.names[0])
                results[index] = await run_group(ctx, group)
    return [figure for figures in results for figure in figures]


def meta(sizes: Sizes, argv: list[str]) -> dict[str, Any]:
    """Date, machine, command and commit of this run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - git from PATH, like make
        capture_output=True, text=True, cwd=REPO, check=False,
    ).stdout.strip()  # fmt: skip
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )  # fmt: skip
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "ram_gib": round(mem_kb / (1 << 20), 1)},
        "command": " ".join(["python -m benchmarks", *argv]),
        "commit": commit,
        "sizes": dataclasses.asdict(sizes),
    }


def update_readme(path: Path, markdown: str, info: dict[str, Any]) -> None:
    """Replace the README's latest table with this run's, headed by date, machine and command."""
    machine = info["machine"]
    header = (
        f"{info['date']} · {machine['cores']} cores, {machine['ram_gib']} GiB RAM · "
        f"`{info['command']}` · commit {info['commit']}"
    )
    text = path.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    path.write_text(f"{before}{START}\n{header}\n\n{markdown}\n{END}{after}")


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no peers (smoke test)")
    parser.add_argument("--memory-tasks", type=int, help="tasks of the memory figure")
    parser.add_argument("--only", action="append", default=[], help="groups whose name has this")
    parser.add_argument("--out", type=Path, default=LATEST, help="where to write the JSON")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run, print the markdown table, write the JSON; exit 1 if a figure errored."""
    logging.basicConfig(format="%(asctime)s %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    args = parse(argv)
    quick = args.quick or os.environ.get("CLAWQ_BENCH_SMALL") == "1"
    sizes = Sizes.small() if quick else Sizes()
    memory = args.memory_tasks or int(os.environ.get("CLAWQ_BENCH_MEMORY_TASKS", "0"))
    if memory:
        sizes = dataclasses.replace(sizes, memory_tasks=memory)
    # --only picks from every group, the peers included even in a quick run.
    candidates = groups(quick=not args.only and quick)
    selected = [
        g for g in candidates if not args.only or any(o in n for o in args.only for n in g.names)
    ]
    with tempfile.TemporaryDirectory(prefix="clawq-bench-") as tmp:
        figures = asyncio.run(run_all(sizes, Path(tmp), selected))
    markdown, info = table(figures), meta(sizes, argv)
    print(markdown)
    write_json(args.out, figures, info)
    if args.out == LATEST and not quick and not args.only:
        update_readme(README, markdown, info)
    return 1 if any(f.status is Status.ERROR for f in figures) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
