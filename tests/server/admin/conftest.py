"""Admin UI fixtures: users with roles, and a browser-like client that signs in and posts forms."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llm_manager.manager import LLMManager
from tests.server.conftest import Gateway

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'"X-CSRF-Token": "([^"]+)"')
_LOGIN_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """One person: their own cookie jar on the shared TestClient, posting forms with CSRF tokens.

    All browsers share the app's one TestClient (its event loop owns the database connections);
    each swaps its cookies in for a request and keeps what the response set.
    """

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.saved: list[tuple[str, str, str, str]] = []
        self.csrf = ""

    def request(self, method: str, url: str, **options: Any) -> Any:
        jar = self.client.cookies
        jar.clear()
        for name, value, domain, path in self.saved:
            jar.set(name, value, domain=domain, path=path)
        try:
            return self.client.request(method, url, **options)
        finally:
            self.saved = [(c.name, c.value or "", c.domain, c.path) for c in jar.jar]

    @property
    def session_cookie(self) -> str:
        return next(value for name, value, _, _ in self.saved if name == "llmm_session")

    def use_session_cookie(self, value: str) -> None:
        self.saved = [("llmm_session", value, "testserver.local", "/")]

    def sign_in(self, email: str, password: str = PASSWORD) -> Any:
        page = self.request("GET", "/admin/login")
        login_csrf = _LOGIN_CSRF.search(page.text)
        assert login_csrf is not None
        response = self.request(
            "POST",
            "/admin/login",
            data={"email": email, "password": password, "csrf_token": login_csrf.group(1), "next": "/admin"},
            follow_redirects=False,
        )
        if response.status_code == 303:
            self.refresh_csrf()
        return response

    def refresh_csrf(self) -> None:
        found = _CSRF.search(self.request("GET", "/admin/account").text)
        assert found is not None, "signed-in pages carry the CSRF token in hx-headers"
        self.csrf = found.group(1)

    def get(self, url: str, **options: Any) -> Any:
        return self.request("GET", url, follow_redirects=False, **options)

    def post(self, url: str, data: dict[str, Any] | None = None, **options: Any) -> Any:
        """A form post with this session's CSRF token (pass `csrf_token=...` in data to override)."""
        form = {"csrf_token": self.csrf, **(data or {})}
        return self.request("POST", url, data=form, follow_redirects=False, **options)


class Admin:
    """Sets up users on the running app and opens a `Browser` per person."""

    def __init__(self, gateway: Gateway, client: TestClient) -> None:
        self.gateway = gateway
        self._client = client

    def user(self, email: str, roles: Sequence[str] = ("viewer",), password: str = PASSWORD) -> int:
        async def create(llm: LLMManager) -> int:
            return (await llm.services.accounts.create_user(email, password, roles=roles)).id

        user_id: int = self.gateway.run(create)
        return user_id

    def browser(self) -> Browser:
        """A new browser (its own cookies): another user, or the same user on another device."""
        return Browser(self._client)

    def signed_in(self, role: str = "super-admin", email: str | None = None) -> Browser:
        address = email or f"{role}@example.com"
        self.user(address, roles=[role])
        browser = self.browser()
        assert browser.sign_in(address).status_code == 303
        return browser


@pytest.fixture
def admin(gateway: Gateway, client: TestClient) -> Admin:
    return Admin(gateway, client)
