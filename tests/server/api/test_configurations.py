from __future__ import annotations

from typing import Any

import pytest

from tests.server.api.conftest import Api

DEMO = {"provider": "demo", "model": "demo-chat", "options": {"delay_ms": 0}}


@pytest.fixture
def scoped(api: Api) -> Api:
    api.create_configuration("alpha-only", application="alpha")
    api.create_configuration("beta-only", application="beta", is_active=False)
    return api


def slugs(api: Api, headers: dict[str, str], query: str = "") -> list[str]:
    response = api.client.get(f"/api/configurations{query}", headers=headers)
    assert response.status_code == 200
    return [configuration["slug"] for configuration in response.json()["data"]]


def test_a_management_token_sees_global_and_its_own(scoped: Api) -> None:
    assert slugs(scoped, scoped.alpha) == ["alpha-only", "priced"]
    assert slugs(scoped, scoped.beta) == ["beta-only", "priced"]
    assert slugs(scoped, scoped.admin) == ["alpha-only", "beta-only", "priced"]


def test_list_filters(scoped: Api) -> None:
    assert slugs(scoped, scoped.admin, "?active=false") == ["beta-only"]
    assert slugs(scoped, scoped.admin, "?active=true") == ["alpha-only", "priced"]
    assert slugs(scoped, scoped.admin, "?provider=openai") == []
    assert slugs(scoped, scoped.alpha, "?provider=demo") == ["alpha-only", "priced"]


def test_another_applications_configuration_is_not_found(scoped: Api) -> None:
    for method, suffix in (
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/test"),
        ("GET", "/models"),
    ):
        other = scoped.client.request(
            method, f"/api/configurations/beta-only{suffix}", headers=scoped.alpha, json={}
        )
        missing = scoped.client.request(
            method, f"/api/configurations/nothing{suffix}", headers=scoped.alpha, json={}
        )
        assert other.status_code == missing.status_code == 404, (method, suffix)
        assert other.json()["error"]["type"] == missing.json()["error"]["type"]
    shown = scoped.client.get("/api/configurations/beta-only", headers=scoped.admin)
    assert shown.json()["application"] == "beta"


def test_a_management_token_creates_for_its_own_application(api: Api) -> None:
    response = api.client.post("/api/configurations", headers=api.alpha, json={"slug": "mine", **DEMO})

    assert response.status_code == 201
    created = response.json()
    assert created["application"] == "alpha"
    assert created["provider_label"] == "Demo (offline)"
    assert created["is_demo"] is True
    assert created["has_api_key"] is False
    assert "mine" not in slugs(api, api.beta)


@pytest.mark.parametrize("application", ["", None])
def test_a_management_token_cannot_create_global_configurations(api: Api, application: str | None) -> None:
    body = {"slug": "shared", "application": application, **DEMO}

    response = api.client.post("/api/configurations", headers=api.alpha, json=body)

    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert "shared" not in slugs(api, api.admin)


def test_naming_another_application_reads_as_not_found(scoped: Api) -> None:
    other = scoped.client.post(
        "/api/configurations", headers=scoped.alpha, json={"slug": "x", "application": "beta", **DEMO}
    )
    missing = scoped.client.post(
        "/api/configurations", headers=scoped.alpha, json={"slug": "x", "application": "nobody", **DEMO}
    )
    fallback = scoped.client.post(
        "/api/configurations", headers=scoped.alpha, json={"slug": "x", "fallbacks": ["beta-only"], **DEMO}
    )

    assert other.status_code == missing.status_code == 400
    assert other.json()["error"] == missing.json()["error"] | {"message": "application 'beta' not found"}
    assert other.json()["error"]["param"] == "application"
    assert fallback.status_code == 400
    assert fallback.json()["error"]["param"] == "fallbacks"
    assert fallback.json()["error"]["message"] == "configuration 'beta-only' not found"


def test_admin_creates_global_configurations(api: Api) -> None:
    body: dict[str, Any] = {"slug": "shared", "input_price": "0.25", "output_price": "1.000000001", **DEMO}

    response = api.client.post("/api/configurations", headers=api.admin, json=body)

    assert response.status_code == 201
    created = response.json()
    assert created["application"] is None
    assert created["price_override"] == {
        "input": "0.25",
        "output": "1.000000001",
        "cache_read": None,
        "cache_write": None,
    }
    assert "shared" in slugs(api, api.alpha)


