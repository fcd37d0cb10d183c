"""Prometheus metrics for the gateway: what each LLM call cost, how long it took, what is in flight.

`GatewayMetrics` owns its own `CollectorRegistry` (never prometheus_client's global one), so two
apps in one process — tests, or a library user embedding the server — never share counters. The
app creates one in `create_app()`, stores it on `app.state.metrics`, feeds it one `UsageRecord`
per call and serves it at `GET /metrics`.

Per-process numbers: with `uvicorn --workers N` every worker has its own registry, and a scrape
reaches whichever worker accepts the connection, so each scrape sees one worker's counters. Sum
them in Prometheus by scraping the workers separately (one port each, or one instance each);
prometheus_client's multiprocess mode is deliberately not used — it needs a shared directory
and changes how gauges aggregate.

Cardinality: labels are the configuration slug, provider, model, operation, status, stream
surface and error class name — all bounded by what operators configure and by the error tree.
Never add user ids, application ids or conversation ids as labels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from llm_manager.services.accounting import UsageRecord

# LLM calls range from a cached embedding (a few ms) to a long reasoning completion (minutes);
# the default prometheus buckets stop at 10 s, which would put every slow completion in +Inf.
LLM_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# The classic text format every Prometheus version parses; our metric names need none of the
# newer format's UTF-8 escaping, so the payload is the same either way.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_UNKNOWN_ERROR = "unknown"

router = APIRouter()


@dataclass(frozen=True, slots=True)
class _CallSeries:
    """The label children of one (configuration, provider, model), resolved once and reused.

    `labels()` hashes its arguments and takes a lock on every call; caching the children makes
    `observe()` a handful of attribute lookups plus the increments themselves.
    """

    prompt_tokens: Counter
    completion_tokens: Counter
    cached_tokens: Counter
    cost: Counter
    duration: Histogram
    time_to_first_token: Histogram


class GatewayMetrics:
    """The gateway's metrics and the registry that exposes them."""

    def __init__(self, *, queue_depth: Callable[[], int], queue_capacity: int) -> None:
        """`queue_depth` is called at every scrape, so the gauge is never stale between calls."""
        self.registry = CollectorRegistry()
        call_labels = ("configuration", "provider", "model")
        self._requests = Counter(
            "llm_manager_requests",
            "LLM calls, by outcome.",
            (*call_labels, "operation", "status"),
            registry=self.registry,
        )
        self._tokens = Counter(
            "llm_manager_tokens",
            "Tokens accounted (kind: prompt, completion, cached — cached is a subset of prompt).",
            (*call_labels, "kind"),
            registry=self.registry,
        )
        self._cost = Counter(
            "llm_manager_cost_usd",
            "Cost of priced calls in US dollars; unpriced calls are not counted.",
            call_labels,
            registry=self.registry,
        )
        self._upstream_errors = Counter(
            "llm_manager_upstream_errors",
            "Failed LLM calls, by provider and error class.",
            ("provider", "error_class"),
            registry=self.registry,
        )
        self._duration = Histogram(
            "llm_manager_request_duration_seconds",
            "Whole-call latency of LLM calls.",
            call_labels,
            buckets=LLM_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._time_to_first_token = Histogram(
            "llm_manager_time_to_first_token_seconds",
            "Time until the first streamed token, for calls that produced one.",
            call_labels,
            buckets=LLM_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._open_streams = Gauge(
            "llm_manager_open_streams",
            "Streaming responses currently open, by surface.",
            ("surface",),
            registry=self.registry,
        )
        depth = Gauge(
            "llm_manager_accounting_queue_depth",
            "Usage records waiting to be written to the database.",
            registry=self.registry,
        )
        depth.set_function(lambda: float(queue_depth()))
        capacity = Gauge(
            "llm_manager_accounting_queue_capacity",
            "Size of the usage queue; at capacity, calls wait for the writer.",
            registry=self.registry,
        )
        capacity.set(queue_capacity)
        self._series: dict[tuple[str, str, str], _CallSeries] = {}
        self._request_children: dict[tuple[str, str, str, str, str], Counter] = {}
        self._error_children: dict[tuple[str, str], Counter] = {}

    def observe(self, record: UsageRecord) -> None:
        """Count one finished call. On the hot path: no I/O, and label children are resolved once."""
        key = (record.configuration_slug, record.provider, record.model)
        series = self._series.get(key) or self._new_series(key)
        request_key = (*key, record.operation, record.status)
        requests = self._request_children.get(request_key)
        if requests is None:
            requests = self._request_children[request_key] = self._requests.labels(*request_key)
        requests.inc()
        if record.prompt_tokens:
            series.prompt_tokens.inc(record.prompt_tokens)
        if record.completion_tokens:
            series.completion_tokens.inc(record.completion_tokens)
        if record.cached_tokens:
            series.cached_tokens.inc(record.cached_tokens)
        if record.cost is not None:
            series.cost.inc(float(record.cost))
        series.duration.observe(record.latency_ms / 1000)
        if record.ttft_ms is not None:
            series.time_to_first_token.observe(record.ttft_ms / 1000)
        if record.status == "error":
            self._count_error(record.provider, record.error_class or _UNKNOWN_ERROR)

    @contextlib.contextmanager
    def stream_opened(self, surface: str) -> Iterator[None]:
        """Hold the `open_streams{surface}` gauge up for as long as a streaming response runs.

        Enter it inside the response's async generator, so the gauge comes down when the stream
        ends, fails, or the client disconnects and the generator is closed.
        """
        gauge = self._open_streams.labels(surface)
        gauge.inc()
        try:
            yield
        finally:
            gauge.dec()

    def render(self) -> tuple[bytes, str]:
        """The exposition payload and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE

    def _new_series(self, key: tuple[str, str, str]) -> _CallSeries:
        series = _CallSeries(
            prompt_tokens=self._tokens.labels(*key, "prompt"),
            completion_tokens=self._tokens.labels(*key, "completion"),
            cached_tokens=self._tokens.labels(*key, "cached"),
            cost=self._cost.labels(*key),
            duration=self._duration.labels(*key),
            time_to_first_token=self._time_to_first_token.labels(*key),
        )
        self._series[key] = series
        return series

    def _count_error(self, provider: str, error_class: str) -> None:
        key = (provider, error_class)
        errors = self._error_children.get(key)
        if errors is None:
            errors = self._error_children[key] = self._upstream_errors.labels(*key)
        errors.inc()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus scrape endpoint; async so the queue-depth callable runs on the event loop."""
    gateway_metrics: GatewayMetrics = request.app.state.metrics
    payload, content_type = gateway_metrics.render()
    return Response(content=payload, media_type=content_type)
