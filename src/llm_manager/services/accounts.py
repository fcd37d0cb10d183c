"""Users, roles and the twelve permissions that gate the admin UI.

A user holds any number of roles; a role grants a set of permissions. `super-admin` always holds
every permission and is the only role that manages users and roles. Permissions are read from the
database on every request (`SessionService.resolve`), so a change applies to the very next one.

Passwords are hashed with Argon2id (argon2-cffi's defaults: the parameters travel inside the hash,
so raising them later re-hashes each password at its next sign-in).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import utcnow
from llm_manager.db.session import Database
from llm_manager.db.tables import Role, RolePermission, User, UserRole, WebSession
from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError

PERMISSIONS: tuple[str, ...] = (
    "view-llm-configs",
    "create-llm-configs",
    "edit-llm-configs",
    "delete-llm-configs",
    "manage-llm-providers",
    "view-llm-stats",
    "test-llm-configs",
    "manage-llm-encryption-keys",
    "view-llm-conversations",
    "manage-llm-knowledge-base",
    "manage-llm-workflows",
    "manage-llm-tools",
)
SUPER_ADMIN = "super-admin"
DEFAULT_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    SUPER_ADMIN: ("Everything, including users and roles.", PERMISSIONS),
    "admin": ("Every LLM permission; no user or role management.", PERMISSIONS),
    "operator": (
        "Runs configurations day to day: create, edit, test; sees statistics.",
        (
            "view-llm-configs",
            "create-llm-configs",
            "edit-llm-configs",
            "view-llm-stats",
            "test-llm-configs",
            "view-llm-conversations",
            "manage-llm-knowledge-base",
            "manage-llm-workflows",
            "manage-llm-tools",
        ),
    ),
    "viewer": (
        "Reads configurations, statistics and conversations.",
        ("view-llm-configs", "view-llm-stats", "view-llm-conversations"),
    ),
}
MIN_PASSWORD = 10
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}\.[^@\s.]{2,}$")
_ROLE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")


@dataclass(frozen=True, kw_only=True)
class UserView:
    id: int
    email: str
    name: str
    is_active: bool
    roles: tuple[str, ...]
    created_at: datetime
    last_login_at: datetime | None

    @property
    def is_super_admin(self) -> bool:
        return SUPER_ADMIN in self.roles


@dataclass(frozen=True, kw_only=True)
class RoleView:
    id: int
    name: str
    description: str
    is_builtin: bool
    permissions: frozenset[str]
    users: int


class Passwords:
    """Argon2id hashing, run in a worker thread: one hash takes ~0.15 s of CPU, which must not
    stall the event loop that is relaying everybody's streams."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    async def burn(self, password: str) -> None:
        """Spend the time a real check takes, so an unknown email is not told apart by timing."""
        await asyncio.to_thread(lambda: self._verify(self._dummy, password))

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @functools.cached_property
    def _dummy(self) -> str:
        return self._hasher.hash("not a real password")


