"""Micro-batching of query embeddings, and the LRU cache in front of it.

Concurrent queries are encoded together: a single encoder thread takes *every* request waiting when it becomes
free and runs them as one forward pass (adapters may differ per row: the AdapterBank mixes them). Nobody waits
for a batch to fill, so a lone query pays no extra latency, and under load batches grow by themselves.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K")
V = TypeVar("V")

_SPACES = re.compile(r"\s+")


class MicroBatcher(Generic[K, V]):
    """Calls ``fn(items)`` on batches of submitted items from ``workers`` background threads.

    A free worker takes everything waiting (up to ``max_batch``). More than one worker only pays off when
    ``fn`` releases the GIL and has cores to spare (CPU inference with one torch thread per forward).
    """

    def __init__(
        self,
        fn: Callable[[Sequence[K]], Sequence[V]],
        max_batch: int = 64,
        name: str = "micro-batcher",
        on_batch: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._fn = fn
        self._max_batch = max_batch
        self._name = name
        self._on_batch = on_batch
        self._workers = workers
        self._pending: list[tuple[K, Future[V]]] = []
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, item: K) -> Future[V]:
        future: Future[V] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name} is closed")
            self._pending.append((item, future))
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._run, name=f"{self._name}-{i}", daemon=True)
                    for i in range(self._workers)
                ]
                for thread in self._threads:
                    thread.start()
            self._cond.notify()
        return future

    @property
    def depth(self) -> int:
        return len(self._pending)

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)

    def _take_batch(self) -> list[tuple[K, Future[V]]] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            if self._on_batch is not None:
                self._on_batch(len(live))
            try:
                results = self._fn([item for item, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"{self._name}: got {len(results)} results for {len(live)} inputs")
            except BaseException as exc:  # every waiter must hear about the failure
                for _, fut in live:
                    fut.set_exception(exc)
                continue
            for (_, fut), result in zip(live, results, strict=True):
                fut.set_result(result)


def normalise_query(text: str) -> str:
    """The cache key form of a query. CLIP's tokenizer lowercases and collapses whitespace too."""
    return _SPACES.sub(" ", text).strip().lower()


QueryKey = tuple[str | None, str]  # (adapter version or None for plain CLIP, normalised text)


class QueryEmbedder:
    """Query text -> embedding, through an LRU cache and a micro-batcher; identical in-flight queries share work."""

    def __init__(
        self,
        encode: Callable[[list[str], list[str | None]], np.ndarray],
        cache_size: int,
        max_batch: int = 64,
        on_batch: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        self._encode = encode
        self._cache: OrderedDict[QueryKey, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._inflight: dict[QueryKey, Future[np.ndarray]] = {}
        self._batcher: MicroBatcher[QueryKey, np.ndarray] = MicroBatcher(
            self._encode_batch, max_batch=max_batch, name="query-encoder", on_batch=on_batch, workers=workers
        )
        self.hits = 0
        self.misses = 0

    def _encode_batch(self, keys: Sequence[QueryKey]) -> list[np.ndarray]:
        matrix = self._encode([text for _, text in keys], [version for version, _ in keys])
        return [np.asarray(row, dtype=np.float32) for row in matrix]

    def cached(self, key: QueryKey) -> np.ndarray | None:
        with self._lock:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
            return vector

    def submit(self, text: str, adapter_version: str | None) -> Future[np.ndarray]:
        """A future embedding for ``text`` under ``adapter_version``; resolved at once on a cache hit."""
        key: QueryKey = (adapter_version, normalise_query(text))
        with self._lock:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
                self.hits += 1
                done: Future[np.ndarray] = Future()
                done.set_result(vector)
                return done
            self.misses += 1
            pending = self._inflight.get(key)
            if pending is not None:
                return pending
            future = self._batcher.submit(key)
            self._inflight[key] = future
        future.add_done_callback(lambda fut: self._store(key, fut))
        return future

    def _store(self, key: QueryKey, future: Future[np.ndarray]) -> None:
        with self._lock:
            self._inflight.pop(key, None)
            if future.cancelled() or future.exception() is not None or self._cache_size == 0:
                return
            self._cache[key] = future.result()
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth

    def close(self) -> None:
        self._batcher.close()
