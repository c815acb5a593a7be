"""What every benchmark shares: figures, targets, medians, percentiles, the table and the JSON."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

TIMES = "\u00d7"  # the multiplication sign of ratios in the table


class Status(StrEnum):
    """Whether a figure was measured."""

    OK = "ok"
    ERROR = "error"
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Target:
    """A bound on a figure's ratio to its baseline: at least (higher is better) or at most."""

    bound: float
    at_least: bool = True

    @property
    def text(self) -> str:
        """The target as the table shows it, e.g. "≥ 0.7" and the multiplication sign."""
        return f"{'≥' if self.at_least else '≤'} {self.bound:g}{TIMES}"

    def met(self, ratio: float) -> bool:
        """True when ratio satisfies the bound."""
        return ratio >= self.bound if self.at_least else ratio <= self.bound


@dataclass(slots=True)
class Figure:
    """One line of the table and one entry of latest.json.

    ratio is value / baseline_value; a figure with no target (an informational line)
    has met None.
    """

    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    status: Status = Status.OK
    note: str = ""

    @classmethod
    def measured(
        cls,
        name: str,
        value: float,
        unit: str,
        *,
        baseline: tuple[str, float] | None = None,
        target: Target | None = None,
        note: str = "",
    ) -> Figure:
        """A measured figure, its ratio to baseline and whether the target is met."""
        figure = cls(name, value, unit, note=note)
        if baseline is not None:
            figure.baseline_name, figure.baseline_value = baseline
            if baseline[1] > 0:
                figure.ratio = value / baseline[1]
        if target is not None:
            figure.target = target.text
            figure.met = figure.ratio is not None and target.met(figure.ratio)
        return figure

    @classmethod
    def failed(cls, name: str, status: Status, note: str) -> Figure:
        """A figure that could not be measured (error) or not yet (pending)."""
        return cls(name, 0.0, "", status=status, note=note, met=None)


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each benchmark does; quick() is the smoke test's."""

    quick: bool = False
    repeats: int = 3
    submit_tasks: int = 50_000
    latency_calls: int = 2_000
    e2e_tasks: int = 20_000
    tree_entries: int = 10_000
    cache_calls: int = 300
    peer_tasks: int = 3_000
    memory_tasks: int = 1_000_000
    batch: int = 1_000

    @classmethod
    def small(cls) -> Sizes:
        """Tiny sizes: every clawq figure measured in seconds."""
        return cls(
            quick=True,
            submit_tasks=2_000,
            latency_calls=100,
            e2e_tasks=300,
            tree_entries=200,
            cache_calls=30,
            peer_tasks=200,
            memory_tasks=5_000,
        )


@dataclass
class Sample:
    """Latencies of one run (seconds each) and its wall time."""

    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def throughput(self) -> float:
        """Calls per second over the run."""
        return len(self.latencies) / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile latency (0 < q < 100), in seconds."""
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]


async def median_of(repeats: int, run: Callable[[], Awaitable[float]]) -> float:
    """The median of repeats runs of an async measurement."""
    return statistics.median([await run() for _ in range(repeats)])


@dataclass(frozen=True, slots=True)
class Latency:
    """Medians over runs of p50 and p99 (seconds) and of throughput (calls/s)."""

    p50: float
    p99: float
    throughput: float


async def median_latency(repeats: int, run: Callable[[], Awaitable[Sample]]) -> Latency:
    """Each statistic's median over repeats runs."""
    return summarize([await run() for _ in range(repeats)])


async def alternating(
    repeats: int, runs: Sequence[Callable[[], Awaitable[Sample]]]
) -> list[Latency]:
    """Each run's latency over repeats rounds in which the runs take turns.

    A figure and its baseline measured one after the other can see a shared machine at
    different speeds; taking turns lets its drift fall on both alike.
    """
    samples: list[list[Sample]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, kept in zip(runs, samples, strict=True):
            kept.append(await run())
    return [summarize(kept) for kept in samples]


def summarize(samples: Sequence[Sample]) -> Latency:
    """Each statistic's median over samples."""
    return Latency(
        statistics.median(s.percentile(50) for s in samples),
        statistics.median(s.percentile(99) for s in samples),
        statistics.median(s.throughput for s in samples),
    )


async def load(call: Callable[[], Awaitable[object]], total: int, in_flight: int) -> Sample:
    """total calls with in_flight of them outstanding at any time; each call's latency."""
    sample = Sample()
    remaining = [total]

    async def caller() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            await call()
            sample.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(in_flight):
                group.create_task(caller())
    except ExceptionGroup as failed:  # the table names the call's own error, not the group
        raise failed.exceptions[0] from failed
    sample.elapsed = time.perf_counter() - started
    return sample


def rate(count: int, started: float) -> float:
    """count items per second since started (a perf_counter reading)."""
    return count / max(time.perf_counter() - started, 1e-9)


def _cell(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def table(figures: Sequence[Figure]) -> str:
    """The markdown table: figure, clawq value, baseline, ratio, target, met."""
    lines = [
        "| figure | clawq | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        if f.status is not Status.OK:
            lines.append(f"| {f.name} | {f.status.value}: {f.note} | | | | |")
            continue
        baseline = (
            f"{f.baseline_name}: {_cell(f.baseline_value, f.unit)}" if f.baseline_name else "—"
        )
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}{TIMES}"
        met = "—" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(
            f"| {f.name} | {_cell(f.value, f.unit)} | {baseline} | {ratio} | {f.target or '—'} "
            f"| {met} |"
        )
    return "\n".join(lines)


def write_json(path: Path, figures: Sequence[Figure], meta: dict[str, Any]) -> None:
    """latest.json: the run's metadata and one entry per figure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [{**asdict(f), "status": f.status.value} for f in figures]
    path.write_text(json.dumps({**meta, "figures": entries}, indent=2) + "\n")