def test_create_validation(api: Api) -> None:
    bad_slug = api.client.post("/api/configurations", headers=api.admin, json={"slug": "Bad Slug", **DEMO})
    unknown_field = api.client.post(
        "/api/configurations", headers=api.admin, json={"slug": "ok", "temperature": 1, **DEMO}
    )
    unknown_provider = api.client.post(
        "/api/configurations", headers=api.admin, json={"slug": "ok", "provider": "nope", "model": "m"}
    )
    taken = api.client.post("/api/configurations", headers=api.alpha, json={"slug": "priced", **DEMO})

    assert (bad_slug.status_code, bad_slug.json()["error"]["param"]) == (400, "slug")
    assert (unknown_field.status_code, unknown_field.json()["error"]["param"]) == (400, "temperature")
    assert (unknown_provider.status_code, unknown_provider.json()["error"]["param"]) == (400, "provider")
    assert taken.status_code == 409


def test_update_own_but_not_global(scoped: Api) -> None:
    own = scoped.client.patch(
        "/api/configurations/alpha-only",
        headers=scoped.alpha,
        json={"name": "Renamed", "default_params": {"temperature": 0.1}},
    )
    global_one = scoped.client.patch("/api/configurations/priced", headers=scoped.alpha, json={"name": "x"})
    make_global = scoped.client.patch(
        "/api/configurations/alpha-only", headers=scoped.alpha, json={"application": None}
    )
    give_away = scoped.client.patch(
        "/api/configurations/alpha-only", headers=scoped.alpha, json={"application": "beta"}
    )
    bad_params = scoped.client.patch(
        "/api/configurations/alpha-only", headers=scoped.alpha, json={"default_params": {"temperature": 9}}
    )

    assert own.status_code == 200
    assert (own.json()["name"], own.json()["default_params"]) == ("Renamed", {"temperature": 0.1})
    assert own.json()["application"] == "alpha"
    assert global_one.status_code == 403
    assert make_global.status_code == 403
    assert give_away.status_code == 400
    assert bad_params.status_code == 400
    by_admin = scoped.client.patch(
        "/api/configurations/priced", headers=scoped.admin, json={"is_active": False}
    )
    assert by_admin.json()["is_active"] is False


def test_changing_the_base_url_clears_the_key(api: Api) -> None:
    api.client.post(
        "/api/configurations",
        headers=api.alpha,
        json={
            "slug": "remote",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "api_key": "sk-abcdefghijkl1234",
        },
    )

    moved = api.client.patch(
        "/api/configurations/remote", headers=api.alpha, json={"base_url": "https://example.invalid/v1"}
    )

    assert moved.json()["has_api_key"] is False
    assert moved.json()["api_key_hint"] is None


def test_delete_own_but_not_global(scoped: Api) -> None:
    assert scoped.client.delete("/api/configurations/priced", headers=scoped.alpha).status_code == 403

    deleted = scoped.client.delete("/api/configurations/alpha-only", headers=scoped.alpha)

    assert deleted.status_code == 204
    assert scoped.client.get("/api/configurations/alpha-only", headers=scoped.alpha).status_code == 404
    assert scoped.client.delete("/api/configurations/beta-only", headers=scoped.admin).status_code == 204


def test_connection_test_makes_a_recorded_call(api: Api) -> None:
    response = api.client.post("/api/configurations/priced/test", headers=api.alpha)

    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "ok"
    assert result["configuration"] == "priced"
    assert result["text"]
    assert result["latency_ms"] >= 0
    row = api.client.get(f"/api/usage/{result['log_id']}", headers=api.admin).json()
    assert row["operation"] == "test"
    assert row["cost"] == result["cost"]


def test_connection_test_of_an_inactive_configuration_is_refused(scoped: Api) -> None:
    response = scoped.client.post("/api/configurations/beta-only/test", headers=scoped.beta)

    assert response.status_code == 400
    assert "inactive" in response.json()["error"]["message"]


def test_connection_test_respects_the_tokens_configurations(api: Api) -> None:
    api.create_configuration("other")
    limited = api.gateway.headers(
        api.gateway.token("alpha", groups=("management",), configurations=["other"])
    )

    assert api.client.post("/api/configurations/priced/test", headers=limited).status_code == 403
    assert api.client.post("/api/configurations/other/test", headers=limited).status_code == 200


def test_models(api: Api) -> None:
    response = api.client.get("/api/configurations/priced/models", headers=api.alpha)
    refreshed = api.client.get("/api/configurations/priced/models?refresh=true", headers=api.alpha)

    assert response.status_code == refreshed.status_code == 200
    assert "demo-chat" in {model["id"] for model in response.json()["data"]}
    assert refreshed.json() == response.json()
