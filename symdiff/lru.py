"""A bounded cache for what symdiff builds once per formula and reuses.

Residual programs of a least-squares model, an estimator's compiled formula, a traced
``curve_fit`` function, a kernel on a Dask worker: each is costly to build and cheap to
keep, and a long session meets many, so every such cache keeps the ``size`` most
recently used and drops the rest. A thread that finds an entry missing builds it
holding the cache's lock, so threads asking for the same formula at once (a
scikit-learn search with a threading backend, a Dask worker's threads) build it once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict


class LRU:
    """``cache.get_or_make(key, make)``: the entry of ``key``, built by ``make()`` if absent."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.RLock()

    def get_or_make(self, key, make):
        with self._lock:
            value = self._items.get(key)
            if value is None:
                value = self._items[key] = make()
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
            return value

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        """The keys, least recently used first."""
        with self._lock:
            return iter(list(self._items))

    def clear(self):
        with self._lock:
            self._items.clear()
