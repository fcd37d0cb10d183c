from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.server.api.conftest import Api, cost_of


def ids(api: Api, headers: dict[str, str], query: str = "") -> list[str]:
    response = api.client.get(f"/api/usage{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [row["id"] for row in response.json()["data"]]


def test_each_application_sees_its_own_calls(api: Api) -> None:
    alpha = [result.log_id for result in api.calls("alpha", 2)]
    beta = [result.log_id for result in api.calls("beta", 1)]

    assert ids(api, api.alpha) == alpha[::-1]
    assert ids(api, api.beta) == beta
    assert ids(api, api.admin) == [*beta, *alpha[::-1]]
    assert ids(api, api.admin, "?application=beta") == beta
    assert ids(api, api.alpha, "?application=beta") == []


def test_a_row_shows_what_was_recorded_with_exact_money(api: Api) -> None:
    (result,) = api.calls("alpha", 1, prompt="hello there")

    row = api.client.get(f"/api/usage/{result.log_id}", headers=api.alpha).json()

    assert row["id"] == result.log_id
    assert row["configuration"] == row["requested_configuration"] == "priced"
    assert (row["provider"], row["model"], row["status"]) == ("demo", "demo-chat", "ok")
    assert row["prompt_tokens"] == result.usage.prompt_tokens
    assert row["completion_tokens"] == result.usage.completion_tokens
    assert row["total_tokens"] == result.usage.total_tokens
    assert isinstance(row["cost"], str)
    assert Decimal(row["cost"]) == cost_of(result) == result.cost
    assert row["application_id"] == api.application_id("alpha")
    assert row["unpriced"] is False


def test_another_applications_row_is_not_found_like_a_missing_one(api: Api) -> None:
    (result,) = api.calls("beta", 1)

    other = api.client.get(f"/api/usage/{result.log_id}", headers=api.alpha)
    missing = api.client.get("/api/usage/00000000-0000-7000-8000-000000000000", headers=api.alpha)

    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["type"] == missing.json()["error"]["type"] == "not_found_error"
    assert api.client.get(f"/api/usage/{result.log_id}", headers=api.beta).status_code == 200
    assert api.client.get(f"/api/usage/{result.log_id}", headers=api.admin).status_code == 200


def test_the_cursor_walks_every_row_exactly_once(api: Api) -> None:
    written = [result.log_id for result in api.calls("alpha", 7)]
    api.calls("beta", 2)

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(f"/api/usage{query}", headers=api.alpha).json()
        seen += [row["id"] for row in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == written[::-1]
    assert pages == 3


def test_an_exact_last_page_has_no_cursor(api: Api) -> None:
    api.calls("alpha", 4)

    first = api.client.get("/api/usage?limit=2", headers=api.alpha).json()
    second = api.client.get(f"/api/usage?limit=2&cursor={first['next_cursor']}", headers=api.alpha).json()

    assert first["next_cursor"] is not None
    assert len(second["data"]) == 2
    assert second["next_cursor"] is None


def test_filters(api: Api) -> None:
    api.create_configuration("plain")
    priced = [result.log_id for result in api.calls("alpha", 2)]
    plain = [result.log_id for result in api.calls("alpha", 1, configuration="plain")]
    now = datetime.now(UTC)
    later = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    earlier = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")

    assert ids(api, api.alpha, "?configuration=plain") == plain
    assert ids(api, api.alpha, "?configuration=priced") == priced[::-1]
    assert ids(api, api.alpha, "?provider=demo&model=demo-chat&status=ok") == [*plain, *priced[::-1]]
    assert ids(api, api.alpha, "?provider=openai") == []
    assert ids(api, api.alpha, "?status=error") == []
    assert ids(api, api.alpha, f"?since={later}") == []
    assert ids(api, api.alpha, f"?until={earlier}") == []
    assert len(ids(api, api.alpha, f"?since={earlier}&until={later}")) == 3


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?since=2026-01-01T00:00:00", "since"),
        ("?status=weird", "status"),
    ],
)
def test_bad_queries_name_the_parameter(api: Api, query: str, param: str) -> None:
    response = api.client.get(f"/api/usage{query}", headers=api.alpha)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
