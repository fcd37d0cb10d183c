"""What the conversation pages share: who may read or chat, and how stored messages are rendered.

Reading is the conversation service's rule, asked with `reader(user)`: one's own conversations,
or everyone's with `view-llm-conversations`. Changing and sending are asked with `owner(user)`,
so a reader of everyone's conversations who is not the owner is told "not found". The pages
only hide what the service would refuse anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from llm_manager.server.admin import _markdown
from llm_manager.server.admin._pages import Pages
from llm_manager.server.admin._session import Needs
from llm_manager.services.conversations import ConversationView, MessageView, Viewer
from llm_manager.services.web_sessions import SessionUser

BASE = "/admin/conversations"
CHAT_PERMISSION = "test-llm-configs"
"""Chatting spends money: the console's permission."""
READ_ALL_PERMISSION = "view-llm-conversations"


Reader = Annotated[SessionUser, Depends(Needs(CHAT_PERMISSION, READ_ALL_PERMISSION))]
"""Reads what the service lets them see: their own conversations, or everyone's."""
Chatter = Annotated[SessionUser, Depends(Needs(CHAT_PERMISSION))]
"""Creates, sends, stops, renames, pins and deletes — in their own conversations only."""


def reader(user: SessionUser) -> Viewer:
    return Viewer(user_id=user.user_id, reads_all=user.may(READ_ALL_PERMISSION))


def owner(user: SessionUser) -> Viewer:
    """The user as an owner only: what every change is asked with."""
    return Viewer(user_id=user.user_id)


def may_chat(view: ConversationView, user: SessionUser) -> bool:
    return view.user_id == user.user_id and user.may(CHAT_PERMISSION)


def message_context(view: ConversationView, user: SessionUser) -> dict[str, Any]:
    """What the message templates need: the conversation, whether this user may act, the renderer."""
    return {"c": view, "may_chat": may_chat(view, user), "markdown": _markdown.render}


def render_exchange(
    request: Request, pages: Pages, view: ConversationView, user: SessionUser, stored: Sequence[MessageView]
) -> Response:
    """Stored messages as a fragment, with the conversation's new totals swapped in out of band."""
    return pages.render(
        request, "conversations_exchange.html", {**message_context(view, user), "messages": stored}
    )
