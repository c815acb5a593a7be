"""Values derived from large objects that are shared rather than copied, kept by identity.

A cache hit of the in-process cache hands out the very ToolResult its entry holds, so what
is derived from it (its stored JSON, its protobuf bytes) is the same on every hit; deriving
it once per entry rather than once per hit matters when a listing runs to megabytes.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """The most recently used values derived from objects, each kept while its object lives.

    Keys are held weakly and compared by identity: a value goes when its object does (a
    cache entry evicted, a hit's result answered), so the memo never keeps an object alive,
    and an object that cannot be weakly referenced is never memoized. Objects must not
    change once seen. Safe across threads.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._held: OrderedDict[int, tuple[weakref.ref[Any], V]] = OrderedDict()
        # Reentrant: a collection inside a locked section may run _forget on this thread.
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._held)

    def get(self, key: object, derive: Callable[[], V]) -> V:
        """The value derived from key, computed by derive when not kept."""
        with self._lock:
            held = self._held.get(id(key))
            if held is not None and held[0]() is key:
                self._held.move_to_end(id(key))
                return held[1]
        value = derive()  # outside the lock: it may take milliseconds
        try:
            ref = weakref.ref(key, partial(self._forget, id(key)))
        except TypeError:
            return value
        with self._lock:
            self._held[id(key)] = (ref, value)
            while len(self._held) > self._size:
                self._held.popitem(last=False)
        return value

    def _forget(self, ident: int, ref: weakref.ref[Any]) -> None:
        with self._lock:
            held = self._held.get(ident)
            if held is not None and held[0] is ref:
                del self._held[ident]
