"""Users and the role × permission matrix, for super-admins only."""

from __future__ import annotations

from llm_manager.manager import LLMManager
from llm_manager.services.accounts import RoleView, UserView
from tests.server.admin.conftest import PASSWORD, Admin, Browser

NEW_PASSWORD = "a brand new password"


def assert_forms_carry_csrf(browser: Browser, html: str) -> None:
    """Every form on the page posts the session's CSRF token (the test client would add it anyway)."""
    assert f'name="csrf_token" value="{browser.csrf}"' in html
    assert 'name="csrf_token" value=""' not in html


def _user(admin: Admin, email: str) -> UserView:
    async def find(llm: LLMManager) -> UserView:
        return await llm.services.accounts.user_by_email(email)

    found: UserView = admin.gateway.run(find)
    return found


def _users(admin: Admin) -> list[str]:
    async def listing(llm: LLMManager) -> list[str]:
        return [user.email for user in await llm.services.accounts.list_users()]

    found: list[str] = admin.gateway.run(listing)
    return found


def _roles(admin: Admin) -> dict[str, RoleView]:
    async def listing(llm: LLMManager) -> dict[str, RoleView]:
        return {role.name: role for role in await llm.services.accounts.list_roles()}

    found: dict[str, RoleView] = admin.gateway.run(listing)
    return found


def _actions(admin: Admin) -> list[str]:
    async def entries(llm: LLMManager) -> list[str]:
        return [entry.action for entry in (await llm.services.activity.page()).entries]

    found: list[str] = admin.gateway.run(entries)
    return found


def _matrix_form(admin: Admin, **extra: list[str]) -> dict[str, list[str]]:
    """The matrix form as the page submits it: every role, every ticked box, plus `extra` grants."""
    roles = _roles(admin)
    grants = [
        f"{name}:{permission}" for name, role in roles.items() for permission in sorted(role.permissions)
    ]
    grants += [f"{name}:{permission}" for name, permissions in extra.items() for permission in permissions]
    return {"roles": list(roles), "grants": grants}


