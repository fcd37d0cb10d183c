from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import delete

from llm_manager.db.tables import UsageLog
from llm_manager.manager import LLMManager
from llm_manager.services.accounting import UsageRecord
from tests.server.api.conftest import Api, cost_of

TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
YESTERDAY = TODAY - timedelta(days=1)


def record(api: Api, rows: Sequence[dict[str, Any]]) -> None:
    """Write usage rows (and so their rollup) as the pipeline would, with chosen values."""

    async def write(llm: LLMManager) -> None:
        configuration = await llm.configurations.get("priced")
        for row in rows:
            fields: dict[str, Any] = {
                "operation": "chat",
                "configuration_id": configuration.id,
                "configuration_slug": "priced",
                "requested_configuration": "priced",
                "application_id": None,
                "provider": "demo",
                "model": "demo-chat",
                "created_at": TODAY,
            }
            await llm.services.writer.put(UsageRecord(**(fields | row)))
        await llm.services.writer.flush()

    api.gateway.run(write)


def stats(api: Api, path: str, headers: dict[str, str] | None = None) -> Any:
    response = api.client.get(f"/api/stats/{path}", headers=headers or api.admin)
    assert response.status_code == 200, response.text
    return response.json()


def test_summary_equals_what_the_calls_recorded(api: Api) -> None:
    alpha = api.calls("alpha", 3, prompt="one two three")
    beta = api.calls("beta", 2, prompt="four")

    everyone = stats(api, "summary")
    own = stats(api, "summary", api.alpha)

    for totals, results in ((everyone, alpha + beta), (own, alpha)):
        assert totals["requests"] == len(results)
        assert totals["errors"] == totals["cancelled"] == 0
        assert totals["prompt_tokens"] == sum(result.usage.prompt_tokens for result in results)
        assert totals["completion_tokens"] == sum(result.usage.completion_tokens for result in results)
        assert totals["total_tokens"] == totals["prompt_tokens"] + totals["completion_tokens"]
        assert Decimal(totals["cost"]) == sum(cost_of(result) for result in results)
        assert totals["avg_latency_ms"] == pytest.approx(
            sum(result.latency_ms for result in results) / len(results)
        )
        ttfts = [result.ttft_ms for result in results if result.ttft_ms is not None]
        assert totals["avg_ttft_ms"] == pytest.approx(sum(ttfts) / len(ttfts))
        assert totals["error_rate"] == 0


def test_money_sums_exactly_and_rates_come_from_the_sums(api: Api) -> None:
    record(
        api,
        [
            {"cost": Decimal("0.1"), "latency_ms": 100, "ttft_ms": 10, "prompt_tokens": 5},
            {"cost": Decimal("0.2"), "latency_ms": 200, "ttft_ms": 30, "completion_tokens": 7},
            {"cost": Decimal("0.000000007"), "latency_ms": 300, "status": "error"},
            {"cost": Decimal("12345678.123456789"), "latency_ms": 400, "status": "cancelled"},
            {"cost": None, "unpriced": True, "tokens_estimated": True, "cached_tokens": 3},
        ],
    )

    totals = stats(api, "summary")

    assert totals["cost"] == "12345678.423456796"
    assert totals["requests"] == 5
    assert (totals["errors"], totals["cancelled"]) == (1, 1)
    assert totals["error_rate"] == pytest.approx(0.2)
    assert totals["avg_latency_ms"] == pytest.approx(200)
    assert totals["avg_ttft_ms"] == pytest.approx(20)
    assert (totals["unpriced_requests"], totals["estimated_requests"]) == (1, 1)
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["cached_tokens"]) == (5, 7, 3)


def test_nothing_recorded_is_all_zero(api: Api) -> None:
    totals = stats(api, "summary")

    assert totals["requests"] == 0
    assert totals["cost"] == "0"
    assert totals["error_rate"] == 0
    assert totals["avg_latency_ms"] is None
    assert totals["avg_ttft_ms"] is None


def test_breakdowns_by_each_dimension(api: Api) -> None:
    alpha, beta = api.application_id("alpha"), api.application_id("beta")
    record(
        api,
        [
            {"application_id": alpha, "provider": "openai", "model": "gpt-4o", "cost": Decimal("1.5")},
            {"application_id": alpha, "provider": "openai", "model": "gpt-4o", "cost": Decimal("0.25")},
            {"application_id": beta, "model": "demo-chat", "cost": Decimal("0.000000001")},
            {"application_id": None, "created_at": YESTERDAY, "cost": Decimal(2)},
        ],
    )

    providers = stats(api, "by/provider")["data"]
    models = stats(api, "by/model")["data"]
    applications = stats(api, "by/application")["data"]
    configurations = stats(api, "by/configuration")["data"]
    days = stats(api, "by/day")["data"]

    assert [(g["key"], g["requests"], g["cost"]) for g in providers] == [
        ("demo", 2, "2.000000001"),
        ("openai", 2, "1.75"),
    ]
    assert [(g["key"], g["requests"]) for g in models] == [("demo-chat", 2), ("gpt-4o", 2)]
    assert [(g["key"], g["id"], g["requests"]) for g in applications] == [
        ("alpha", alpha, 2),
        (None, None, 1),
        ("beta", beta, 1),
    ]
    assert [(g["key"], g["requests"], g["cost"]) for g in configurations] == [("priced", 4, "3.750000001")]
    assert configurations[0]["id"] is not None
    assert [(g["key"], g["requests"]) for g in days] == [
        (YESTERDAY.date().isoformat(), 1),
        (TODAY.date().isoformat(), 3),
    ]
    assert len(stats(api, "by/provider?limit=1")["data"]) == 1


