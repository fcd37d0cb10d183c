"""Signing in and out, sessions, CSRF, throttling, and permissions applying on the next request."""

from __future__ import annotations

from llm_manager.manager import LLMManager
from tests.server.admin.conftest import PASSWORD, Admin


def test_pages_redirect_to_sign_in_when_signed_out(admin: Admin) -> None:
    response = admin.browser().get("/admin/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/login?next=/admin/account"


def test_sign_in_sets_a_hardened_cookie_and_shows_the_dashboard(admin: Admin) -> None:
    admin.user("ada@example.com", roles=["viewer"])
    browser = admin.browser()
    response = browser.sign_in("ADA@example.com")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "llmm_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    page = browser.get("/admin")
    assert page.status_code == 200
    assert "ada@example.com" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_wrong_password_is_refused_with_the_same_message_as_an_unknown_email(admin: Admin) -> None:
    admin.user("ada@example.com")
    wrong = admin.browser().sign_in("ada@example.com", "not the password")
    unknown = admin.browser().sign_in("nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong email or password" in wrong.text
    assert "Wrong email or password" in unknown.text


def test_sign_in_without_its_form_token_is_refused(admin: Admin) -> None:
    admin.user("ada@example.com")
    browser = admin.browser()
    response = browser.request(
        "POST",
        "/admin/login",
        data={"email": "ada@example.com", "password": PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 400
    assert "llmm_session" not in response.headers.get("set-cookie", "")


def test_account_throttled_after_five_failures_then_clear_message(admin: Admin) -> None:
    admin.user("ada@example.com")
    browser = admin.browser()
    for _ in range(5):
        assert browser.sign_in("ada@example.com", "wrong password!").status_code == 401
    refused = browser.sign_in("ada@example.com")  # even the right password waits
    assert refused.status_code == 429
    assert "too many failed sign-ins for this account" in refused.text.lower()
    assert int(refused.headers["retry-after"]) > 0
    other = admin.user("bob@example.com")
    assert other
    assert admin.browser().sign_in("bob@example.com").status_code == 303  # only that account waits


def test_state_change_without_csrf_token_is_refused(admin: Admin) -> None:
    browser = admin.signed_in("viewer")
    refused = browser.post("/admin/account/sessions/end-others", {"csrf_token": "forged"})
    assert refused.status_code == 403
    missing = browser.request("POST", "/admin/logout", follow_redirects=False)
    assert missing.status_code == 403
    assert browser.get("/admin/account").status_code == 200  # still signed in


def test_sign_out_ends_the_session(admin: Admin) -> None:
    browser = admin.signed_in("viewer")
    stolen = browser.session_cookie
    assert browser.post("/admin/logout").status_code == 303
    assert browser.get("/admin/account").status_code == 303
    replay = admin.browser()
    replay.use_session_cookie(stolen)
    assert replay.get("/admin/account").status_code == 303


def test_password_change_ends_other_sessions_but_keeps_this_one(admin: Admin) -> None:
    admin.user("ada@example.com", roles=["viewer"])
    laptop, phone = admin.browser(), admin.browser()
    assert laptop.sign_in("ada@example.com").status_code == 303
    assert phone.sign_in("ada@example.com").status_code == 303
    bad = laptop.post(
        "/admin/account/password",
        {
            "current_password": "wrong one!!",
            "new_password": "a new password",
            "confirm_password": "a new password",
        },
    )
    assert bad.status_code == 422
    assert "not your current password" in bad.text
    changed = laptop.post(
        "/admin/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "a new password",
            "confirm_password": "a new password",
        },
    )
    assert changed.status_code == 303
    assert laptop.get("/admin/account").status_code == 200
    assert phone.get("/admin/account").status_code == 303
    assert admin.browser().sign_in("ada@example.com", "a new password").status_code == 303


def test_role_change_applies_on_the_next_request(admin: Admin) -> None:
    user_id = admin.user("ada@example.com", roles=["viewer"])
    browser = admin.browser()
    browser.sign_in("ada@example.com")
    assert 'href="/admin/keys"' not in browser.get("/admin").text

    async def promote(llm: LLMManager) -> None:
        await llm.services.accounts.update_user(user_id, roles=["admin"])

    admin.gateway.run(promote)
    assert 'href="/admin/keys"' in browser.get("/admin").text


def test_deactivated_user_is_signed_out_at_once(admin: Admin) -> None:
    admin.signed_in("super-admin")
    user_id = admin.user("ada@example.com", roles=["viewer"])
    browser = admin.browser()
    browser.sign_in("ada@example.com")

    async def deactivate(llm: LLMManager) -> None:
        await llm.services.accounts.update_user(user_id, is_active=False)

    admin.gateway.run(deactivate)
    assert browser.get("/admin/account").status_code == 303
    assert browser.sign_in("ada@example.com").status_code == 401


def test_next_parameter_cannot_redirect_off_site(admin: Admin) -> None:
    admin.user("ada@example.com")
    browser = admin.browser()
    page = browser.get("/admin/login?next=//evil.example.com")
    assert "evil" not in page.text