def test_create_a_user_then_edit_their_roles(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    created = browser.post(
        "/admin/users",
        {"email": "Ada@Example.com", "name": "Ada", "password": PASSWORD, "roles": ["operator"]},
    )
    assert created.status_code == 303
    listing = browser.get("/admin/users")
    assert "User ada@example.com created" in listing.text
    ada = _user(admin, "ada@example.com")
    assert ada.roles == ("operator",)
    assert ada.name == "Ada"
    assert_forms_carry_csrf(browser, listing.text)
    page = browser.get(f"/admin/users/{ada.id}")
    assert_forms_carry_csrf(browser, page.text)
    assert page.status_code == 200
    assert 'value="operator" checked' in page.text
    saved = browser.post(
        f"/admin/users/{ada.id}", {"name": "Ada L.", "roles": ["viewer", "admin"], "is_active": "1"}
    )
    assert saved.status_code == 303
    ada = _user(admin, "ada@example.com")
    assert set(ada.roles) == {"viewer", "admin"}
    assert ada.name == "Ada L."
    assert ada.is_active
    assert _actions(admin)[:2] == ["user.update", "user.create"]


def test_invalid_user_re_renders_with_field_errors_and_writes_nothing(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    short = browser.post("/admin/users", {"email": "ada@example.com", "password": "short", "roles": "viewer"})
    assert short.status_code == 422
    assert 'id="e-password"' in short.text
    assert 'value="ada@example.com"' in short.text
    bad_email = browser.post("/admin/users", {"email": "not-an-email", "password": PASSWORD})
    assert bad_email.status_code == 422
    assert 'id="e-email"' in bad_email.text
    assert _users(admin) == ["super-admin@example.com"]
    taken = browser.post("/admin/users", {"email": "super-admin@example.com", "password": PASSWORD})
    assert taken.status_code == 422
    assert "already exists" in taken.text


def test_reset_password_ends_their_sessions(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    ada = admin.browser()
    admin.user("ada@example.com", roles=["viewer"])
    assert ada.sign_in("ada@example.com").status_code == 303
    ada_id = _user(admin, "ada@example.com").id
    too_short = browser.post(f"/admin/users/{ada_id}/password", {"new_password": "short"})
    assert too_short.status_code == 422
    assert 'id="e-new_password"' in too_short.text
    assert ada.get("/admin").status_code == 200
    reset = browser.post(f"/admin/users/{ada_id}/password", {"new_password": NEW_PASSWORD})
    assert reset.status_code == 303
    assert ada.get("/admin").status_code == 303, "her session ended"
    assert admin.browser().sign_in("ada@example.com", NEW_PASSWORD).status_code == 303
    assert "user.password-reset" in _actions(admin)
    assert browser.get("/admin/users").status_code == 200, "the resetting admin stays signed in"


def test_deactivating_a_user_signs_them_out(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    ada = admin.signed_in("viewer", email="ada@example.com")
    ada_id = _user(admin, "ada@example.com").id
    assert browser.post(f"/admin/users/{ada_id}", {"name": "", "roles": "viewer"}).status_code == 303
    assert not _user(admin, "ada@example.com").is_active
    assert ada.get("/admin").status_code == 303


def test_the_last_super_admin_is_protected(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    me = _user(admin, "super-admin@example.com")
    demote = browser.post(f"/admin/users/{me.id}", {"roles": "admin", "is_active": "1"})
    assert demote.status_code == 409
    assert "This would leave no active super-admin." in demote.text
    yourself = browser.post(f"/admin/users/{me.id}", {"roles": "super-admin"})
    assert yourself.status_code == 422
    assert "you cannot deactivate yourself" in yourself.text
    delete = browser.post(f"/admin/users/{me.id}/delete")
    assert delete.status_code == 409
    assert "You cannot delete yourself." in delete.text
    me = _user(admin, "super-admin@example.com")
    assert me.roles == ("super-admin",)
    assert me.is_active
    assert "user.update" not in _actions(admin)


def test_delete_a_user(admin: Admin) -> None:
    browser = admin.signed_in("super-admin")
    admin.user("ada@example.com")
    ada_id = _user(admin, "ada@example.com").id
    assert 'data-confirm="Delete ada@example.com?' in browser.get(f"/admin/users/{ada_id}").text
    assert browser.post(f"/admin/users/{ada_id}/delete").status_code == 303
    assert _users(admin) == ["super-admin@example.com"]
    assert browser.get(f"/admin/users/{ada_id}").status_code == 404


def test_only_super_admins_manage_users_and_roles(admin: Admin) -> None:
    for role in ("admin", "operator", "viewer"):
        browser = admin.signed_in(role)
        assert browser.get("/admin/users").status_code == 403, role
        assert browser.get("/admin/roles").status_code == 403, role
        assert (
            browser.post("/admin/users", {"email": "x@example.com", "password": PASSWORD}).status_code == 403
        )
        assert (
            browser.post("/admin/roles", _matrix_form(admin, viewer=["manage-llm-providers"])).status_code
            == 403
        )
    assert "x@example.com" not in _users(admin)
    assert "manage-llm-providers" not in _roles(admin)["viewer"].permissions


def test_the_matrix_shows_every_role_and_permission(admin: Admin) -> None:
    owner = admin.signed_in("super-admin")
    page = owner.get("/admin/roles")
    assert page.status_code == 200
    assert_forms_carry_csrf(owner, page.text)
    assert page.text.count('name="grants"') == 3 * 12, "admin, operator, viewer: one box per permission"
    assert page.text.count("checked disabled") == 12, "super-admin: always everything"
    assert 'value="viewer:view-llm-stats" aria-label="viewer: view-llm-stats" checked' in page.text


def test_a_matrix_change_applies_on_the_next_request(admin: Admin) -> None:
    owner = admin.signed_in("super-admin")
    viewer = admin.signed_in("viewer")
    assert viewer.get("/admin/keys").status_code == 403
    saved = owner.post("/admin/roles", _matrix_form(admin, viewer=["manage-llm-encryption-keys"]))
    assert saved.status_code == 303
    assert viewer.get("/admin/keys").status_code == 200, "no sign-in again needed"
    roles = _roles(admin)
    assert roles["viewer"].permissions == {
        "view-llm-configs",
        "view-llm-stats",
        "view-llm-conversations",
        "manage-llm-encryption-keys",
    }
    assert "manage-llm-providers" in roles["admin"].permissions, "other roles kept what they had"
    unticked = _matrix_form(admin)
    unticked["grants"] = [
        grant for grant in unticked["grants"] if grant != "viewer:manage-llm-encryption-keys"
    ]
    owner.post("/admin/roles", unticked)
    assert viewer.get("/admin/keys").status_code == 403
    assert "role.permissions" in _actions(admin)


def test_an_empty_matrix_post_changes_nothing(admin: Admin) -> None:
    before = _roles(admin)
    owner = admin.signed_in("super-admin")
    assert owner.post("/admin/roles", {}).status_code == 303
    assert {name: role.permissions for name, role in _roles(admin).items()} == {
        name: role.permissions for name, role in before.items()
    }


def test_create_and_delete_a_role(admin: Admin) -> None:
    owner = admin.signed_in("super-admin")
    bad = owner.post("/admin/roles/new", {"name": "Not Valid", "permissions": "view-llm-stats"})
    assert bad.status_code == 422
    assert 'id="e-name"' in bad.text
    assert "Not Valid" not in _roles(admin)
    created = owner.post(
        "/admin/roles/new", {"name": "auditor", "permissions": ["view-llm-stats", "view-llm-configs"]}
    )
    assert created.status_code == 303
    assert _roles(admin)["auditor"].permissions == {"view-llm-stats", "view-llm-configs"}
    page = owner.get("/admin/roles")
    assert 'action="/admin/roles/auditor/delete"' in page.text
    assert 'action="/admin/roles/viewer/delete"' not in page.text
    builtin = owner.post("/admin/roles/viewer/delete")
    assert builtin.status_code == 422
    assert "default role and cannot be deleted" in builtin.text
    assert owner.post("/admin/roles/auditor/delete").status_code == 303
    assert "auditor" not in _roles(admin)
    assert {"role.create", "role.delete"} <= set(_actions(admin))


def test_user_and_role_forms_without_their_csrf_token_are_refused(admin: Admin) -> None:
    owner: Browser = admin.signed_in("super-admin")
    form = {"email": "x@example.com", "password": PASSWORD, "csrf_token": ""}
    assert owner.post("/admin/users", form).status_code == 403
    assert owner.post("/admin/roles", {**_matrix_form(admin), "csrf_token": "forged"}).status_code == 403
    assert "x@example.com" not in _users(admin)
