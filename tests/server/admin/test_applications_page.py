"""Applications and their tokens: create, edit, issue a token (its secret shown once), revoke."""

from __future__ import annotations

import re

import pytest

from llm_manager.errors import UnauthenticatedError
from llm_manager.manager import LLMManager
from llm_manager.services.applications import ApplicationView
from llm_manager.services.tokens import TokenView
from tests.server.admin.conftest import Admin, Browser

_SECRET = re.compile(r'<pre class="secret" id="new-token">(llmm_[0-9a-f]{8}_[A-Za-z0-9_-]{43})</pre>')


def assert_forms_carry_csrf(browser: Browser, html: str) -> None:
    """Every form on the page posts the session's CSRF token (the test client would add it anyway)."""
    assert f'name="csrf_token" value="{browser.csrf}"' in html
    assert 'name="csrf_token" value=""' not in html


def _applications(admin: Admin) -> list[ApplicationView]:
    async def listing(llm: LLMManager) -> list[ApplicationView]:
        return await llm.applications.list_all()

    found: list[ApplicationView] = admin.gateway.run(listing)
    return found


def _tokens(admin: Admin) -> list[TokenView]:
    async def listing(llm: LLMManager) -> list[TokenView]:
        return await llm.tokens.list_all()

    found: list[TokenView] = admin.gateway.run(listing)
    return found


def _activity(admin: Admin) -> list[str]:
    async def entries(llm: LLMManager) -> list[str]:
        page = await llm.services.activity.page()
        return [f"{entry.action} {entry.target} {entry.detail}" for entry in page.entries]

    found: list[str] = admin.gateway.run(entries)
    return found