def test_filters_narrow_every_view(api: Api) -> None:
    alpha = api.application_id("alpha")
    record(
        api,
        [
            {"application_id": alpha, "created_at": YESTERDAY, "cost": Decimal("1")},
            {"application_id": alpha, "cost": Decimal("2"), "provider": "openai", "model": "gpt-4o"},
            {"application_id": None, "cost": Decimal("4")},
        ],
    )
    today, yesterday = TODAY.date().isoformat(), YESTERDAY.date().isoformat()

    assert stats(api, f"summary?from={today}")["cost"] == "6"
    assert stats(api, f"summary?to={yesterday}")["cost"] == "1"
    assert stats(api, f"summary?from={yesterday}&to={yesterday}")["cost"] == "1"
    assert stats(api, f"summary?from={(TODAY + timedelta(days=1)).date()}")["requests"] == 0
    assert stats(api, "summary?application=alpha")["cost"] == "3"
    assert stats(api, "summary?application=nobody")["requests"] == 0
    assert stats(api, "summary?configuration=priced")["cost"] == "7"
    assert stats(api, "summary?configuration=nothing")["requests"] == 0
    assert stats(api, "summary?provider=openai")["cost"] == "2"
    assert stats(api, "summary?model=demo-chat")["cost"] == "5"
    assert [g["key"] for g in stats(api, f"by/model?from={today}&application=alpha")["data"]] == ["gpt-4o"]


def test_a_management_token_counts_only_its_own_application(api: Api) -> None:
    alpha, beta = api.application_id("alpha"), api.application_id("beta")
    record(
        api,
        [
            {"application_id": alpha, "cost": Decimal("1")},
            {"application_id": beta, "cost": Decimal("10")},
            {"application_id": None, "cost": Decimal("100")},
        ],
    )

    assert stats(api, "summary", api.alpha)["cost"] == "1"
    assert stats(api, "summary?application=beta", api.alpha)["requests"] == 0
    assert [g["key"] for g in stats(api, "by/application", api.alpha)["data"]] == ["alpha"]
    assert [m["requests"] for m in stats(api, "top-models", api.beta)["data"]] == [1]


def test_top_models_rank_by_requests_tokens_or_cost(api: Api) -> None:
    record(
        api,
        [
            {"model": "busy", "cost": Decimal("0.01"), "prompt_tokens": 1},
            {"model": "busy", "cost": Decimal("0.01"), "prompt_tokens": 1},
            {"model": "busy", "cost": Decimal("0.01"), "prompt_tokens": 1},
            {"model": "costly", "cost": Decimal("5"), "prompt_tokens": 2},
            {"model": "wordy", "completion_tokens": 1000, "cost": Decimal("0.5")},
            {"model": "wordy", "completion_tokens": 1000, "cost": Decimal("0.5"), "provider": "ollama"},
        ],
    )

    def ranking(query: str) -> list[tuple[str, str]]:
        return [(m["provider"], m["model"]) for m in stats(api, f"top-models{query}")["data"]]

    assert ranking("")[0] == ("demo", "busy")
    assert ranking("?order=cost") == [
        ("demo", "costly"),
        ("demo", "wordy"),
        ("ollama", "wordy"),
        ("demo", "busy"),
    ]
    assert ranking("?order=tokens&limit=2") == [("demo", "wordy"), ("ollama", "wordy")]
    top = stats(api, "top-models?limit=1")["data"][0]
    assert (top["requests"], top["cost"], top["prompt_tokens"]) == (3, "0.03", 3)


def test_statistics_read_the_rollup_not_the_log(api: Api) -> None:
    api.calls("alpha", 2)
    before = stats(api, "summary")

    async def forget_the_log(llm: LLMManager) -> None:
        async with llm.services.database.session() as session:
            await session.execute(delete(UsageLog))

    api.gateway.run(forget_the_log)

    assert api.client.get("/api/usage", headers=api.admin).json()["data"] == []
    assert stats(api, "summary") == before
    assert before["requests"] == 2


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("by/weekday", "dimension"),
        ("summary?from=2026-02-02&to=2026-02-01", "to"),
        ("summary?from=yesterday", "from"),
        ("by/day?limit=0", "limit"),
        ("top-models?limit=1001", "limit"),
        ("top-models?order=fame", "order"),
    ],
)
def test_bad_queries_name_the_parameter(api: Api, path: str, param: str) -> None:
    response = api.client.get(f"/api/stats/{path}", headers=api.admin)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_day_keys_are_iso_dates(api: Api) -> None:
    record(api, [{}])

    (group,) = stats(api, "by/day")["data"]

    assert date.fromisoformat(group["key"]) == TODAY.date()
    assert group["id"] is None
