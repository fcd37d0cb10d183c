from __future__ import annotations

from tests.server.api.conftest import Api


def test_create_returns_the_secret_once(api: Api) -> None:
    response = api.client.post(
        "/api/tokens",
        headers=api.alpha,
        json={
            "name": "ci",
            "groups": ["inference", "management"],
            "configurations": ["priced"],
            "rpm_limit": 5,
        },
    )

    assert response.status_code == 201
    issued = response.json()
    token = issued["token"]
    assert issued["secret"].startswith(token["prefix"] + "_")
    assert token["application"] == "alpha"
    assert token["groups"] == ["inference", "management"]
    assert token["configurations"] == ["priced"]
    assert token["rpm_limit"] == 5
    assert token["status"] == "active"
    shown = api.client.get(f"/api/tokens/{token['prefix']}", headers=api.alpha)
    assert shown.json() == token
    assert issued["secret"] not in shown.text
    works = api.client.get("/api/tokens", headers={"Authorization": f"Bearer {issued['secret']}"})
    assert works.status_code == 200


def test_a_management_token_issues_only_for_its_application_and_never_admin(api: Api) -> None:
    api.create_configuration("beta-only", application="beta")
    admin_token = api.client.post("/api/tokens", headers=api.alpha, json={"groups": ["admin"]})
    for_beta = api.client.post("/api/tokens", headers=api.alpha, json={"application": "beta"})
    for_nobody = api.client.post("/api/tokens", headers=api.alpha, json={"application": "nobody"})
    beta_configuration = api.client.post(
        "/api/tokens", headers=api.alpha, json={"configurations": ["beta-only"]}
    )

    assert admin_token.status_code == 403
    assert for_beta.status_code == for_nobody.status_code == 404
    assert for_beta.json()["error"]["message"] == "application 'beta' not found"
    assert beta_configuration.status_code == 400
    assert beta_configuration.json()["error"]["param"] == "configurations"


def test_admin_issues_for_any_application(api: Api) -> None:
    response = api.client.post(
        "/api/tokens", headers=api.admin, json={"application": "beta", "groups": ["admin"]}
    )

    assert response.status_code == 201
    assert response.json()["token"]["application"] == "beta"
    assert api.client.post("/api/tokens", headers=api.admin, json={"groups": ["root"]}).status_code == 400
    missing = api.client.post("/api/tokens", headers=api.admin, json={"application": "nobody"})
    assert missing.status_code == 404


def test_tokens_are_listed_per_application(api: Api) -> None:
    api.client.post("/api/tokens", headers=api.beta, json={"name": "beta-extra"})

    own = api.client.get("/api/tokens", headers=api.alpha).json()["data"]
    everyone = api.client.get("/api/tokens", headers=api.admin).json()["data"]

    assert {token["application"] for token in own} == {"alpha"}
    assert {token["application"] for token in everyone} == {"alpha", "beta", "ops"}
    assert "beta-extra" in {token["name"] for token in everyone}


def test_another_applications_token_is_not_found(api: Api) -> None:
    beta_prefix = api.client.get("/api/tokens", headers=api.beta).json()["data"][0]["prefix"]

    for request in (
        lambda: api.client.get(f"/api/tokens/{beta_prefix}", headers=api.alpha),
        lambda: api.client.post(f"/api/tokens/{beta_prefix}/revoke", headers=api.alpha),
        lambda: api.client.get("/api/tokens/llmm_ffffffff", headers=api.alpha),
        lambda: api.client.get("/api/tokens/not-a-prefix", headers=api.alpha),
    ):
        response = request()
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
    assert api.client.get("/api/tokens", headers=api.beta).status_code == 200


def test_revoke_is_idempotent_and_listed(api: Api) -> None:
    issued = api.client.post("/api/tokens", headers=api.alpha, json={}).json()
    prefix = issued["token"]["prefix"]

    first = api.client.post(f"/api/tokens/{prefix}/revoke", headers=api.alpha)
    second = api.client.post(f"/api/tokens/{prefix}/revoke", headers=api.alpha)

    assert first.json()["status"] == second.json()["status"] == "revoked"
    assert first.json()["revoked_at"] == second.json()["revoked_at"]
    active = api.client.get("/api/tokens?include_revoked=false", headers=api.alpha).json()["data"]
    assert prefix not in {token["prefix"] for token in active}
    by_admin = api.client.post(f"/api/tokens/{prefix}/revoke", headers=api.admin)
    assert by_admin.status_code == 200


def test_expiry_needs_a_time_zone(api: Api) -> None:
    naive = api.client.post("/api/tokens", headers=api.alpha, json={"expires_at": "2099-01-01T00:00:00"})
    past = api.client.post("/api/tokens", headers=api.alpha, json={"expires_at": "2000-01-01T00:00:00Z"})
    future = api.client.post("/api/tokens", headers=api.alpha, json={"expires_at": "2099-01-01T00:00:00Z"})

    assert naive.status_code == 400
    assert naive.json()["error"]["param"] == "expires_at"
    assert past.status_code == 400
    assert future.status_code == 201
    assert future.json()["token"]["expires_at"].startswith("2099-01-01T00:00:00")
