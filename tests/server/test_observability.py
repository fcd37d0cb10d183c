from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llm_manager.server import observability
from llm_manager.server.observability import GatewayMetrics
from llm_manager.services.accounting import UsageRecord

CALL = {"configuration": "default", "provider": "openai", "model": "gpt-4o-mini"}


def _record(**extra: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "operation": "chat",
        "configuration_id": 1,
        "configuration_slug": "default",
        "requested_configuration": "default",
        "application_id": None,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "cached_tokens": 40,
        "cost": Decimal("0.0015"),
        "latency_ms": 800,
        "ttft_ms": 120,
    }
    return UsageRecord(**(values | extra))


def _samples(metrics: GatewayMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The rendered exposition, parsed back: (sample name, labels) -> value."""
    payload, _ = metrics.render()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(payload.decode())
        for sample in family.samples
    }


def _value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return _samples(metrics).get((name, frozenset(labels.items())))


@pytest.fixture
def metrics() -> GatewayMetrics:
    return GatewayMetrics(queue_depth=lambda: 0, queue_capacity=10_000)


def test_counts_requests_tokens_and_cost(metrics: GatewayMetrics) -> None:
    metrics.observe(_record())
    metrics.observe(_record(prompt_tokens=50, completion_tokens=5, cached_tokens=0, cost=Decimal("0.0005")))

    assert _value(metrics, "llm_manager_requests_total", **CALL, operation="chat", status="ok") == 2
    assert _value(metrics, "llm_manager_tokens_total", **CALL, kind="prompt") == 150
    assert _value(metrics, "llm_manager_tokens_total", **CALL, kind="completion") == 25
    assert _value(metrics, "llm_manager_tokens_total", **CALL, kind="cached") == 40
    assert _value(metrics, "llm_manager_cost_usd_total", **CALL) == pytest.approx(0.002)


def test_series_are_kept_apart_by_labels(metrics: GatewayMetrics) -> None:
    metrics.observe(_record())
    metrics.observe(_record(configuration_slug="fast", model="gpt-4.1-nano", operation="embed", ttft_ms=None))

    fast = {"configuration": "fast", "provider": "openai", "model": "gpt-4.1-nano"}
    assert _value(metrics, "llm_manager_requests_total", **CALL, operation="chat", status="ok") == 1
    assert _value(metrics, "llm_manager_requests_total", **fast, operation="embed", status="ok") == 1
    assert _value(metrics, "llm_manager_requests_total", **fast, operation="chat", status="ok") is None


def test_unpriced_calls_add_no_cost(metrics: GatewayMetrics) -> None:
    metrics.observe(_record(cost=None, unpriced=True))
    metrics.observe(_record(cost=Decimal("0.25")))

    assert _value(metrics, "llm_manager_cost_usd_total", **CALL) == pytest.approx(0.25)
    assert _value(metrics, "llm_manager_requests_total", **CALL, operation="chat", status="ok") == 2


def test_latency_histograms_use_llm_buckets(metrics: GatewayMetrics) -> None:
    metrics.observe(_record(latency_ms=3, ttft_ms=None))
    metrics.observe(_record(latency_ms=800, ttft_ms=120))
    metrics.observe(_record(latency_ms=90_000, ttft_ms=2_000))

    duration = "llm_manager_request_duration_seconds"
    assert _value(metrics, f"{duration}_bucket", **CALL, le="0.005") == 1
    assert _value(metrics, f"{duration}_bucket", **CALL, le="1.0") == 2
    assert _value(metrics, f"{duration}_bucket", **CALL, le="60.0") == 2
    assert _value(metrics, f"{duration}_bucket", **CALL, le="120.0") == 3
    assert _value(metrics, f"{duration}_bucket", **CALL, le="+Inf") == 3
    assert _value(metrics, f"{duration}_count", **CALL) == 3
    assert _value(metrics, f"{duration}_sum", **CALL) == pytest.approx(90.803)

    ttft = "llm_manager_time_to_first_token_seconds"
    assert _value(metrics, f"{ttft}_count", **CALL) == 2
    assert _value(metrics, f"{ttft}_bucket", **CALL, le="0.25") == 1
    assert _value(metrics, f"{ttft}_sum", **CALL) == pytest.approx(2.12)


def test_upstream_errors_are_counted_only_for_errors(metrics: GatewayMetrics) -> None:
    metrics.observe(_record())
    metrics.observe(_record(status="cancelled", error_class=None))
    assert "llm_manager_upstream_errors_total{" not in metrics.render()[0].decode()

    metrics.observe(_record(status="error", error_class="UpstreamTimeout", completion_tokens=0, cost=None))
    metrics.observe(_record(status="error", error_class="UpstreamTimeout", completion_tokens=0, cost=None))
    metrics.observe(_record(status="error", error_class=None))

    errors = "llm_manager_upstream_errors_total"
    assert _value(metrics, errors, provider="openai", error_class="UpstreamTimeout") == 2
    assert _value(metrics, errors, provider="openai", error_class="unknown") == 1
    assert _value(metrics, "llm_manager_requests_total", **CALL, operation="chat", status="error") == 3
    assert _value(metrics, "llm_manager_requests_total", **CALL, operation="chat", status="cancelled") == 1


def test_queue_depth_is_read_at_scrape_time() -> None:
    depth = [0]
    metrics = GatewayMetrics(queue_depth=lambda: depth[0], queue_capacity=500)

    assert _value(metrics, "llm_manager_accounting_queue_depth") == 0
    depth[0] = 42
    assert _value(metrics, "llm_manager_accounting_queue_depth") == 42
    assert _value(metrics, "llm_manager_accounting_queue_capacity") == 500


def test_open_streams_go_up_and_back_down(metrics: GatewayMetrics) -> None:
    gauge = "llm_manager_open_streams"
    with metrics.stream_opened("sse"):
        with metrics.stream_opened("sse"), metrics.stream_opened("openai"):
            assert _value(metrics, gauge, surface="sse") == 2
            assert _value(metrics, gauge, surface="openai") == 1
        assert _value(metrics, gauge, surface="sse") == 1
        assert _value(metrics, gauge, surface="openai") == 0
    assert _value(metrics, gauge, surface="sse") == 0


def test_open_streams_come_down_when_the_stream_fails(metrics: GatewayMetrics) -> None:
    with pytest.raises(RuntimeError), metrics.stream_opened("sse"):
        raise RuntimeError("client went away")
    assert _value(metrics, "llm_manager_open_streams", surface="sse") == 0


def test_registries_are_not_shared() -> None:
    first = GatewayMetrics(queue_depth=lambda: 0, queue_capacity=1)
    second = GatewayMetrics(queue_depth=lambda: 0, queue_capacity=1)
    first.observe(_record())

    assert _value(first, "llm_manager_requests_total", **CALL, operation="chat", status="ok") == 1
    assert _value(second, "llm_manager_requests_total", **CALL, operation="chat", status="ok") is None


def test_metrics_route_serves_the_app_registry() -> None:
    app = FastAPI()
    app.state.metrics = GatewayMetrics(queue_depth=lambda: 7, queue_capacity=100)
    app.include_router(observability.router)
    app.state.metrics.observe(_record())

    with TestClient(app) as client:
        response = client.get("/metrics")
        schema = client.get("/openapi.json").text

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "llm_manager_accounting_queue_depth 7.0" in response.text
    assert 'llm_manager_requests_total{configuration="default"' in response.text
    assert "/metrics" not in schema
