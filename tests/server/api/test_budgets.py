from __future__ import annotations

from typing import Any

from tests.server.api.conftest import Api


def put(api: Api, headers: dict[str, str], **body: Any) -> Any:
    return api.client.put("/api/budgets", headers=headers, json=body)


def test_set_and_read_a_budget_with_exact_money(api: Api) -> None:
    response = put(api, api.alpha, application="alpha", period="month", limit_usd="12.345678901")

    assert response.status_code == 200
    budget = response.json()
    assert budget["limit_usd"] == "12.345678901"
    assert budget["remaining_usd"] == "12.345678901"
    assert budget["spent_usd"] == budget["reserved_usd"] == "0"
    assert (budget["application"], budget["period"], budget["hard"]) == ("alpha", "month", True)
    assert api.client.get(f"/api/budgets/{budget['id']}", headers=api.alpha).json() == budget
    assert api.client.get("/api/budgets", headers=api.alpha).json()["data"] == [budget]


def test_setting_the_same_scope_again_replaces_its_limits(api: Api) -> None:
    first = put(api, api.alpha, application="alpha", period="day", limit_tokens=100).json()
    second = put(api, api.alpha, application="alpha", period="day", limit_tokens=50, hard=False).json()

    assert second["id"] == first["id"]
    assert (second["limit_tokens"], second["hard"]) == (50, False)


def test_spend_is_tracked_exactly(api: Api) -> None:
    budget = put(api, api.alpha, application="alpha", period="total", limit_usd="1").json()
    results = api.calls("alpha", 3)

    shown = api.client.get(f"/api/budgets/{budget['id']}", headers=api.alpha).json()

    spent = sum(result.cost or 0 for result in results)
    assert shown["spent_usd"] == format(spent.normalize(), "f")
    assert shown["spent_tokens"] == sum(result.usage.total_tokens for result in results)
    assert shown["reserved_usd"] == "0"


def test_another_applications_budget_is_not_found(api: Api) -> None:
    budget = put(api, api.beta, application="beta", period="day", limit_usd="5").json()

    for method in ("GET", "DELETE"):
        other = api.client.request(method, f"/api/budgets/{budget['id']}", headers=api.alpha)
        missing = api.client.request(method, "/api/budgets/999999", headers=api.alpha)
        assert other.status_code == missing.status_code == 404
        assert other.json()["error"]["message"] == f"budget {budget['id']} not found"
    assert put(api, api.alpha, application="beta", period="day", limit_usd="1").status_code == 404
    assert api.client.get("/api/budgets", headers=api.alpha).json()["data"] == []
    assert [b["application"] for b in api.client.get("/api/budgets", headers=api.admin).json()["data"]] == [
        "beta"
    ]
    assert api.client.get(f"/api/budgets/{budget['id']}", headers=api.beta).status_code == 200


def test_admin_sets_budgets_for_any_application(api: Api) -> None:
    response = put(api, api.admin, application="beta", period="day", limit_tokens=10, configuration="priced")

    assert response.status_code == 200
    assert (response.json()["application"], response.json()["configuration"]) == ("beta", "priced")


def test_budget_validation(api: Api) -> None:
    no_limit = put(api, api.alpha, application="alpha", period="day")
    bad_period = put(api, api.alpha, application="alpha", period="week", limit_tokens=1)
    too_precise = put(api, api.alpha, application="alpha", period="day", limit_usd="0.0000000001")
    unknown_token = put(
        api, api.alpha, application="alpha", period="day", limit_tokens=1, token="llmm_00000000"
    )

    assert no_limit.status_code == bad_period.status_code == too_precise.status_code == 400
    assert bad_period.json()["error"]["param"] == "period"
    assert too_precise.json()["error"]["param"] == "limit_usd"
    assert (unknown_token.status_code, unknown_token.json()["error"]["param"]) == (400, "token")
    assert api.client.get("/api/budgets/abc", headers=api.alpha).status_code == 400


def test_delete(api: Api) -> None:
    budget = put(api, api.alpha, application="alpha", period="day", limit_tokens=5).json()

    assert api.client.delete(f"/api/budgets/{budget['id']}", headers=api.alpha).status_code == 204
    assert api.client.get(f"/api/budgets/{budget['id']}", headers=api.alpha).status_code == 404


def test_explain_shows_what_would_refuse_the_next_call(api: Api) -> None:
    put(api, api.alpha, application="alpha", period="day", limit_usd="0.000001")

    response = api.client.get("/api/budgets/explain?configuration=priced", headers=api.alpha)

    assert response.status_code == 200
    explanation = response.json()
    assert (explanation["application"], explanation["configuration"]) == ("alpha", "priced")
    assert explanation["allowed"] is False
    (check,) = explanation["checks"]
    assert check["blocks_next_call"] is True
    assert check["budget"]["limit_usd"] == "0.000001"
    ceiling = explanation["next_call_ceiling"]
    assert ceiling["tokens"] > 0
    assert isinstance(ceiling["usd"], str)
    without = api.client.get("/api/budgets/explain", headers=api.alpha).json()
    assert without["next_call_ceiling"] is None
    assert without["configuration"] is None


def test_explain_refuses_what_the_caller_cannot_see(api: Api) -> None:
    api.create_configuration("beta-only", application="beta")

    other_app = api.client.get("/api/budgets/explain?application=beta", headers=api.alpha)
    other_configuration = api.client.get("/api/budgets/explain?configuration=beta-only", headers=api.alpha)
    missing = api.client.get("/api/budgets/explain?configuration=nothing", headers=api.alpha)

    assert other_app.status_code == other_configuration.status_code == missing.status_code == 404
    by_admin = api.client.get(
        "/api/budgets/explain?application=beta&configuration=beta-only", headers=api.admin
    )
    assert by_admin.status_code == 200
    assert by_admin.json()["allowed"] is True


def test_events_record_thresholds_per_application(api: Api) -> None:
    budget = put(api, api.alpha, application="alpha", period="day", limit_tokens=1, hard=False).json()
    api.calls("alpha", 1)

    events = api.client.get("/api/budgets/events", headers=api.alpha).json()["data"]

    assert sorted(event["threshold"] for event in events) == [50, 80, 100]
    assert {event["budget_id"] for event in events} == {budget["id"]}
    assert all(isinstance(event["spent_usd"], str) for event in events)
    assert api.client.get("/api/budgets/events", headers=api.beta).json()["data"] == []
    assert len(api.client.get("/api/budgets/events?limit=1", headers=api.admin).json()["data"]) == 1
    filtered = api.client.get(f"/api/budgets/events?budget_id={budget['id']}", headers=api.admin).json()
    assert len(filtered["data"]) == 3
