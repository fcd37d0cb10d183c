"""The JSON shapes of `/api/conversations` and `/api/templates`, in the conventions of `schemas`.

Money is an exact decimal string, times are UTC, lists are `{"data": [...]}` with a `next_cursor`
where they grow without bound. A conversation's `user` is the application's own id for the person
chatting (as in OpenAI's `user` field); `account_id` is set instead for a conversation of an admin
UI account.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, Field

from llm_manager.server.api.schemas import Public, Request, Usd

ContextStrategy = Literal["truncate", "summarize"]

# --- conversations ------------------------------------------------------------------------------


class ConversationCreate(Request):
    configuration: Annotated[str, Field(min_length=1, max_length=64)]
    """A configuration slug this token may call."""
    title: Annotated[str, Field(max_length=200)] | None = None
    """Left out: the first message names the conversation."""
    system_prompt: str | None = None
    context_strategy: ContextStrategy = "truncate"
    """When the history outgrows the model's window: drop the oldest turns, or summarise them."""
    params: dict[str, Any] = Field(default_factory=dict, description="temperature, max_tokens, ...")
    user: Annotated[str, Field(max_length=100)] | None = None
    """The application's own id for the person chatting (filter on it with `?user=`)."""


class ConversationUpdate(Request):
    """Only the fields sent change; an empty `system_prompt` removes it."""

    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    system_prompt: str | None = None
    context_strategy: ContextStrategy | None = None


class ConversationPublic(Public):
    id: str
    title: str
    configuration: str
    system_prompt: str | None
    context_strategy: str
    params: dict[str, Any]
    application_id: int | None
    user: str | None = Field(validation_alias=AliasChoices("user", "external_user"))
    account_id: int | None = Field(validation_alias=AliasChoices("account_id", "user_id"))
    summary: str | None
    """What the `summarize` strategy made of the earlier turns, if it has had to."""
    message_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Usd
    """USD of the priced replies; `unpriced_replies` are not in it."""
    unpriced_replies: int
    created_at: datetime
    updated_at: datetime


class ConversationPage(BaseModel):
    data: list[ConversationPublic]
    next_cursor: str | None
    """Pass as `cursor` for the next (less recently active) page; null on the last one."""


class MessagePublic(Public):
    id: str
    conversation_id: str
    seq: int
    """The message's position in its conversation, from 1."""
    role: str
    content: str
    status: Literal["complete", "interrupted", "error"]
    """`interrupted`: stopped mid-reply, the partial text kept (and billed)."""
    pinned: bool
    tokens: int
    prompt_tokens: int
    completion_tokens: int
    cost: Usd | None
    log_id: str | None = Field(validation_alias=AliasChoices("log_id", "usage_log_id"))
    """The usage row of the call that produced a reply."""
    model: str | None
    latency_ms: int | None
    error_message: str | None
    context: dict[str, Any] | None
    """For a reply: what was sent, and what the context window dropped or summarised."""
    tool_calls: list[dict[str, Any]] | None
    created_at: datetime


class MessagePage(BaseModel):
    data: list[MessagePublic]
    next_cursor: str | None
    """Pass as `after` for the next page (messages come oldest first); null at the end."""


class MessageCreate(Request):
    content: Annotated[str, Field(min_length=1)]
    stream: bool = False
    """True: the answer is the native event stream (`chunk` events, then `done` or `error`)."""
    params: dict[str, Any] = Field(
        default_factory=dict, description="For this message only: temperature, max_tokens, ..."
    )


class ReplyUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ReplyPublic(BaseModel):
    """A whole (non-streamed) reply: both stored messages, and what the call used and cost."""

    message: MessagePublic
    reply: MessagePublic
    usage: ReplyUsage
    cost: Usd | None
    log_id: str | None


class CancelledPublic(BaseModel):
    id: str
    cancelled: bool


# --- prompt templates ---------------------------------------------------------------------------


class TemplateVersionCreate(Request):
    """A new version: saving never changes an existing one."""

    user: Annotated[str, Field(min_length=1)]
    """The user message, a Jinja2 template over the declared variables."""
    system: str | None = None
    variables: list[dict[str, Any]] = Field(
        default_factory=list,
        description='Declarations: {"name", "type" (string, integer, number, boolean, list, object), '
        '"default", "required", "description"}.',
    )
    configuration: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """The default configuration for calls that name none."""
    params: dict[str, Any] = Field(default_factory=dict, description="Default generation parameters.")
    note: Annotated[str, Field(max_length=500)] = ""
    """What changed in this version."""
    description: str | None = None
    """The template's description (changes it for every version)."""


class TemplateCreate(TemplateVersionCreate):
    name: Annotated[str, Field(min_length=1, max_length=100)]


class TemplatePublic(Public):
    id: int
    name: str
    description: str
    latest_version: int
    labels: dict[str, int]
    """Label → version, `latest` included."""
    created_at: datetime
    updated_at: datetime


class VariablePublic(Public):
    name: str
    type: str
    default: Any
    required: bool
    description: str


class TemplateVersionPublic(Public):
    name: str
    version: int
    system: str | None
    user: str
    variables: list[VariablePublic]
    configuration: str | None
    params: dict[str, Any]
    note: str
    created_by: str | None
    created_at: datetime
    labels: list[str]
    """The labels pointing at this version, `latest` included when it is the newest."""


class LabelAssign(Request):
    version: Annotated[int, Field(ge=1)]


class RenderRequest(Request):
    version_or_label: int | Annotated[str, Field(min_length=1, max_length=50)] | None = None
    """A version number or a label; left out: the `production` label if set, else the newest version."""
    variables: dict[str, Any] = Field(default_factory=dict)


class RenderedPublic(Public):
    """The rendered prompt, as a call would send it (no model is called)."""

    name: str
    version: int
    system: str | None
    user: str
    variables: dict[str, Any]
    """Every declared variable's value, defaults included."""
    configuration: str | None
    params: dict[str, Any]


class VersionStatsPublic(Public):
    version: int
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost: Usd
    avg_cost: Usd | None
    avg_latency_ms: float | None
