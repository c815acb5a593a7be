"""ToolCache: the cache the server uses — lookups, single-flight runs, invalidation, control.

A result is served only while its proof holds (see fingerprint.py and proofs.py).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial

import orjson

from clawq_server.cache.base import Entry, EntryStore
from clawq_server.cache.control import ToolCacheStats
from clawq_server.cache.fingerprint import Kind, Proof, Target, plan
from clawq_server.cache.flight import Flight, Flights
from clawq_server.cache.memory import MemoryStore
from clawq_server.cache.proofs import Proofs, same, watcher
from clawq_server.cache.watch import Watcher
from clawq_server.config import CacheConfig
from clawq_server.errors import ClawqError
from clawq_server.model import JsonObject, NewTask, SideEffect, Task, ToolResult, finished_task
from clawq_server.policy import paths
from clawq_server.policy.principal import Principal
from clawq_server.tools.base import Tool
from clawq_server.tools.registry import ToolRegistry

Compute = Callable[[], Awaitable[ToolResult]]
# Targets remembered per (tool, canonical arguments): repeated calls skip planning.
PLAN_MEMO = 1024


class ToolCache:
    """Result cache over an entry store, with inotify proofs and single flight per process."""

    def __init__(
        self,
        config: CacheConfig,
        store: EntryStore,
        registry: ToolRegistry,
        watcher: Watcher | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._registry = registry
        self._proofs = Proofs(watcher, max(config.max_entries, 1) if store.shared else 0)
        self._plans: OrderedDict[tuple[str, bytes], tuple[Principal, Target]] = OrderedDict()
        self._flights = Flights()
        if isinstance(store, MemoryStore):
            store.on_drop = self._proofs.forget

    @classmethod
    def in_memory(cls, config: CacheConfig, registry: ToolRegistry) -> ToolCache:
        """The embedded cache: entries in process memory, proofs by inotify when available."""
        return cls(config, MemoryStore(config.max_entries, config.max_bytes), registry, watcher())

    async def close(self) -> None:
        """Drop every proof and close the store and the watcher."""
        self._proofs.close()
        await self._store.close()

    def cacheable(self, tool: Tool) -> bool:
        """True when results of tool may be stored and served."""
        config = self._config
        return (
            config.enabled
            and tool.cacheable
            and tool.side_effect is SideEffect.READ_ONLY
            and tool.name not in config.disabled_tools
            and self._ttl(tool.name) > 0
        )

    async def lookup(self, principal: Principal, task: NewTask) -> Task | None:
        """A finished task from a still-true entry, or None. Never runs the tool.

        Misses are not counted here: the run that follows counts its own.
        """
        if task.idempotency_key:
            return None  # an idempotency key promises a stored task the caller can fetch
        found = self._registry.find(task.tool)
        if found is None or not self.cacheable(found.tool):
            return None
        args = orjson.loads(task.args_json)
        try:
            target = self._plan(task.tool, args, task.args_json, principal)
        except ClawqError:
            return None
        entry = await self._fresh(target)
        if entry is None:
            return None
        self._store.count(task.tool, hit=True)
        return finished_task(task, args, entry.result)

    async def run(
        self, tool: Tool, args: JsonObject, principal: Principal, compute: Compute
    ) -> ToolResult:
        """The result of compute(), served from or stored into the cache when allowed."""
        if not self.cacheable(tool):
            return await compute()
        args_json = orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
        try:
            target = self._plan(tool.name, args, args_json, principal)
        except ClawqError:
            return await compute()  # the tool raises the same refusal itself
        entry = await self._fresh(target)
        self._store.count(tool.name, hit=entry is not None)
        if entry is not None:
            return entry.result
        return await self._single_flight(target, compute)

    async def invalidate_write(self, principal: Principal, args: JsonObject) -> int:
        """Drop what a write to args["path"] touches: the path, its directories, what is under."""
        try:
            confined = paths.confine(principal, str(args.get("path", "")))
        except ClawqError:
            return 0
        written = confined.absolute
        # Every ancestor, not only those inside the deciding root: an outer root's listing
        # (roots may nest) shows the written path too.
        exact = [str(written), *(str(p) for p in written.parents)]
        return await self._store.drop_paths(exact, str(written))

    async def stats(self) -> tuple[bool, list[ToolCacheStats]]:
        """Whether the cache is on, and figures per tool."""
        return self._config.enabled, await self._store.stats()

    async def clear(self) -> int:
        """Drop everything."""
        removed = await self._store.clear()
        self._proofs.forget_all()
        return removed

    async def invalidate(self, principal: Principal, path_prefix: str, pattern: str) -> int:
        """Drop entries under path_prefix (inside the principal's roots) or matching pattern.

        A relative pattern is taken relative to the principal's first root.
        """
        confined = (
            paths.confine(principal, path_prefix, field="path_prefix") if path_prefix else None
        )
        prefix = str(confined.absolute) if confined else ""
        if pattern and not pattern.startswith("/") and principal.roots:
            pattern = str(paths.resolve_root(principal.roots[0]) / pattern)
        return await self._store.drop_where(prefix, pattern)

    def _plan(self, tool: str, args: JsonObject, args_json: bytes, principal: Principal) -> Target:
        """plan(), remembered: a target follows from the call and the principal alone.

        Confinement is lexical (what a path leads to is the proof's business, checked on
        every hit, the root's identity included: a root symlink pointed elsewhere fails
        it), and a reloaded policy makes new Principal objects, so a target is reused only
        for the very principal it was planned for. Refusals are not kept.
        """
        key = (tool, args_json)
        held = self._plans.get(key)
        if held is not None and held[0] is principal:
            self._plans.move_to_end(key)
            return held[1]
        target = plan(tool, args, args_json, principal)
        self._plans[key] = (principal, target)
        if len(self._plans) > PLAN_MEMO:
            self._plans.popitem(last=False)
        return target

    def _ttl(self, tool: str) -> float:
        return float(self._config.tool_ttl_s.get(tool, self._config.ttl_s))

    async def _fresh(self, target: Target) -> Entry | None:
        entry = await self._store.get(target.key)
        if entry is None:
            return None
        if not self._within_bounds(entry):
            return None  # another process's settings let it in; this one's do not
        if await self._proofs.valid(entry, target):
            return entry
        await self._store.drop([target.key])
        return None

    def _within_bounds(self, entry: Entry) -> bool:
        """True when this process's TTL and size cap for the tool allow serving entry."""
        fresh = not self._store.shared or entry.age_s <= self._ttl(entry.tool)
        return fresh and entry.size <= self._config.max_entry_bytes

    async def _single_flight(self, target: Target, compute: Compute) -> ToolResult:
        async def lead(flight: Flight) -> ToolResult:
            return await self._lead(flight, target, compute)

        return await self._flights.run(target.key, lead, partial(self._joinable, target))

    def _joinable(self, target: Target, flight: Flight) -> bool:
        """A late call joins a run that has not started yet (it is still proving its inputs),
        or one whose inputs it proved and that have not changed since. A run whose inputs
        could not be proven may have read them before the late call was made: not joined."""
        if not flight.proved:
            return True
        proof = flight.proof
        if proof is None:
            return False
        entry = Entry("", "", "", "", ToolResult(), 0, proof.root_id, proof.stamp)
        return self._proofs.holds(proof, target, entry)

    async def _lead(self, flight: Flight, target: Target, compute: Compute) -> ToolResult:
        proof = await self._proofs.prove(target)
        flight.proof, flight.proved = proof, True
        kept = False
        try:
            result = await compute()
            if proof is not None and _storable(result):
                kept = await self._store_if_unchanged(target, proof, result)
            return result
        finally:
            if not kept:
                self._proofs.release(proof)

    async def _store_if_unchanged(self, target: Target, proof: Proof, result: ToolResult) -> bool:
        size = _size(result)
        if size > self._config.max_entry_bytes:
            return False
        entry = Entry(
            target.key, target.tool, target.kind.value, target.path,
            replace(result, cached=True), size,
            proof.root_id, proof.stamp, proof.digest, secrets.token_hex(8),
        )  # fmt: skip
        if not self._proofs.watching and target.kind is not Kind.OPAQUE:
            # No watches: a new walk must agree after the run.
            again = await self._proofs.prove(target)
            if again is None or not same(again, entry):
                return False
        elif not self._proofs.holds(proof, target, entry):
            return False
        await self._store.put(entry, self._ttl(target.tool))
        if await self._store.get(target.key) is None:
            return False  # refused by the store's bounds
        self._proofs.keep(target.key, entry.id, proof)
        return True


def _storable(result: ToolResult) -> bool:
    return result.exit_code in (None, 0) and not result.signal


def _size(result: ToolResult) -> int:
    payload = orjson.dumps(result.payload) if result.payload is not None else b""
    return len(result.output) + len(result.stderr) + len(payload)


__all__ = ["ToolCache", "watcher"]
