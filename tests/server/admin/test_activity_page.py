"""The activity log page: filters, keyset pagination, a bad cursor, the empty state, super-admins only."""

from __future__ import annotations

import re

from llm_manager.manager import LLMManager
from llm_manager.services.activity import Actor
from tests.server.admin.conftest import Admin

_OLDER = re.compile(r'<a href="(/admin/activity\?[^"]*before=[^"]+)">Older')


def _record(admin: Admin, count: int, action: str = "configuration.update", name: str = "robot") -> None:
    async def record(llm: LLMManager) -> None:
        for number in range(count):
            await llm.services.activity.record(Actor(name=name), action, target=f"item-{number:03d}")

    admin.gateway.run(record)


def test_changes_are_listed_newest_first(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    browser.post("/admin/roles/new", {"name": "auditor"})
    page = browser.get("/admin/activity")
    assert page.status_code == 200
    assert page.text.index("role.create") < page.text.index("user.sign-in")
    assert "super-admin@example.com" in page.text


def test_filters_by_action_prefix_and_actor(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    _record(admin, 2, "token.create", name="cli")
    _record(admin, 1, "budget.set")
    tokens = browser.get("/admin/activity?action=token.")
    assert tokens.text.count("<code>token.create</code>") == 2
    assert "<code>budget.set</code>" not in tokens.text
    assert "<code>user.sign-in</code>" not in tokens.text
    robot = browser.get("/admin/activity?actor=robot")
    assert "<code>budget.set</code>" in robot.text
    assert "<code>token.create</code>" not in robot.text
    none = browser.get("/admin/activity?action=nothing.")
    assert "Nothing matches these filters" in none.text


def test_pages_are_keyset_paginated_and_keep_the_filters(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    _record(admin, 60)
    first = browser.get("/admin/activity?action=configuration.")
    assert first.text.count("item-") == 50
    assert "item-059" in first.text
    assert "item-009" not in first.text
    older = _OLDER.search(first.text)
    assert older is not None
    assert "action=configuration." in older.group(1)
    second = browser.get(older.group(1).replace("&amp;", "&"))
    assert second.status_code == 200
    assert second.text.count("item-") == 10
    assert "item-009" in second.text
    assert "item-000" in second.text
    assert "item-010" not in second.text
    assert _OLDER.search(second.text) is None
    assert "« Newest" in second.text


def test_a_bad_cursor_is_a_400_with_a_message(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    for cursor in ("garbage", "2024-01-01T00:00:00_x", "2024-01-01T00:00:00_5"):
        page = browser.get(f"/admin/activity?before={cursor}")
        assert page.status_code == 400, cursor
        assert "not a cursor this page gave out" in page.text


def test_empty_state_says_what_happens_here(admin: Admin) -> None:
    async def empty(llm: LLMManager) -> int:
        return len((await llm.services.activity.page(actor="nobody")).entries)

    assert admin.gateway.run(empty) == 0
    page = admin.signed_in("super-admin").get("/admin/activity?actor=nobody")
    assert "Nothing matches these filters" in page.text


def test_only_super_admins_read_the_activity_log(admin: Admin) -> None:
    for role in ("admin", "operator", "viewer"):
        assert admin.signed_in(role).get("/admin/activity").status_code == 403, role
