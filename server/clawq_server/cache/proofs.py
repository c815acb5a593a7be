"""This process's proofs that stored cache entries still hold, kept per key and checked on hits.

On a hit the watch generations are checked after draining inotify (O(1) when no event
arrived at all), a file's stamp is re-read with one lstat, and the root's identity with one
stat. A process without a proof of an entry (a shared Redis entry, or no inotify) proves it
again by walking.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from dataclasses import dataclass

from clawq_server.cache.base import Entry
from clawq_server.cache.fingerprint import Kind, Proof, Target, file_stamp, prove
from clawq_server.cache.watch import Watcher, WatchUnavailable


@dataclass(slots=True)
class _View:
    """This process's proof of one stored entry."""

    entry_id: str
    proof: Proof


class Proofs:
    """Proofs by entry key, holding inotify watches on what each entry depends on.

    With bound > 0 (a shared store, whose entries this process never sees dropped), at most
    bound proofs are kept, the least recently used given up first.
    """

    def __init__(self, watcher: Watcher | None, bound: int = 0) -> None:
        self._watcher = watcher
        self._bound = bound
        self._views: OrderedDict[str, _View] = OrderedDict()

    @property
    def watching(self) -> bool:
        """True when proofs are kept (inotify is available)."""
        return self._watcher is not None

    async def valid(self, entry: Entry, target: Target) -> bool:
        """True when entry still holds for target: by a kept proof, else by proving anew."""
        view = self._views.get(target.key)
        if view is not None and view.entry_id == entry.id:
            self._views.move_to_end(target.key)
            return self.holds(view.proof, target, entry)
        if target.kind is Kind.OPAQUE:
            return True
        proof = await self.prove(target)
        if proof is None or not same(proof, entry):
            self.release(proof)
            return False
        self.keep(target.key, entry.id, proof)
        return True

    def holds(self, proof: Proof, target: Target, entry: Entry) -> bool:
        """The proof still holds: generations unmoved, same file stamp, same root."""
        if target.kind is Kind.OPAQUE:
            return True
        watcher = self._watcher
        if watcher is None:
            return False
        if watcher.drain() != proof.seen:
            seen, versions = watcher.snapshot(proof.deps)
            if versions != proof.versions:
                return False
            proof.seen = seen
        try:
            if target.kind is Kind.FILE:
                st = os.stat(target.path, follow_symlinks=False)
                if file_stamp(st) != entry.stamp:
                    return False
            root = os.stat(target.confined.root_path) if target.confined else None
        except OSError:
            return False
        return root is None or (root.st_dev, root.st_ino) == entry.root_id

    async def prove(self, target: Target) -> Proof | None:
        """A fresh proof of what target depends on (None when it cannot be proven)."""
        if target.kind is Kind.FILE:
            return prove(target, self._watcher)  # a few opens and one lstat: cheaper than a hop
        return await asyncio.to_thread(prove, target, self._watcher)

    def keep(self, key: str, entry_id: str, proof: Proof) -> None:
        """Remember proof as this process's proof of the entry stored under key."""
        if self._watcher is None:
            return  # without watches a proof is only good once: every hit proves again
        self.forget(key)
        self._views[key] = _View(entry_id, proof)
        if self._bound > 0:
            while len(self._views) > self._bound:
                self.forget(next(iter(self._views)))

    def forget(self, key: str) -> None:
        """Give up the proof kept for key, if any."""
        view = self._views.pop(key, None)
        if view is not None:
            self.release(view.proof)

    def forget_all(self) -> None:
        """Give up every proof."""
        for key in list(self._views):
            self.forget(key)

    def release(self, proof: Proof | None) -> None:
        """Drop the watches proof holds."""
        if proof is not None and proof.deps and self._watcher is not None:
            self._watcher.release(proof.deps)
            proof.deps = ()

    def close(self) -> None:
        """Give up every proof and close the watcher."""
        self.forget_all()
        if self._watcher is not None:
            self._watcher.close()


def watcher() -> Watcher | None:
    """An inotify watcher, or None where the platform has none (entries are then re-proven)."""
    try:
        return Watcher()
    except WatchUnavailable:
        return None


def same(proof: Proof, entry: Entry) -> bool:
    """True when a fresh proof describes what entry was stored with."""
    return (
        proof.root_id == entry.root_id
        and proof.stamp == (tuple(entry.stamp) if entry.stamp is not None else None)
        and proof.digest == entry.digest
    )
