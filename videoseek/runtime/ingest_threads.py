"""Embedded mode: the ingest pipeline on worker threads inside the calling process (the API or the CLI).

No Redis and no Celery: the same plain pipeline functions the Celery tasks call, in two stages joined by a
small bounded queue, so decoding the next video (in its sandbox process) overlaps embedding the current one:

    submit(job_id) -> [jobs queue, bounded] -> decode thread -> [decoded queue, 2] -> embed thread
                                                                   -> [copies queue] -> playback thread

The embed thread takes every decoded video that is waiting (up to ``worker.embed_batch_videos``) and embeds
their frames in shared batches. A video browsers cannot play goes on, once indexed (searchable), to the
playback thread, which writes its browser-playable copy (``ingest/playback.py``). Job state lives in the SQLite job store, so jobs still queued when the process
stops are picked up again by the next :meth:`EmbeddedRunner.start` (``recover=True``). The embedded runtime
(``runtime/embedded.py``) owns one per process.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from videoseek.context import PipelineContext
from videoseek.ingest.submit import IngestQueueFull

if TYPE_CHECKING:
    from videoseek.ingest.pipeline import DecodedVideo

log = logging.getLogger(__name__)

_POLL_S = 0.2
T = TypeVar("T")


class EmbeddedRunner:
    """Runs ingest jobs on two daemon threads of this process. Thread-safe; start once, stop once."""

    def __init__(
        self,
        context: PipelineContext,
        *,
        queue_size: int | None = None,
        max_batch_videos: int | None = None,
    ) -> None:
        settings = context.settings
        self.settings = settings
        self.context = context
        self._jobs: queue.Queue[str] = queue.Queue(maxsize=queue_size or settings.worker.queue_size)
        self._decoded: queue.Queue[DecodedVideo] = queue.Queue(maxsize=2)
        # Ids only, and each job is in the job store as "pending" too: no bound needed, nothing lost at a stop.
        self._copies: queue.Queue[str] = queue.Queue()
        self._max_batch_videos = max(1, max_batch_videos or settings.worker.embed_batch_videos)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy: set[str] = set()  # submitted and not finished: a job is never queued twice
        self._busy_lock = threading.Condition()
        self._recovering = False  # unfinished jobs still being queued again (join waits for them too)

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    def start(self, *, recover: bool = True) -> EmbeddedRunner:
        """Start the threads; ``recover``: queue again this data dir's jobs that never finished."""
        if self._threads:
            raise RuntimeError("the embedded runner is already started")
        context = self.context
        self._threads = [
            threading.Thread(target=self._decode_loop, name="videoseek-decode", daemon=True),
            threading.Thread(target=self._embed_loop, name="videoseek-embed", daemon=True),
            threading.Thread(target=self._playback_loop, name="videoseek-playback", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if recover:
            # In the background: there may be more unfinished jobs than the queue holds.
            with self._busy_lock:
                self._recovering = True
            threading.Thread(
                target=self._recover, args=(context,), name="videoseek-recover", daemon=True
            ).start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the jobs in hand; queued jobs stay ``queued`` (and copies not written ``pending``) in the
        job store for the next start."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning(
                "embedded runner: %s still busy after %.0fs; leaving them (daemon threads)", alive, timeout
            )

    # -- submitting -----------------------------------------------------------------------------

    def submit(self, job_id: str, *, block: bool = False, timeout: float | None = None) -> None:
        """Queue a stored job. Raises :class:`IngestQueueFull` when the queue is full (and not ``block``)."""
        if not self.running:
            raise RuntimeError("the embedded runner is not running; call start() first")
        with self._busy_lock:
            if job_id in self._busy:
                return
            self._busy.add(job_id)
        try:
            self._jobs.put(job_id, block=block, timeout=timeout)
        except queue.Full:
            self._done([job_id])
            raise IngestQueueFull(
                f"ingest queue is full ({self._jobs.maxsize} jobs waiting); retry shortly "
                "(or raise VIDEOSEEK_WORKER__QUEUE_SIZE)"
            ) from None

    def pending(self) -> int:
        """Jobs submitted and not finished (queued, decoding, embedding, or their playback copy)."""
        with self._busy_lock:
            return len(self._busy)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has finished, playback copy included; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._busy_lock:
            while self._busy or self._recovering:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._busy_lock.wait(_POLL_S if left is None else min(left, _POLL_S))
        return True

    def _done(self, job_ids: list[str]) -> None:
        with self._busy_lock:
            self._busy.difference_update(job_ids)
            self._busy_lock.notify_all()

    def _recover(self, context: PipelineContext) -> None:
        from videoseek.ingest.playback import needs_playback_copy

        try:
            every = list(reversed(context.jobs.list(limit=100_000)))
            unfinished = [j for j in every if not j.stage.terminal and not j.duplicate]
            copies = [j.job_id for j in every if needs_playback_copy(j)]
            if unfinished or copies:
                log.info(
                    "embedded runner: resuming %d unfinished jobs, %d playback copies",
                    len(unfinished),
                    len(copies),
                )
            for job_id in copies:
                self._queue_copy(job_id)
            for job in unfinished:
                while self.running:
                    try:
                        self.submit(job.job_id, block=True, timeout=_POLL_S)
                        break
                    except IngestQueueFull:
                        continue
        except Exception:
            log.exception("embedded runner: could not resume unfinished jobs")
        finally:
            with self._busy_lock:
                self._recovering = False
                self._busy_lock.notify_all()

    # -- the two stages -------------------------------------------------------------------------

    def _decode_loop(self) -> None:
        from videoseek.ingest.pipeline import decode_video

        while not self._stop.is_set():
            try:
                job_id = self._jobs.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            decoded = self._guarded([job_id], partial(decode_video, self.context, job_id))
            if decoded is None:
                self._done([job_id])
                continue
            while not self._put_decoded(decoded):
                if self._stop.is_set():  # shutting down: the job stays unfinished and is resumed later
                    self._done([job_id])
                    return

    def _put_decoded(self, decoded: DecodedVideo) -> bool:
        try:
            self._decoded.put(decoded, timeout=_POLL_S)
        except queue.Full:
            return False
        return True

    def _embed_loop(self) -> None:

        while not (self._stop.is_set() and self._decoded.empty()):
            try:
                batch = [self._decoded.get(timeout=_POLL_S)]
            except queue.Empty:
                continue
            while len(batch) < self._max_batch_videos:
                try:
                    batch.append(self._decoded.get_nowait())
                except queue.Empty:
                    break
            self._embed_batch(batch)
            self._after_indexing([d.job.job_id for d in batch])

    def _after_indexing(self, job_ids: list[str]) -> None:
        """Jobs needing a playback copy go on to the playback thread (still busy); the others are finished."""
        from videoseek.ingest.playback import needs_playback_copy

        finished = []
        for job_id in job_ids:
            try:
                copy = needs_playback_copy(self.context.jobs.get(job_id))
            except Exception:  # the job store is failing: the copy waits for the next start ("pending")
                log.exception("embedded runner: could not read job %s", job_id)
                copy = False
            if copy:
                self._copies.put(job_id)
            else:
                finished.append(job_id)
        self._done(finished)

    def _queue_copy(self, job_id: str) -> None:
        with self._busy_lock:
            if job_id in self._busy:
                return
            self._busy.add(job_id)
        self._copies.put(job_id)

    def _playback_loop(self) -> None:
        from videoseek.ingest.playback import write_playback

        while not self._stop.is_set():
            try:
                job_id = self._copies.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            try:
                write_playback(self.context, job_id)
            except Exception as exc:  # the video stays indexed; its copy is retried at the next start
                log.exception("embedded runner: playback copy of job %s failed (%s)", job_id, exc)
            finally:
                self._done([job_id])

    def _embed_batch(self, batch: list[DecodedVideo]) -> None:
        """Shared forward passes; if anything breaks them, each video again on its own, so that one video's
        problem (its adapter gone, its collection deleted) fails that job and no other."""
        from videoseek.ingest.pipeline import embed_and_index

        if len(batch) > 1:
            try:
                embed_and_index(self.context, batch)
                return
            except Exception as exc:
                log.warning("embedded runner: a batch of %d videos failed (%s); each alone", len(batch), exc)
        for video in batch:
            self._guarded([video.job.job_id], partial(embed_and_index, self.context, [video]))

    def _guarded(self, job_ids: list[str], step: Callable[[], T]) -> T | None:
        """Run one step, retrying transient errors; any other error fails these jobs (and only these)."""
        from videoseek.ingest.pipeline import TransientError

        retries = self.settings.worker.max_retries
        for attempt in range(retries + 1):
            try:
                return step()
            except TransientError as exc:
                if attempt == retries or self._stop.is_set():
                    self._fail_unfinished(job_ids, f"gave up after {attempt} retries: {exc}")
                    return None
                log.warning(
                    "embedded runner: transient error (%s), retry %d of %d", exc, attempt + 1, retries
                )
                self._stop.wait(min(2.0**attempt, self.settings.worker.retry_backoff_max_s))
            except Exception as exc:
                log.exception("embedded runner: jobs %s failed", job_ids)
                self._fail_unfinished(job_ids, f"internal error: {exc!r}")
                return None
        return None

    def _fail_unfinished(self, job_ids: list[str], reason: str) -> None:
        from videoseek.ingest.pipeline import fail_job

        for job_id in job_ids:
            try:
                job = self.context.jobs.get(job_id)
                if job is not None and not job.stage.terminal:
                    fail_job(self.context, job_id, reason)
            except Exception:  # the job store itself is failing: log it, keep the thread alive
                log.exception("embedded runner: could not mark job %s failed (%s)", job_id, reason)