def _with_app(admin: Admin, browser: Browser | None = None) -> Browser:
    browser = browser or admin.signed_in("admin")
    created = browser.post(
        "/admin/applications", {"name": "billing", "description": "Invoices", "rpm_limit": "60"}
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/admin/applications/billing"
    return browser


def test_create_an_application_then_edit_it(admin: Admin) -> None:
    browser = admin.signed_in("admin")
    assert "No applications yet" in browser.get("/admin/applications").text
    _with_app(admin, browser)
    detail = browser.get("/admin/applications/billing")
    assert "Application billing created" in detail.text
    assert_forms_carry_csrf(browser, detail.text)
    listing = browser.get("/admin/applications")
    assert "billing" in listing.text
    assert "Invoices" in listing.text
    assert "has no token yet" in detail.text
    saved = browser.post(
        "/admin/applications/billing", {"description": "Invoices v2", "rpm_limit": "", "tpm_limit": "900"}
    )
    assert saved.status_code == 303
    [app] = _applications(admin)
    assert (app.description, app.is_active, app.rpm_limit, app.tpm_limit) == ("Invoices v2", False, None, 900)
    browser.post("/admin/applications/billing", {"description": "Invoices v2", "is_active": "1"})
    assert _applications(admin)[0].is_active
    actions = [line.split()[0] for line in _activity(admin)]
    assert actions.count("application.update") == 2
    assert "application.create" in actions


def test_invalid_application_re_renders_with_field_errors_and_writes_nothing(admin: Admin) -> None:
    browser = admin.signed_in("admin")
    bad_name = browser.post("/admin/applications", {"name": "!!", "rpm_limit": "60"})
    assert bad_name.status_code == 422
    assert 'id="e-name"' in bad_name.text
    bad_limit = browser.post("/admin/applications", {"name": "billing", "rpm_limit": "lots"})
    assert bad_limit.status_code == 422
    assert 'id="e-rpm_limit"' in bad_limit.text
    assert 'value="billing"' in bad_limit.text
    zero = browser.post("/admin/applications", {"name": "billing", "tpm_limit": "0"})
    assert zero.status_code == 422
    assert 'id="e-tpm_limit"' in zero.text
    assert _applications(admin) == []
    _with_app(admin, browser)
    taken = browser.post("/admin/applications", {"name": "billing"})
    assert taken.status_code == 422
    assert "already exists" in taken.text
    bad_edit = browser.post("/admin/applications/billing", {"rpm_limit": "-3", "is_active": "1"})
    assert bad_edit.status_code == 422
    assert 'id="e-rpm_limit"' in bad_edit.text
    assert _applications(admin)[0].rpm_limit == 60


def test_a_new_token_is_shown_once_then_only_its_prefix(admin: Admin) -> None:
    browser = _with_app(admin)
    issued = browser.post(
        "/admin/applications/billing/tokens",
        {"token_name": "prod", "groups": ["inference", "management"], "token_rpm_limit": "30"},
    )
    assert issued.status_code == 200
    assert issued.headers["cache-control"] == "no-store"
    found = _SECRET.search(issued.text)
    assert found is not None, issued.text
    secret = found.group(1)
    prefix = secret[: len("llmm_") + 8]
    assert 'data-copy="#new-token"' in issued.text
    assert "shown this once" in issued.text

    async def authenticate(llm: LLMManager) -> str:
        return (await llm.tokens.authenticate(secret)).application

    assert admin.gateway.run(authenticate) == "billing"
    detail = browser.get("/admin/applications/billing")
    assert prefix in detail.text
    assert secret not in detail.text
    assert secret not in browser.get("/admin/applications").text
    assert all(secret not in line for line in _activity(admin))
    [token] = _tokens(admin)
    assert token.groups == ("inference", "management")
    assert token.rpm_limit == 30
    assert token.name == "prod"


def test_invalid_token_form_re_renders_with_field_errors_and_issues_nothing(admin: Admin) -> None:
    browser = _with_app(admin)
    no_scope = browser.post("/admin/applications/billing/tokens", {"token_name": "prod"})
    assert no_scope.status_code == 422
    assert "groups: choose from" not in no_scope.text
    assert "choose from inference" in no_scope.text
    past = browser.post(
        "/admin/applications/billing/tokens", {"groups": "inference", "expires_at": "2001-01-01T00:00"}
    )
    assert past.status_code == 422
    assert 'id="e-expires_at"' in past.text
    bad_limit = browser.post(
        "/admin/applications/billing/tokens", {"groups": "inference", "token_tpm_limit": "0"}
    )
    assert bad_limit.status_code == 422
    assert 'id="e-token_tpm_limit"' in bad_limit.text
    unknown = browser.post(
        "/admin/applications/billing/tokens", {"groups": "inference", "configurations": "nope"}
    )
    assert unknown.status_code == 422
    assert "configuration &#39;nope&#39; not found" in unknown.text
    assert _SECRET.search(unknown.text) is None
    assert _tokens(admin) == []


def test_revoke_a_token(admin: Admin) -> None:
    browser = _with_app(admin)
    issued = browser.post("/admin/applications/billing/tokens", {"groups": "inference"})
    found = _SECRET.search(issued.text)
    assert found is not None
    [token] = _tokens(admin)
    revoked = browser.post(f"/admin/applications/billing/tokens/{token.prefix}/revoke")
    assert revoked.status_code == 303
    assert _tokens(admin)[0].status == "revoked"
    assert "revoked" in browser.get("/admin/applications/billing").text

    async def authenticate(llm: LLMManager) -> None:
        await llm.tokens.authenticate(found.group(1))

    with pytest.raises(UnauthenticatedError):
        admin.gateway.run(authenticate)
    assert any(line.startswith(f"token.revoke {token.prefix}") for line in _activity(admin))


def test_applications_need_the_manage_llm_providers_permission(admin: Admin) -> None:
    _with_app(admin)
    viewer = admin.signed_in("viewer")
    assert viewer.get("/admin/applications").status_code == 403
    assert viewer.get("/admin/applications/billing").status_code == 403
    assert viewer.post("/admin/applications/billing/tokens", {"groups": "inference"}).status_code == 403
    assert _tokens(admin) == []


def test_a_token_form_without_its_csrf_token_is_refused(admin: Admin) -> None:
    browser = _with_app(admin)
    refused = browser.post(
        "/admin/applications/billing/tokens", {"groups": "inference", "csrf_token": "forged"}
    )
    assert refused.status_code == 403
    assert _tokens(admin) == []
