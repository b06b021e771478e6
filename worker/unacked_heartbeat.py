"""A live worker renews the broker's record of the messages it holds, so the visibility timeout can be short.

kombu's Redis transport emulates acknowledgements: a message handed to a worker is copied into the hash
``unacked`` and its delivery tag scored with the time of delivery in the sorted set ``unacked_index``; every
consumer's periodic sweep (``restore_visible``, each ``unacked_restore_interval``) puts back on its queue each
message whose score is older than the visibility timeout. kombu renews nothing by itself, so the timeout had
to exceed the longest task (2 h), and a killed worker's task waited that long before anyone ran it again.

Here a thread in the worker's main process moves the score of every message the worker holds (reserved,
waiting for a countdown, or running) to now, ``HEARTBEATS_PER_TIMEOUT`` times per visibility timeout. It
only updates members still in the index (``ZADD XX``): a message acknowledged meanwhile is never brought
back. So the timeout only has to outlast a few missed beats: a killed worker's messages are back on their
queues one timeout after its last beat, and a healthy task of any length is delivered once.

The trade-off: a worker whose main process stalls for most of a timeout (swapped out, a paused VM, Redis
unreachable from it but not from the others) has its messages delivered again while it still runs them.
That costs work, not correctness: every ingest step is idempotent, and admin tasks are acknowledged when
they start (a second copy of a waiting one ends at once, see ``tasks._collection_slot``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)

UNACKED_INDEX_KEY = "unacked_index"  # kombu's default name, set explicitly in the transport options
HEARTBEATS_PER_TIMEOUT = 5  # a message is given up after 4 beats in a row went missing


def heartbeat_interval_s(visibility_timeout_s: float) -> float:
    """How often a worker renews its messages for this visibility timeout."""
    return visibility_timeout_s / HEARTBEATS_PER_TIMEOUT


def renew(client: Any, key: str, tags: Iterable[str], now: float | None = None) -> int:
    """Set the delivery time of the messages ``tags`` still unacknowledged to ``now``; returns how many."""
    stamp = time.time() if now is None else now
    scores = {tag: stamp for tag in tags}
    if not scores:
        return 0
    return int(client.zadd(key, scores, xx=True, ch=True))


def held_delivery_tags() -> list[str]:
    """The delivery tags of every message this worker process holds, from Celery's own request registry."""
    from celery.worker import state

    for _ in range(3):
        try:
            requests = list(state.requests.values())  # mutated by the consumer thread meanwhile
            break
        except RuntimeError:  # changed size while copied: look again
            continue
    else:
        return []
    tags = []
    for request in requests:
        tag = getattr(getattr(request, "message", None), "delivery_tag", None)
        if tag is not None:
            tags.append(str(tag))
    return tags


class UnackedHeartbeat:
    """A daemon thread renewing ``held()``'s messages in ``key`` every ``interval_s`` until stopped."""

    def __init__(
        self, client: Any, key: str, interval_s: float, held: Callable[[], list[str]] = held_delivery_tags
    ) -> None:
        self._client = client
        self._key = key
        self._interval_s = interval_s
        self._held = held
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> int:
        return renew(self._client, self._key, self._held())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="unacked-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval_s + 5)

    def _run(self) -> None:
        import redis

        while not self._stop.wait(self._interval_s):
            try:
                self.beat()
            except redis.RedisError as exc:  # the next beat tries again; while Redis is gone nothing restores
                log.warning("could not renew this worker's unacknowledged messages: %s", exc)


def heartbeat_for(conf: Any) -> UnackedHeartbeat:
    """The heartbeat for a Celery app's configuration (its broker, key prefix and visibility timeout)."""
    import redis

    transport = conf.broker_transport_options
    client = redis.Redis.from_url(conf.broker_url, socket_connect_timeout=5.0, socket_timeout=10.0)
    key = transport.get("global_keyprefix", "") + transport.get("unacked_index_key", UNACKED_INDEX_KEY)
    return UnackedHeartbeat(client, key, heartbeat_interval_s(float(transport["visibility_timeout"])))


class UnackedHeartbeatStep(bootsteps.StartStopStep):
    """Worker bootstep: the heartbeat runs in the worker's main process from its start to its shutdown."""

    def create(self, parent: Any) -> UnackedHeartbeat:
        return heartbeat_for(parent.app.conf)
