from __future__ import annotations

from tests.server.api.conftest import Api


def test_admin_lists_every_application_others_only_their_own(api: Api) -> None:
    everyone = api.client.get("/api/applications", headers=api.admin).json()["data"]
    own = api.client.get("/api/applications", headers=api.alpha).json()["data"]

    assert [app["name"] for app in everyone] == ["alpha", "beta", "ops"]
    assert [app["name"] for app in own] == ["alpha"]
    assert set(own[0]) == {"id", "name", "description", "is_active", "rpm_limit", "tpm_limit", "created_at"}


def test_another_application_is_not_found_like_a_missing_one(api: Api) -> None:
    assert api.client.get("/api/applications/alpha", headers=api.alpha).json()["name"] == "alpha"

    other = api.client.get("/api/applications/beta", headers=api.alpha)
    missing = api.client.get("/api/applications/nobody", headers=api.alpha)

    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["type"] == missing.json()["error"]["type"] == "not_found_error"
    assert api.client.get("/api/applications/beta", headers=api.admin).status_code == 200
    assert api.client.get("/api/applications/nobody", headers=api.admin).status_code == 404


def test_only_admins_create_applications(api: Api) -> None:
    body = {"name": "gamma", "description": "new", "rpm_limit": 60}

    refused = api.client.post("/api/applications", headers=api.alpha, json=body)
    created = api.client.post("/api/applications", headers=api.admin, json=body)
    again = api.client.post("/api/applications", headers=api.admin, json=body)

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert created.status_code == 201
    assert created.json()["name"] == "gamma"
    assert created.json()["rpm_limit"] == 60
    assert created.json()["is_active"] is True
    assert again.status_code == 409


def test_create_refuses_bad_input_naming_the_field(api: Api) -> None:
    unknown = api.client.post("/api/applications", headers=api.admin, json={"name": "x", "colour": "red"})
    bad_limit = api.client.post("/api/applications", headers=api.admin, json={"name": "x", "rpm_limit": 0})
    bad_name = api.client.post("/api/applications", headers=api.admin, json={"name": "no/slashes"})

    assert unknown.status_code == 400
    assert unknown.json()["error"]["param"] == "colour"
    assert bad_limit.status_code == 400
    assert bad_limit.json()["error"]["param"] == "rpm_limit"
    assert bad_name.status_code == 400
    assert bad_name.json()["error"]["param"] == "name"


def test_admin_changes_only_the_fields_sent(api: Api) -> None:
    limited = api.client.patch(
        "/api/applications/beta", headers=api.admin, json={"rpm_limit": 10, "tpm_limit": 1000}
    )
    described = api.client.patch("/api/applications/beta", headers=api.admin, json={"description": "B"})
    lifted = api.client.patch("/api/applications/beta", headers=api.admin, json={"rpm_limit": None})

    assert (limited.json()["rpm_limit"], limited.json()["tpm_limit"]) == (10, 1000)
    assert (described.json()["rpm_limit"], described.json()["description"]) == (10, "B")
    assert (lifted.json()["rpm_limit"], lifted.json()["tpm_limit"]) == (None, 1000)
    assert api.client.patch("/api/applications/nobody", headers=api.admin, json={}).status_code == 404


def test_deactivating_an_application_refuses_its_tokens(api: Api) -> None:
    refused = api.client.patch("/api/applications/alpha", headers=api.alpha, json={"rpm_limit": None})
    assert refused.status_code == 403

    response = api.client.patch("/api/applications/beta", headers=api.admin, json={"is_active": False})

    assert response.json()["is_active"] is False
    assert api.client.get("/api/applications", headers=api.beta).status_code == 401
