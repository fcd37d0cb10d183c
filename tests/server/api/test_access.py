"""Every /api route needs a management (or admin) token, and no response ever carries a secret."""

from __future__ import annotations

import hashlib

import pytest

from tests.server.api.conftest import Api

ROUTES = [
    ("GET", "/api/configurations"),
    ("POST", "/api/configurations"),
    ("GET", "/api/configurations/priced"),
    ("PATCH", "/api/configurations/priced"),
    ("DELETE", "/api/configurations/priced"),
    ("POST", "/api/configurations/priced/test"),
    ("GET", "/api/configurations/priced/models"),
    ("GET", "/api/applications"),
    ("POST", "/api/applications"),
    ("GET", "/api/applications/alpha"),
    ("PATCH", "/api/applications/alpha"),
    ("GET", "/api/tokens"),
    ("POST", "/api/tokens"),
    ("GET", "/api/tokens/llmm_00000000"),
    ("POST", "/api/tokens/llmm_00000000/revoke"),
    ("GET", "/api/usage"),
    ("GET", "/api/usage/some-id"),
    ("GET", "/api/stats/summary"),
    ("GET", "/api/stats/by/model"),
    ("GET", "/api/stats/top-models"),
    ("GET", "/api/metrics"),
    ("POST", "/api/metrics"),
    ("GET", "/api/budgets"),
    ("PUT", "/api/budgets"),
    ("GET", "/api/budgets/explain"),
    ("GET", "/api/budgets/events"),
    ("GET", "/api/budgets/1"),
    ("DELETE", "/api/budgets/1"),
]
UNKNOWN_TOKEN = "llmm_0123abcd_" + "x" * 43


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer junk"},
        {"Authorization": f"Bearer {UNKNOWN_TOKEN}"},
        {"x-api-key": "junk"},
    ],
    ids=["none", "junk", "unknown", "junk-x-api-key"],
)
def test_every_route_needs_a_valid_token(api: Api, headers: dict[str, str]) -> None:
    for method, path in ROUTES:
        response = api.client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"


def test_an_inference_token_may_not_manage(api: Api) -> None:
    inference = api.token("alpha", groups=("inference",))
    for method, path in ROUTES:
        response = api.client.request(method, path, headers=inference, json={})
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["type"] == "permission_error"


def test_a_revoked_token_is_refused_at_once(api: Api) -> None:
    issued = api.client.post("/api/tokens", headers=api.alpha, json={"groups": ["management"]}).json()
    headers = {"Authorization": f"Bearer {issued['secret']}"}
    assert api.client.get("/api/tokens", headers=headers).status_code == 200

    api.client.post(f"/api/tokens/{issued['token']['prefix']}/revoke", headers=api.alpha)

    assert api.client.get("/api/tokens", headers=headers).status_code == 401


def test_no_response_carries_an_api_key_or_a_token_secret(api: Api) -> None:
    api_key = "sk-live-very-secret-key-0123456789"
    created = api.client.post(
        "/api/configurations",
        headers=api.alpha,
        json={"slug": "keyed", "provider": "openai", "model": "gpt-4o-mini", "api_key": api_key},
    )
    assert created.status_code == 201, created.text
    issued = api.client.post("/api/tokens", headers=api.alpha, json={"name": "ci"}).json()
    secret = issued["secret"]
    api.calls("alpha", 2)

    bodies = [created.text]
    for path in (
        "/api/configurations",
        "/api/configurations/keyed",
        "/api/tokens",
        f"/api/tokens/{issued['token']['prefix']}",
        "/api/usage",
        "/api/applications",
        "/api/stats/summary",
        "/api/metrics",
        "/api/budgets",
        "/api/budgets/explain?application=alpha&configuration=keyed",
    ):
        for headers in (api.alpha, api.admin):
            response = api.client.get(path, headers=headers)
            assert response.status_code == 200, (path, response.text)
            bodies.append(response.text)
    bodies.append(api.client.post(f"/api/tokens/{issued['token']['prefix']}/revoke", headers=api.alpha).text)

    token_hash = hashlib.sha256(secret.encode()).hexdigest()
    for body in bodies:
        assert api_key not in body
        assert api_key[-12:] not in body
        assert secret not in body
        assert token_hash not in body
        assert "token_hash" not in body
        assert "ciphertext" not in body
    keyed = api.client.get("/api/configurations/keyed", headers=api.alpha).json()
    assert keyed["has_api_key"] is True
    assert keyed["api_key_hint"] == "…6789"
    assert "api_key" not in keyed


def test_every_route_is_documented(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    operations = [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        if path.startswith(("/api/configurations", "/api/applications", "/api/tokens", "/api/usage"))
        or path.startswith(("/api/stats", "/api/metrics", "/api/budgets"))
        for method, operation in item.items()
    ]
    assert len(operations) == len(ROUTES)
    for method, path, operation in operations:
        assert operation.get("summary"), (method, path)
        success = next(code for code in operation["responses"] if code.startswith("2"))
        if success != "204":
            content = operation["responses"][success]["content"]["application/json"]["schema"]
            assert "$ref" in content, (method, path)
