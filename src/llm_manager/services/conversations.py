"""Conversations: who owns them, who may read them, listing, search, export.

A conversation belongs to a user (admin UI, CLI) or to an application (API, with the end user's
id the application supplies). Whoever may not read one gets "not found", never "forbidden", so
ids cannot be probed. Replies — the part that calls a model — are in `conversation_replies.py`.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import orjson
from sqlalchemy import Select, delete, exists, false, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from llm_manager.db.base import new_id, utcnow
from llm_manager.db.session import Database
from llm_manager.db.tables import Conversation, ConversationMessage
from llm_manager.errors import InvalidInputError, NotFoundError
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.configurations import ConfigurationService

ContextStrategy = Literal["truncate", "summarize"]
CONTEXT_STRATEGIES: tuple[str, ...] = ("truncate", "summarize")
MessageStatus = Literal["complete", "interrupted", "error"]
TITLE_LENGTH = 200
_AUTO_TITLE_LENGTH = 60
_SYSTEM_PROMPT_LENGTH = 50_000
MAX_PAGE = 200


@dataclass(frozen=True, kw_only=True)
class ConversationOwner:
    """A user, or an application with the end user's own id (optional), or neither.

    Neither is a conversation of the library or the CLI, run by whoever holds the database: only
    they and holders of `view-llm-conversations` see it.
    """

    user_id: int | None = None
    application_id: int | None = None
    external_user: str | None = None

    def __post_init__(self) -> None:
        if self.user_id is not None and self.application_id is not None:
            raise ValueError("a conversation belongs to a user or to an application, not both")


@dataclass(frozen=True, kw_only=True)
class Viewer:
    """Who is asking. Reading: the owner, or anyone with `reads_all` — a holder of
    `view-llm-conversations`, or an admin token — who reads every conversation. Changing and
    sending: the owner only."""

    user_id: int | None = None
    application_id: int | None = None
    reads_all: bool = False
    trusted: bool = False
    """The library and the CLI, run by whoever holds the database: everything."""

    @classmethod
    def system(cls) -> Viewer:
        return cls(trusted=True)

    def may_read(self, row: Conversation) -> bool:
        return self.trusted or self.reads_all or self._owns(row)

    def may_change(self, row: Conversation) -> bool:
        return self.trusted or self._owns(row)

    def _owns(self, row: Conversation) -> bool:
        if row.user_id is not None:
            return row.user_id == self.user_id
        return row.application_id is not None and row.application_id == self.application_id

    def scope(self, query: Select[Any]) -> Select[Any]:
        if self.trusted or self.reads_all:
            return query
        if self.user_id is not None:
            return query.where(Conversation.user_id == self.user_id)
        if self.application_id is not None:
            return query.where(Conversation.application_id == self.application_id)
        return query.where(false())


@dataclass(frozen=True, kw_only=True)
class ConversationView:
    id: str
    title: str
    configuration: str
    configuration_id: int | None
    system_prompt: str | None
    context_strategy: str
    params: dict[str, Any]
    user_id: int | None
    application_id: int | None
    external_user: str | None
    summary: str | None
    summary_through: int
    message_count: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    unpriced_replies: int
    created_at: datetime
    updated_at: datetime

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, kw_only=True)
class MessageView:
    id: str
    conversation_id: str
    seq: int
    role: str
    content: str
    status: str
    pinned: bool
    tokens: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal | None
    usage_log_id: str | None
    model: str | None
    latency_ms: int | None
    error_message: str | None
    context: dict[str, Any] | None
    tool_calls: list[dict[str, Any]] | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class ConversationFilter:
    search: str | None = None
    """Words in the title or in any message."""
    configuration: str | None = None
    user_id: int | None = None
    application_id: int | None = None
    external_user: str | None = None


@dataclass(frozen=True, kw_only=True)
class ConversationPage:
    items: list[ConversationView]
    next_cursor: str | None


@dataclass(frozen=True, kw_only=True)
class MessagePage:
    items: list[MessageView]
    next_cursor: str | None
    """The `after` for the next page (messages are oldest first), None at the end."""


@dataclass(frozen=True, kw_only=True)
class ConversationChanges:
    """Fields to change; None leaves a field as it is (an empty system prompt removes it)."""

    title: str | None = None
    system_prompt: str | None = None
    context_strategy: str | None = None


class ConversationService:
    def __init__(self, database: Database, configurations: ConfigurationService) -> None:
        self._database = database
        self._configurations = configurations

    async def create(
        self,
        owner: ConversationOwner,
        configuration: str | None,
        *,
        title: str | None = None,
        system_prompt: str | None = None,
        context_strategy: str = "truncate",
        params: dict[str, Any] | None = None,
    ) -> ConversationView:
        """Start a conversation on a configuration the owner may use (None: the default one)."""
        resolved = (
            await self._configurations.resolve_chain(configuration, application_id=owner.application_id)
        )[0]
        checked = parse_params(dict(params or {}), field_prefix="params")
        now = utcnow()
        row = Conversation(
            id=new_id(),
            user_id=owner.user_id,
            application_id=owner.application_id,
            external_user=_external_user(owner.external_user),
            configuration_id=resolved.id,
            configuration_slug=resolved.slug,
            title=_title(title or ""),
            system_prompt=_system_prompt(system_prompt),
            params=checked.as_dict(),
            context_strategy=_strategy(context_strategy),
            summary=None,
            summary_through=0,
            message_count=0,
            prompt_tokens=0,
            completion_tokens=0,
            cost=Decimal(0),
            unpriced_replies=0,
            created_at=now,
            updated_at=now,
        )
        async with self._database.session() as session:
            session.add(row)
        return _view(row)

    async def get(self, conversation_id: str, viewer: Viewer) -> ConversationView:
        async with self._database.session() as session:
            return _view(await readable(session, conversation_id, viewer))

    async def page(
        self,
        viewer: Viewer,
        filters: ConversationFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = 50,
    ) -> ConversationPage:
        """Most recently active first, keyset-paginated on (updated_at, id)."""
        limit = _limit(limit)
        query = viewer.scope(select(Conversation))
        query = _filtered(query, filters or ConversationFilter())
        if cursor:
            query = query.where(tuple_(Conversation.updated_at, Conversation.id) < _decode_cursor(cursor))
        query = query.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1)
        async with self._database.session() as session:
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]) if more and rows else None
        return ConversationPage(items=[_view(row) for row in rows], next_cursor=next_cursor)

    async def latest(self, viewer: Viewer, *, configuration: str | None = None) -> ConversationView | None:
        """The conversation last active (on `configuration`, if given): what `chat -c` continues."""
        page = await self.page(viewer, ConversationFilter(configuration=configuration), limit=1)
        return page.items[0] if page.items else None

    async def messages(
        self, conversation_id: str, viewer: Viewer, *, after: int = 0, limit: int = 100
    ) -> MessagePage:
        """Oldest first from `after` (a `seq`): a long chat is read in pages, never loaded whole."""
        limit = _limit(limit)
        async with self._database.session() as session:
            await readable(session, conversation_id, viewer)
            query = (
                select(ConversationMessage)
                .where(
                    ConversationMessage.conversation_id == conversation_id, ConversationMessage.seq > after
                )
                .order_by(ConversationMessage.seq)
                .limit(limit + 1)
            )
            rows = list((await session.scalars(query)).all())
        more = len(rows) > limit
        rows = rows[:limit]
        return MessagePage(
            items=[message_view(row) for row in rows],
            next_cursor=str(rows[-1].seq) if more and rows else None,
        )

    async def last_messages(
        self, conversation_id: str, viewer: Viewer, *, limit: int = 50
    ) -> list[MessageView]:
        """The newest `limit` messages, oldest first (what a chat page opens on)."""
        async with self._database.session() as session:
            await readable(session, conversation_id, viewer)
            query = (
                select(ConversationMessage)
                .where(ConversationMessage.conversation_id == conversation_id)
                .order_by(ConversationMessage.seq.desc())
                .limit(_limit(limit))
            )
            rows = list((await session.scalars(query)).all())
        return [message_view(row) for row in reversed(rows)]

    async def update(
        self, conversation_id: str, viewer: Viewer, changes: ConversationChanges
    ) -> ConversationView:
        values: dict[str, Any] = {}
        if changes.title is not None:
            values["title"] = _title(changes.title)
        if changes.system_prompt is not None:
            values["system_prompt"] = _system_prompt(changes.system_prompt)
        if changes.context_strategy is not None:
            values["context_strategy"] = _strategy(changes.context_strategy)
        async with self._database.session() as session:
            row = await changeable(session, conversation_id, viewer)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            await session.flush()
            return _view(row)

    async def rename(self, conversation_id: str, viewer: Viewer, title: str) -> ConversationView:
        if not title.strip():
            raise InvalidInputError("title must not be empty", field="title")
        return await self.update(conversation_id, viewer, ConversationChanges(title=title))

    async def pin(
        self, conversation_id: str, viewer: Viewer, message_id: str, *, pinned: bool = True
    ) -> MessageView:
        """A pinned message is always sent, whatever the context window drops."""
        async with self._database.session() as session:
            await changeable(session, conversation_id, viewer)
            message = await session.get(ConversationMessage, message_id)
            if message is None or message.conversation_id != conversation_id:
                raise NotFoundError(f"message {message_id!r} not found in this conversation")
            message.pinned = pinned
            await session.flush()
            return message_view(message)

    async def delete(self, conversation_id: str, viewer: Viewer) -> None:
        async with self._database.session() as session:
            await changeable(session, conversation_id, viewer)
            await session.execute(
                delete(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id)
            )
            await session.execute(delete(Conversation).where(Conversation.id == conversation_id))

    async def export_json(self, conversation_id: str, viewer: Viewer) -> dict[str, Any]:
        conversation, messages = await self._everything(conversation_id, viewer)
        return {
            "conversation": _jsonable(conversation.__dict__),
            "messages": [_jsonable(message.__dict__) for message in messages],
        }

    async def export_markdown(self, conversation_id: str, viewer: Viewer) -> str:
        conversation, messages = await self._everything(conversation_id, viewer)
        return render_markdown(conversation, messages)

    async def _everything(
        self, conversation_id: str, viewer: Viewer
    ) -> tuple[ConversationView, list[MessageView]]:
        async with self._database.session() as session:
            row = await readable(session, conversation_id, viewer)
            query = (
                select(ConversationMessage)
                .where(ConversationMessage.conversation_id == conversation_id)
                .order_by(ConversationMessage.seq)
            )
            messages = [message_view(message) for message in (await session.scalars(query)).all()]
            return _view(row), messages


def reply_key(conversation_id: str) -> str:
    """What the stream board knows a conversation's running reply by, in every process.

    Stop cancels this key; only `running()` is used with it, never `is_cancelled()`: a cancel
    flag outlives the reply it stopped, and must not refuse the conversation's next one.
    """
    return f"conversation:{conversation_id}"


async def readable(session: AsyncSession, conversation_id: str, viewer: Viewer) -> Conversation:
    row = await session.get(Conversation, conversation_id)
    if row is None or not viewer.may_read(row):
        raise NotFoundError(f"conversation {conversation_id!r} not found")
    return row


async def changeable(session: AsyncSession, conversation_id: str, viewer: Viewer) -> Conversation:
    """Only the owner changes a conversation; readers who are not the owner learn nothing more."""
    row = await session.get(Conversation, conversation_id)
    if row is None or not viewer.may_change(row):
        raise NotFoundError(f"conversation {conversation_id!r} not found")
    return row


async def add_totals(
    session: AsyncSession,
    conversation_id: str,
    *,
    messages: int,
    prompt_tokens: int,
    completion_tokens: int,
    cost: Decimal | None,
) -> int:
    """Count new messages and their spending in one atomic UPDATE; returns the last `seq` handed out.

    Concurrent replies in one conversation each get their own `seq`s this way, on SQLite and
    PostgreSQL alike (UPDATE ... RETURNING).
    """
    statement = (
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(
            message_count=Conversation.message_count + messages,
            prompt_tokens=Conversation.prompt_tokens + prompt_tokens,
            completion_tokens=Conversation.completion_tokens + completion_tokens,
            cost=Conversation.cost + (cost or Decimal(0)),
            unpriced_replies=Conversation.unpriced_replies + (1 if cost is None and messages else 0),
            updated_at=utcnow(),
        )
        .returning(Conversation.message_count)
    )
    last = (await session.execute(statement)).scalar_one_or_none()
    if last is None:
        raise NotFoundError(f"conversation {conversation_id!r} was deleted meanwhile")
    return int(last)


def render_markdown(conversation: ConversationView, messages: Sequence[MessageView]) -> str:
    lines = [f"# {conversation.title or 'Conversation'}", ""]
    lines.append(
        f"- Configuration: `{conversation.configuration}`\n- Started: {conversation.created_at.isoformat()}"
        f"\n- Tokens: {conversation.total_tokens}\n- Cost: ${conversation.cost:.6f}"
    )
    if conversation.system_prompt:
        lines += ["", "## System", "", conversation.system_prompt]
    for message in messages:
        heading = message.role.capitalize()
        if message.status != "complete":
            heading += f" ({message.status})"
        if message.pinned:
            heading += " 📌"
        lines += ["", f"## {heading}", "", message.content or "_(no text)_"]
        if message.error_message:
            lines += ["", f"> Error: {message.error_message}"]
    return "\n".join(lines) + "\n"


def message_view(row: ConversationMessage) -> MessageView:
    return MessageView(
        id=row.id,
        conversation_id=row.conversation_id,
        seq=row.seq,
        role=row.role,
        content=row.content,
        status=row.status,
        pinned=row.pinned,
        tokens=row.tokens,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost=row.cost,
        usage_log_id=row.usage_log_id,
        model=row.model,
        latency_ms=row.latency_ms,
        error_message=row.error_message,
        context=row.context,
        tool_calls=row.tool_calls,
        created_at=row.created_at,
    )


def _view(row: Conversation) -> ConversationView:
    return ConversationView(
        id=row.id,
        title=row.title,
        configuration=row.configuration_slug,
        configuration_id=row.configuration_id,
        system_prompt=row.system_prompt,
        context_strategy=row.context_strategy,
        params=dict(row.params or {}),
        user_id=row.user_id,
        application_id=row.application_id,
        external_user=row.external_user,
        summary=row.summary,
        summary_through=row.summary_through,
        message_count=row.message_count,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cost=row.cost,
        unpriced_replies=row.unpriced_replies,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _filtered(query: Select[Any], filters: ConversationFilter) -> Select[Any]:
    if filters.configuration:
        query = query.where(Conversation.configuration_slug == filters.configuration)
    if filters.user_id is not None:
        query = query.where(Conversation.user_id == filters.user_id)
    if filters.application_id is not None:
        query = query.where(Conversation.application_id == filters.application_id)
    if filters.external_user:
        query = query.where(Conversation.external_user == filters.external_user)
    if filters.search and filters.search.strip():
        words = filters.search.strip()[:200]
        in_messages = exists().where(
            ConversationMessage.conversation_id == Conversation.id,
            ConversationMessage.content.ilike(f"%{_escape_like(words)}%", escape="\\"),
        )
        query = query.where(
            or_(Conversation.title.ilike(f"%{_escape_like(words)}%", escape="\\"), in_messages)
        )
    return query


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _encode_cursor(row: Conversation) -> str:
    return base64.urlsafe_b64encode(f"{row.updated_at.isoformat()}|{row.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        moment, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        parsed = datetime.fromisoformat(moment)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError("cursor is not one this list gave out", field="cursor") from None
    if parsed.tzinfo is None:
        raise InvalidInputError("cursor is not one this list gave out", field="cursor")
    return parsed, row_id


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInputError(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    return limit


def _title(title: str) -> str:
    title = " ".join(title.split())
    if len(title) > TITLE_LENGTH:
        raise InvalidInputError(f"title must be at most {TITLE_LENGTH} characters", field="title")
    return title


def auto_title(first_message: str) -> str:
    """A title from the first message, cut at a word: no model call just to name a chat."""
    words = " ".join(first_message.split())
    if len(words) <= _AUTO_TITLE_LENGTH:
        return words
    cut = words[:_AUTO_TITLE_LENGTH].rsplit(" ", 1)[0]
    return f"{cut}…"


def _system_prompt(prompt: str | None) -> str | None:
    if prompt is None or not prompt.strip():
        return None
    if len(prompt) > _SYSTEM_PROMPT_LENGTH:
        raise InvalidInputError(
            f"system_prompt must be at most {_SYSTEM_PROMPT_LENGTH} characters", field="system_prompt"
        )
    return prompt


def _strategy(strategy: str) -> str:
    if strategy not in CONTEXT_STRATEGIES:
        raise InvalidInputError(
            "context_strategy must be 'truncate' or 'summarize'", field="context_strategy"
        )
    return strategy


def _external_user(user: str | None) -> str | None:
    if user is not None and len(user) > 100:
        raise InvalidInputError("user must be at most 100 characters", field="user")
    return user or None


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return dict(orjson.loads(orjson.dumps(values, default=str)))
