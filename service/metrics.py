"""Prometheus metrics of one app instance (own registry, so several apps can live in one test process)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from fastapi import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """Every metric the API exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "videoseek_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ("method", "route", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.search_stage_seconds = Histogram(
            "videoseek_search_stage_seconds",
            "Time spent in each search stage.",
            ("stage",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.query_cache = Counter(
            "videoseek_query_cache_total", "Query embedding cache lookups.", ("result",), registry=r
        )
        self.text_batch_size = Histogram(
            "videoseek_text_batch_size",
            "Queries encoded per forward pass (micro-batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.uploads = Counter(
            "videoseek_ingest_uploads_total", "Uploaded videos by outcome.", ("outcome",), registry=r
        )
        self.upload_bytes = Counter("videoseek_ingest_upload_bytes_total", "Bytes received.", registry=r)
        self.queue_depth = Gauge("videoseek_queue_depth", "Work waiting, by queue.", ("queue",), registry=r)
        self._before_scrape: list[Callable[[], None]] = []

    def track_queue(self, queue: str, read: Callable[[], float]) -> None:
        """Report ``read()`` as the depth of ``queue`` at every scrape."""
        self.queue_depth.labels(queue=queue).set_function(read)

    def track_queues(self, read_all: Callable[[], Mapping[str, float]]) -> None:
        """Report the depths ``read_all()`` returns, by queue, read once per scrape (one Redis round trip for
        every Celery queue, not one per queue)."""

        def refresh() -> None:
            for queue, depth in read_all().items():
                self.queue_depth.labels(queue=queue).set(depth)

        self._before_scrape.append(refresh)

    def render(self) -> Response:
        """The exposition (blocking: the queue depths may be read from Redis; call it from a thread)."""
        for refresh in self._before_scrape:
            refresh()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetricsMiddleware:
    """Times every request, labelled by route template (never by raw path: ids would explode cardinality).

    Plain ASGI rather than ``BaseHTTPMiddleware``: it adds no task or stream wrapping to cached searches.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
