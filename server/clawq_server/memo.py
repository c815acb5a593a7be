"""Values derived from large objects that are shared rather than copied, kept by identity.

A cache hit hands out the very payload object its entry holds, so what is derived from
that payload (its JSON, its protobuf bytes) is the same on every hit; computing it once per
entry rather than once per hit matters when a listing runs to megabytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class IdentityMemo(Generic[V]):
    """The most recently used values derived from objects, keyed by the object's identity.

    Each key object is held beside its value, so its id cannot be reused by another object
    while the value is kept. The objects must not change once seen. Safe across threads.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._held: OrderedDict[int, tuple[object, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: object, derive: Callable[[], V]) -> V:
        """The value derived from key, computed by derive on a miss."""
        with self._lock:
            held = self._held.get(id(key))
            if held is not None and held[0] is key:
                self._held.move_to_end(id(key))
                return held[1]
        value = derive()  # outside the lock: it may take milliseconds
        with self._lock:
            self._held[id(key)] = (key, value)
            while len(self._held) > self._size:
                self._held.popitem(last=False)
        return value
