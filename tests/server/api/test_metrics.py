from __future__ import annotations

from typing import Any

from llm_manager.manager import LLMManager
from tests.server.api.conftest import Api


def metrics(api: Api, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    response = api.client.get(f"/api/metrics{query}", headers=headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def test_record_a_metric_about_a_call(api: Api) -> None:
    (call,) = api.calls("alpha", 1)

    response = api.client.post(
        "/api/metrics",
        headers=api.alpha,
        json={"name": "quality", "value": 0.75, "data": {"judge": "human"}, "log_id": call.log_id},
    )

    assert response.status_code == 201
    recorded = response.json()
    assert recorded["log_id"] == call.log_id
    assert recorded["application_id"] == api.application_id("alpha")
    (listed,) = metrics(api, api.alpha)
    assert listed == recorded | {"created_at": listed["created_at"]}
    assert metrics(api, api.alpha, f"?log_id={call.log_id}") == [listed]
    assert metrics(api, api.alpha, "?name=quality") == [listed]
    assert metrics(api, api.alpha, "?name=other") == []


def test_a_metric_about_the_application(api: Api) -> None:
    response = api.client.post("/api/metrics", headers=api.beta, json={"name": "daily.users", "value": 42})

    assert response.status_code == 201
    assert response.json()["log_id"] is None
    assert [m["value"] for m in metrics(api, api.beta)] == [42]
    assert metrics(api, api.alpha) == []


def test_another_applications_call_is_not_found(api: Api) -> None:
    (call,) = api.calls("alpha", 1)

    other = api.client.post(
        "/api/metrics", headers=api.beta, json={"name": "x", "value": 1, "log_id": call.log_id}
    )
    missing = api.client.post(
        "/api/metrics", headers=api.beta, json={"name": "x", "value": 1, "log_id": "nope"}
    )
    listing = api.client.get(f"/api/metrics?log_id={call.log_id}", headers=api.beta)

    assert other.status_code == missing.status_code == listing.status_code == 404
    assert other.json()["error"]["type"] == "not_found_error"
    by_admin = api.client.post(
        "/api/metrics", headers=api.admin, json={"name": "x", "value": 1, "log_id": call.log_id}
    )
    assert by_admin.status_code == 201
    assert by_admin.json()["application_id"] == api.application_id("alpha")


def test_each_application_lists_only_its_own_metrics(api: Api) -> None:
    (call,) = api.calls("alpha", 1)
    for value in range(3):
        api.client.post("/api/metrics", headers=api.alpha, json={"name": "a", "value": value})
    for value in range(5):
        api.client.post("/api/metrics", headers=api.beta, json={"name": "b", "value": value})

    async def through_the_library(llm: LLMManager) -> None:
        await llm.record_metric("lib", 9, log_id=call.log_id)

    api.gateway.run(through_the_library)

    assert [m["value"] for m in metrics(api, api.alpha)] == [9, 2, 1, 0]
    assert [m["value"] for m in metrics(api, api.alpha, "?limit=2")] == [9, 2]
    assert [m["value"] for m in metrics(api, api.beta, "?limit=2")] == [4, 3]
    assert len(metrics(api, api.admin)) == 9


def test_invalid_metrics_name_the_field(api: Api) -> None:
    bad_name = api.client.post("/api/metrics", headers=api.alpha, json={"name": "has space", "value": 1})
    empty = api.client.post("/api/metrics", headers=api.alpha, json={"name": "x"})
    unknown = api.client.post("/api/metrics", headers=api.alpha, json={"name": "x", "value": 1, "unit": "s"})

    assert (bad_name.status_code, bad_name.json()["error"]["param"]) == (400, "name")
    assert (empty.status_code, empty.json()["error"]["param"]) == (400, "value")
    assert (unknown.status_code, unknown.json()["error"]["param"]) == (400, "unit")
