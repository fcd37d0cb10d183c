"""Conversations in the admin UI: the list, a new one, the chat view and what can be done to one.

Who sees what is the conversation service's rule, asked on every request: a user reads their own
conversations, a holder of `view-llm-conversations` reads everyone's (read-only: only the owner
sends, renames, pins or deletes — anyone else is told "not found"). Chatting spends money, so it
needs `test-llm-configs`, the console's permission. Sending itself (plain and streamed, and Stop)
is in `conversation_chat.py`.

Assistant replies are shown as markdown rendered here, on the server, by `_markdown.py` (inert:
no raw HTML, no `javascript:` links); the user's own messages are shown as the text they typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from llm_manager.errors import InvalidInputError, NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.server.admin import conversation_chat
from llm_manager.server.admin._conversations import (
    BASE,
    CHAT_PERMISSION,
    READ_ALL_PERMISSION,
    Chatter,
    Reader,
    message_context,
    owner,
    reader,
    render_exchange,
)
from llm_manager.server.admin._pages import PageRenderer, Pages, field_errors, redirect
from llm_manager.server.admin._session import actor
from llm_manager.server.deps import Manager
from llm_manager.services.conversation_replies import MAX_MESSAGE_CHARS
from llm_manager.services.conversations import (
    ConversationFilter,
    ConversationOwner,
    ConversationPage,
    ConversationView,
    MessageView,
)
from llm_manager.services.web_sessions import SessionUser

PAGE_SIZE = 25
MESSAGES_PER_PAGE = 50
_Text = Annotated[str, Query(max_length=200)]

router = APIRouter()
router.include_router(conversation_chat.router)


@dataclass(frozen=True, kw_only=True)
class ListQuery:
    """The list's filters as typed, echoed back into the form and into the pages' links."""

    q: str = ""
    configuration: str = ""
    owner: str = ""
    """`me`, `user:<id>` or `application:<id>` (for readers of everyone's conversations)."""

    def filters(self, user: SessionUser) -> ConversationFilter:
        user_id: int | None = None
        application_id: int | None = None
        if self.owner == "me":
            user_id = user.user_id
        elif self.owner.startswith(("user:", "application:")):
            kind, _, number = self.owner.partition(":")
            if not number.isdigit():
                raise InvalidInputError("owner: choose an owner from the list", field="owner")
            user_id, application_id = (int(number), None) if kind == "user" else (None, int(number))
        elif self.owner:
            raise InvalidInputError("owner: choose an owner from the list", field="owner")
        return ConversationFilter(
            search=self.q or None,
            configuration=self.configuration or None,
            user_id=user_id,
            application_id=application_id,
        )

    def url(self, **extra: str) -> str:
        fields = {"q": self.q, "configuration": self.configuration, "owner": self.owner, **extra}
        query = urlencode({key: value for key, value in fields.items() if value})
        return f"{BASE}?{query}" if query else BASE

    @property
    def active(self) -> bool:
        return bool(self.q or self.configuration or self.owner)


# --- the list -------------------------------------------------------------------------------------


@router.get(BASE)
async def list_conversations(
    request: Request,
    user: Reader,
    llm: Manager,
    pages: PageRenderer,
    q: _Text = "",
    configuration: _Text = "",
    owner_filter: Annotated[str, Query(alias="owner", max_length=40)] = "",
    cursor: _Text = "",
) -> Response:
    reads_all = user.may(READ_ALL_PERMISSION)
    asked = ListQuery(
        q=q.strip(), configuration=configuration.strip(), owner=owner_filter.strip() if reads_all else ""
    )
    errors: dict[str, str] = {}
    found = ConversationPage(items=[], next_cursor=None)
    try:
        found = await llm.services.conversations.page(
            reader(user), asked.filters(user), cursor=cursor or None, limit=PAGE_SIZE
        )
    except InvalidInputError as error:
        errors = field_errors(error, default="q")
    owners = await _owner_names(llm) if reads_all else {}
    context = {
        "found": found,
        "asked": asked,
        "errors": errors,
        "cursor": cursor,
        "reads_all": reads_all,
        "may_create": user.may(CHAT_PERMISSION),
        "owners": owners,
        "owner_options": [("me", "Me"), *owners.items()],
        "configuration_options": [
            (view.slug, view.slug) for view in await llm.services.configurations.list_all()
        ],
        "next_url": asked.url(cursor=found.next_cursor) if found.next_cursor else None,
        "first_url": asked.url() if cursor else None,
    }
    return pages.render(request, "conversations.html", context, status_code=422 if errors else 200)


# --- a new one ------------------------------------------------------------------------------------


@router.get(f"{BASE}/new")
async def new_conversation(request: Request, user: Chatter, llm: Manager, pages: PageRenderer) -> Response:
    return await _new_form(request, llm, pages, values={"context_strategy": "truncate"})


@router.post(f"{BASE}/new")
async def create_conversation(request: Request, user: Chatter, llm: Manager, pages: PageRenderer) -> Response:
    form = await request.form()
    values = {
        name: value.strip() if isinstance(value := form.get(name), str) else ""
        for name in ("configuration", "title", "system_prompt", "context_strategy")
    }
    usable = {view.slug for view in await llm.services.configurations.usable(application_id=None)}
    try:
        if values["configuration"] not in usable:
            raise InvalidInputError("choose an active configuration", field="configuration")
        created = await llm.services.conversations.create(
            ConversationOwner(user_id=user.user_id),
            values["configuration"],
            title=values["title"],
            system_prompt=values["system_prompt"],
            context_strategy=values["context_strategy"] or "truncate",
        )
    except (InvalidInputError, NotFoundError) as error:
        field = error.field if isinstance(error, InvalidInputError) else "configuration"
        errors = {(field or "configuration").split(".")[0]: str(error).removeprefix(f"{field}: ")}
        return await _new_form(request, llm, pages, values=values, errors=errors)
    return redirect(f"{BASE}/{created.id}")


async def _new_form(
    request: Request,
    llm: LLMManager,
    pages: Pages,
    *,
    values: dict[str, str],
    errors: dict[str, str] | None = None,
) -> Response:
    configurations = await llm.services.configurations.usable(application_id=None)
    default = next((view.slug for view in configurations if view.is_default), None)
    context = {
        "configurations": configurations,
        "values": {"configuration": default or "", **values},
        "errors": errors or {},
    }
    return pages.render(request, "conversations_new.html", context, status_code=422 if errors else 200)


# --- one conversation -----------------------------------------------------------------------------


@router.get(f"{BASE}/{{conversation_id}}")
async def conversation(
    conversation_id: str, request: Request, user: Reader, llm: Manager, pages: PageRenderer
) -> Response:
    view = await llm.services.conversations.get(conversation_id, reader(user))
    messages = await llm.services.conversations.last_messages(
        conversation_id, reader(user), limit=MESSAGES_PER_PAGE
    )
    configuration = next(
        (item for item in await llm.services.configurations.list_all() if item.slug == view.configuration),
        None,
    )
    owners = await _owner_names(llm) if view.user_id != user.user_id else {}
    context = {
        **message_context(view, user),
        "messages": messages,
        "earlier": bool(messages) and messages[0].seq > 1,
        "configuration": configuration,
        "streams": configuration is None or configuration.supports_streaming,
        "owner_name": owners.get(_owner_key(view), "the library or the CLI"),
        "max_chars": MAX_MESSAGE_CHARS,
    }
    return pages.render(request, "conversations_detail.html", context)


@router.get(f"{BASE}/{{conversation_id}}/messages")
async def messages(
    conversation_id: str,
    request: Request,
    user: Reader,
    llm: Manager,
    pages: PageRenderer,
    after: Annotated[int | None, Query(ge=0)] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """A fragment: the messages after a `seq` (a reply just stored) or the page before one (earlier)."""
    view = await llm.services.conversations.get(conversation_id, reader(user))
    if before is not None:
        earlier = await _earlier(llm, view.id, user, before)
        context = {
            **message_context(view, user),
            "messages": earlier,
            "earlier": bool(earlier) and earlier[0].seq > 1,
        }
        return pages.render(request, "conversations_earlier.html", context)
    stored = await llm.services.conversations.messages(
        view.id, reader(user), after=after or 0, limit=MESSAGES_PER_PAGE * 2
    )
    return render_exchange(request, pages, view, user, stored.items)


@router.post(f"{BASE}/{{conversation_id}}/rename")
async def rename(conversation_id: str, request: Request, user: Chatter, llm: Manager) -> Response:
    title = (await request.form()).get("title")
    try:
        view = await llm.services.conversations.rename(
            conversation_id, owner(user), title if isinstance(title, str) else ""
        )
    except InvalidInputError as error:
        return redirect(f"{BASE}/{conversation_id}", flash=f"Not renamed: {error}")
    return redirect(f"{BASE}/{view.id}", flash="Conversation renamed.")


@router.post(f"{BASE}/{{conversation_id}}/delete")
async def delete(conversation_id: str, request: Request, user: Chatter, llm: Manager) -> Response:
    view = await llm.services.conversations.get(conversation_id, owner(user))
    await llm.services.conversations.delete(view.id, owner(user))
    await llm.services.activity.record(
        actor(request, user), "conversation.delete", target=view.id, detail=view.title[:200]
    )
    return redirect(BASE, flash=f"Conversation “{view.title or 'untitled'}” deleted.")


@router.post(f"{BASE}/{{conversation_id}}/messages/{{message_id}}/pin")
async def pin(
    conversation_id: str, message_id: str, request: Request, user: Chatter, llm: Manager, pages: PageRenderer
) -> Response:
    """Pin (`pinned=1`) or unpin (`pinned=0`) a message: pinned ones are always sent to the model."""
    pinned = (await request.form()).get("pinned") == "1"
    message = await llm.services.conversations.pin(conversation_id, owner(user), message_id, pinned=pinned)
    if request.headers.get("hx-request"):
        view = await llm.services.conversations.get(conversation_id, owner(user))
        context = {**message_context(view, user), "item": message}
        return pages.render(request, "conversations_message.html", context)
    return redirect(f"{BASE}/{conversation_id}#m-{message.seq}")


@router.get(f"{BASE}/{{conversation_id}}/export.json")
async def export_json(conversation_id: str, user: Reader, llm: Manager) -> Response:
    exported = await llm.services.conversations.export_json(conversation_id, reader(user))
    return JSONResponse(exported, headers=_attachment(conversation_id, "json"))


@router.get(f"{BASE}/{{conversation_id}}/export.md")
async def export_markdown(conversation_id: str, user: Reader, llm: Manager) -> Response:
    exported = await llm.services.conversations.export_markdown(conversation_id, reader(user))
    return PlainTextResponse(
        exported, media_type="text/markdown; charset=utf-8", headers=_attachment(conversation_id, "md")
    )


async def _earlier(
    llm: LLMManager, conversation_id: str, user: SessionUser, before: int
) -> list[MessageView]:
    """The page of messages just before `before` (a `seq`; a conversation's seqs are 1, 2, 3, …)."""
    start = max(0, before - 1 - MESSAGES_PER_PAGE)
    found = await llm.services.conversations.messages(
        conversation_id, reader(user), after=start, limit=MESSAGES_PER_PAGE
    )
    return [message for message in found.items if message.seq < before]


async def _owner_names(llm: LLMManager) -> dict[str, str]:
    """`user:<id>` / `application:<id>` → who that is, for readers of everyone's conversations."""
    users = {f"user:{view.id}": view.email for view in await llm.services.accounts.list_users()}
    applications = {
        f"application:{view.id}": f"application {view.name}"
        for view in await llm.services.applications.list_all()
    }
    return users | applications


def _owner_key(view: ConversationView) -> str:
    if view.user_id is not None:
        return f"user:{view.user_id}"
    if view.application_id is not None:
        return f"application:{view.application_id}"
    return ""


def _attachment(conversation_id: str, extension: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="conversation-{conversation_id}.{extension}"'}