def check_password(password: str, *, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInputError(f"{field}: at least {MIN_PASSWORD} characters", field=field)
    if len(password) > 256:
        raise InvalidInputError(f"{field}: at most 256 characters", field=field)


def normal_email(email: str) -> str:
    cleaned = email.strip().lower()
    if not _EMAIL.match(cleaned) or len(cleaned) > 254:
        raise InvalidInputError("email: not a valid email address", field="email")
    return cleaned


class AccountService:
    def __init__(self, database: Database, passwords: Passwords) -> None:
        self._database = database
        self.passwords = passwords

    async def create_user(
        self, email: str, password: str, *, name: str = "", roles: Sequence[str] = ("viewer",)
    ) -> UserView:
        address = normal_email(email)
        check_password(password)
        if len(name) > 100:
            raise InvalidInputError("name: at most 100 characters", field="name")
        password_hash = await self.passwords.hash(password)
        try:
            async with self._database.session() as session:
                role_ids = await _role_ids(session, roles)
                user = User(email=address, name=name.strip(), password_hash=password_hash)
                session.add(user)
                await session.flush()
                session.add_all(UserRole(user_id=user.id, role_id=role_id) for role_id in role_ids)
                await session.flush()
                return await _user_view(session, user)
        except IntegrityError:
            raise ConflictError(f"a user with email {address!r} already exists") from None

    async def list_users(self) -> list[UserView]:
        async with self._database.session() as session:
            users = (await session.scalars(select(User).order_by(User.email))).all()
            names = await _role_names(session, [user.id for user in users])
            return [_as_view(user, names.get(user.id, ())) for user in users]

    async def get_user(self, user_id: int) -> UserView:
        async with self._database.session() as session:
            return await _user_view(session, await _user(session, user_id))

    async def user_by_email(self, email: str) -> UserView:
        async with self._database.session() as session:
            user = await session.scalar(select(User).where(User.email == email.strip().lower()))
            if user is None:
                raise NotFoundError(f"no user with email {email!r}")
            return await _user_view(session, user)

    async def update_user(
        self,
        user_id: int,
        *,
        name: str | None = None,
        is_active: bool | None = None,
        roles: Sequence[str] | None = None,
        acting_user_id: int | None = None,
    ) -> UserView:
        """Change a user; deactivating ends their sessions. Nobody removes the last super-admin."""
        async with self._database.session() as session:
            before = await _active_super_admins(session)
            user = await _user(session, user_id)
            if name is not None:
                if len(name) > 100:
                    raise InvalidInputError("name: at most 100 characters", field="name")
                user.name = name.strip()
            if roles is not None:
                await _replace_roles(session, user.id, await _role_ids(session, roles))
            if is_active is not None:
                if not is_active and user_id == acting_user_id:
                    raise InvalidInputError("you cannot deactivate yourself", field="is_active")
                user.is_active = is_active
                if not is_active:
                    await session.execute(delete(WebSession).where(WebSession.user_id == user.id))
            await session.flush()
            await _keep_a_super_admin(session, before)
            return await _user_view(session, user)

    async def delete_user(self, user_id: int, *, acting_user_id: int | None = None) -> UserView:
        if user_id == acting_user_id:
            raise InvalidInputError("you cannot delete yourself", field="user")
        async with self._database.session() as session:
            before = await _active_super_admins(session)
            user = await _user(session, user_id)
            view = await _user_view(session, user)
            await session.delete(user)
            await session.flush()
            await _keep_a_super_admin(session, before)
            return view

    async def set_password(self, user_id: int, password: str, *, keep_session: str | None = None) -> None:
        """Set a new password and end every session of the user except `keep_session` (the caller's)."""
        check_password(password, field="new_password")
        password_hash = await self.passwords.hash(password)
        async with self._database.session() as session:
            user = await _user(session, user_id)
            user.password_hash = password_hash
            user.password_changed_at = utcnow()
            ending = delete(WebSession).where(WebSession.user_id == user_id)
            if keep_session is not None:
                ending = ending.where(WebSession.id != keep_session)
            await session.execute(ending)

    async def change_password(self, user_id: int, current: str, new: str, *, keep_session: str) -> None:
        async with self._database.session() as session:
            user = await _user(session, user_id)
        if not await self.passwords.verify(user.password_hash, current):
            raise InvalidInputError(
                "current_password: this is not your current password", field="current_password"
            )
        await self.set_password(user_id, new, keep_session=keep_session)

    async def list_roles(self) -> list[RoleView]:
        async with self._database.session() as session:
            roles = (await session.scalars(select(Role).order_by(Role.id))).all()
            granted = await _permissions_by_role(session)
            counts = dict(
                (
                    await session.execute(select(UserRole.role_id, func.count()).group_by(UserRole.role_id))
                ).all()
            )
            return [
                _role_view(role, granted.get(role.id, frozenset()), counts.get(role.id, 0)) for role in roles
            ]

    async def create_role(
        self, name: str, *, description: str = "", permissions: Iterable[str] = ()
    ) -> RoleView:
        if not _ROLE_NAME.match(name):
            raise InvalidInputError("name: 1-50 lower-case letters, digits or '-'", field="name")
        chosen = _known_permissions(permissions)
        try:
            async with self._database.session() as session:
                role = Role(name=name, description=description.strip())
                session.add(role)
                await session.flush()
                session.add_all(RolePermission(role_id=role.id, permission=granted) for granted in chosen)
                return _role_view(role, chosen, 0)
        except IntegrityError:
            raise ConflictError(f"role {name!r} already exists") from None

    async def set_permissions(self, grants: dict[str, Iterable[str]]) -> list[RoleView]:
        """Replace the permissions of the named roles (the matrix page saves every row at once)."""
        async with self._database.session() as session:
            for role_name, permissions in grants.items():
                role = await _role(session, role_name)
                if role.name == SUPER_ADMIN:
                    continue  # always everything, whatever the form said
                await session.execute(delete(RolePermission).where(RolePermission.role_id == role.id))
                session.add_all(
                    RolePermission(role_id=role.id, permission=name)
                    for name in _known_permissions(permissions)
                )
        return await self.list_roles()

    async def delete_role(self, name: str) -> None:
        async with self._database.session() as session:
            role = await _role(session, name)
            if role.is_builtin:
                raise InvalidInputError(
                    f"role {name!r} is a default role and cannot be deleted", field="role"
                )
            await session.delete(role)


async def ensure_default_roles(database: Database) -> None:
    """Create the default roles that are missing (a fresh database, or one a user emptied)."""
    async with database.session() as session:
        existing = set((await session.scalars(select(Role.name))).all())
        for name, (description, permissions) in DEFAULT_ROLES.items():
            if name in existing:
                continue
            role = Role(name=name, description=description, is_builtin=True)
            session.add(role)
            await session.flush()
            session.add_all(
                RolePermission(role_id=role.id, permission=permission) for permission in permissions
            )


def _known_permissions(permissions: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(permissions)
    unknown = sorted(chosen - set(PERMISSIONS))
    if unknown:
        raise InvalidInputError(f"permissions: unknown {', '.join(unknown)}", field="permissions")
    return chosen


async def _user(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"user {user_id} not found")
    return user


async def _role(session: AsyncSession, name: str) -> Role:
    role = await session.scalar(select(Role).where(Role.name == name))
    if role is None:
        raise NotFoundError(f"role {name!r} not found")
    return role


async def _role_ids(session: AsyncSession, names: Sequence[str]) -> list[int]:
    found = dict((await session.execute(select(Role.name, Role.id).where(Role.name.in_(names)))).all())
    missing = sorted(set(names) - set(found))
    if missing:
        raise InvalidInputError(f"roles: unknown {', '.join(missing)}", field="roles")
    return [found[name] for name in dict.fromkeys(names)]


async def _replace_roles(session: AsyncSession, user_id: int, role_ids: Sequence[int]) -> None:
    await session.execute(delete(UserRole).where(UserRole.user_id == user_id))
    session.add_all(UserRole(user_id=user_id, role_id=role_id) for role_id in role_ids)


async def _active_super_admins(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(User)
        .join(UserRole, UserRole.user_id == User.id)
        .join(Role, Role.id == UserRole.role_id)
        .where(Role.name == SUPER_ADMIN, User.is_active.is_(True))
    )
    return int(count or 0)


async def _keep_a_super_admin(session: AsyncSession, before: int) -> None:
    """Refuse a change that removes the last active super-admin: nobody could manage users any more."""
    if before and not await _active_super_admins(session):
        raise PermissionDeniedError("this would leave no active super-admin")


async def _role_names(session: AsyncSession, user_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    rows = await session.execute(
        select(UserRole.user_id, Role.name)
        .join(Role, Role.id == UserRole.role_id)
        .where(UserRole.user_id.in_(user_ids))
        .order_by(Role.id)
    )
    names: dict[int, tuple[str, ...]] = {}
    for user_id, name in rows:
        names[user_id] = (*names.get(user_id, ()), name)
    return names


async def _permissions_by_role(session: AsyncSession) -> dict[int, frozenset[str]]:
    granted: dict[int, set[str]] = {}
    for role_id, permission in await session.execute(
        select(RolePermission.role_id, RolePermission.permission)
    ):
        granted.setdefault(role_id, set()).add(permission)
    return {role_id: frozenset(names) for role_id, names in granted.items()}


async def _user_view(session: AsyncSession, user: User) -> UserView:
    return _as_view(user, (await _role_names(session, [user.id])).get(user.id, ()))


def _as_view(user: User, roles: tuple[str, ...]) -> UserView:
    return UserView(
        id=user.id,
        email=user.email,
        name=user.name,
        is_active=user.is_active,
        roles=roles,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def _role_view(role: Role, permissions: frozenset[str], users: int) -> RoleView:
    if role.name == SUPER_ADMIN:
        permissions = frozenset(PERMISSIONS)
    return RoleView(
        id=role.id,
        name=role.name,
        description=role.description,
        is_builtin=role.is_builtin,
        permissions=permissions,
        users=users,
    )
