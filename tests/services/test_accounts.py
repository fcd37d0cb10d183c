"""Users, roles and permissions; sessions; sign-in throttling — through the services."""

from __future__ import annotations

import pytest

from llm_manager.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    SignInThrottledError,
    UnauthenticatedError,
)
from llm_manager.manager import LLMManager
from llm_manager.services.accounts import PERMISSIONS
from llm_manager.services.web_sessions import ACCOUNT_FAILURES

PASSWORD = "a long enough password"


async def test_default_roles_exist_with_their_permissions(llm: LLMManager) -> None:
    roles = {role.name: role for role in await llm.services.accounts.list_roles()}
    assert set(roles) == {"super-admin", "admin", "operator", "viewer"}
    assert roles["super-admin"].permissions == frozenset(PERMISSIONS)
    assert len(PERMISSIONS) == 12
    assert "delete-llm-configs" not in roles["operator"].permissions
    assert roles["viewer"].permissions == {"view-llm-configs", "view-llm-stats", "view-llm-conversations"}


async def test_user_input_is_checked_by_field(llm: LLMManager) -> None:
    accounts = llm.services.accounts
    with pytest.raises(InvalidInputError) as bad_email:
        await accounts.create_user("not-an-email", PASSWORD)
    assert bad_email.value.field == "email"
    with pytest.raises(InvalidInputError) as short:
        await accounts.create_user("ada@example.com", "short")
    assert short.value.field == "password"
    with pytest.raises(InvalidInputError) as role:
        await accounts.create_user("ada@example.com", PASSWORD, roles=["wizard"])
    assert role.value.field == "roles"
    assert await accounts.list_users() == []  # nothing half-written


async def test_emails_are_unique_whatever_the_case(llm: LLMManager) -> None:
    await llm.services.accounts.create_user("Ada@Example.com", PASSWORD)
    with pytest.raises(ConflictError):
        await llm.services.accounts.create_user("ada@example.COM", PASSWORD)


async def test_the_last_super_admin_cannot_be_removed(llm: LLMManager) -> None:
    accounts = llm.services.accounts
    owner = await accounts.create_user("owner@example.com", PASSWORD, roles=["super-admin"])
    with pytest.raises(PermissionDeniedError):
        await accounts.update_user(owner.id, roles=["admin"])
    with pytest.raises(PermissionDeniedError):
        await accounts.delete_user(owner.id)
    with pytest.raises(InvalidInputError):
        await accounts.update_user(owner.id, is_active=False, acting_user_id=owner.id)
    second = await accounts.create_user("second@example.com", PASSWORD, roles=["super-admin"])
    await accounts.update_user(owner.id, roles=["admin"])  # another super-admin remains
    assert (await accounts.get_user(second.id)).is_super_admin


async def test_role_matrix_changes_apply_to_resolved_sessions(llm: LLMManager) -> None:
    await llm.services.accounts.create_user("ada@example.com", PASSWORD, roles=["viewer"])
    signed_in = await llm.services.sessions.sign_in("ada@example.com", PASSWORD, address="10.0.0.1")
    assert not signed_in.user.may("manage-llm-encryption-keys")
    await llm.services.accounts.set_permissions({"viewer": ["view-llm-stats", "manage-llm-encryption-keys"]})
    user = await llm.services.sessions.resolve(signed_in.cookie)
    assert user.permissions == {"view-llm-stats", "manage-llm-encryption-keys"}
    await llm.services.accounts.set_permissions({"super-admin": []})  # ignored: always everything
    roles = {role.name: role for role in await llm.services.accounts.list_roles()}
    assert roles["super-admin"].permissions == frozenset(PERMISSIONS)


async def test_custom_roles_can_be_deleted_default_ones_cannot(llm: LLMManager) -> None:
    accounts = llm.services.accounts
    await accounts.create_role("auditor", permissions=["view-llm-stats"])
    with pytest.raises(InvalidInputError):
        await accounts.create_role("Bad Name")
    with pytest.raises(InvalidInputError):
        await accounts.create_role("x", permissions=["fly"])
    with pytest.raises(InvalidInputError):
        await accounts.delete_role("viewer")
    await accounts.delete_role("auditor")
    with pytest.raises(NotFoundError):
        await accounts.delete_role("auditor")


async def test_sessions_store_only_a_hash_and_end_on_password_change(llm: LLMManager) -> None:
    user = await llm.services.accounts.create_user("ada@example.com", PASSWORD)
    first = await llm.services.sessions.sign_in("ada@example.com", PASSWORD, address="a")
    second = await llm.services.sessions.sign_in("ada@example.com", PASSWORD, address="b")
    stored = {view.id for view in await llm.services.sessions.list_for(user.id)}
    assert first.cookie not in stored
    assert len(stored) == 2
    await llm.services.accounts.set_password(
        user.id, "another long password", keep_session=first.user.session_id
    )
    assert (await llm.services.sessions.resolve(first.cookie)).user_id == user.id
    with pytest.raises(UnauthenticatedError):
        await llm.services.sessions.resolve(second.cookie)


async def test_throttling_is_per_account_and_per_address_and_clears_on_success(llm: LLMManager) -> None:
    sessions = llm.services.sessions
    await llm.services.accounts.create_user("ada@example.com", PASSWORD)
    for _ in range(ACCOUNT_FAILURES - 1):
        with pytest.raises(UnauthenticatedError):
            await sessions.sign_in("ada@example.com", "wrong password", address="10.0.0.1")
    await sessions.sign_in("ada@example.com", PASSWORD, address="10.0.0.1")  # clears the count
    for _ in range(ACCOUNT_FAILURES):
        with pytest.raises(UnauthenticatedError):
            await sessions.sign_in("ada@example.com", "wrong password", address="10.0.0.2")
    with pytest.raises(SignInThrottledError) as refused:
        await sessions.sign_in("ada@example.com", PASSWORD, address="10.0.0.3")
    assert refused.value.retry_after is not None
    assert 0 < refused.value.retry_after <= 15 * 60
