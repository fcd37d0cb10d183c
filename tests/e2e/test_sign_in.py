"""Signing in through the real form in a real browser."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ADMIN_EMAIL, PASSWORD, Site

pytestmark = pytest.mark.browser


def test_signing_in_through_the_form_lands_on_the_dashboard(site: Site) -> None:
    page = site.page()
    page.goto("/admin/account")
    expect(page).to_have_url(re.compile(r"/admin/login\?next=/admin/account$"))
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{site.base_url}/admin/account")
    page.goto("/admin")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Ada Admin")).to_be_visible()


def test_a_wrong_password_keeps_you_on_the_form_with_a_message(site: Site) -> None:
    page = site.page()
    page.goto("/admin/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")
    expect(page).to_have_url(re.compile(r"/admin/login"))
