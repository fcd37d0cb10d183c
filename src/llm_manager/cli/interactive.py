"""The interactive chat that `llm-manager chat SLUG` opens without a prompt.

The event loop runs on a thread of its own (an anyio blocking portal) while the main thread reads
lines. Ctrl-C therefore reaches the main thread as a plain KeyboardInterrupt wherever it is: at the
prompt it ends the chat; during a reply it cancels only that reply, whose partial text the
conversation keeps (stored `interrupted`, and billed), and the chat goes on. With `asyncio.run`
on the main thread, the first Ctrl-C would cancel the whole program and the second would crash it.
"""

from __future__ import annotations

import contextlib
import re
import sys
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal
from rich.console import Console
from rich.text import Text

from llm_manager.cli._runtime import consoles, fail
from llm_manager.cli.conversations import VIEWER, find_conversation, forget_if_empty
from llm_manager.cli.rendering import result_summary
from llm_manager.errors import LLMManagerError
from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.conversations import ConversationView
from llm_manager.settings import load_settings
from llm_manager.types import ChatResult, TextDelta

with contextlib.suppress(ImportError):  # line editing and history at the prompt, where available
    import readline  # noqa: F401

_COMMAND = re.compile(r"/[a-z]+")
_HELP = """\
Each line you type is a message; the reply streams back.
  /new    start a new conversation (same configuration and system prompt)
  /help   this help
  /exit   leave (also /quit, Ctrl-D, or Ctrl-C at the prompt)
Ctrl-C during a reply stops it; what arrived is kept in the conversation."""


@dataclass(frozen=True, kw_only=True)
class ChatOptions:
    """What `chat` was asked: shared by its one-shot and interactive forms."""

    configuration: str
    system: str | None
    overrides: dict[str, Any]
    stream: bool
    conversation_id: str | None
    continue_latest: bool


@dataclass
class _Turn:
    """One reply as it went: filled in by the event loop, read by the main thread once it has ended."""

    result: ChatResult | None = None
    stopped: bool = False
    wrote: bool = False


class _Session:
    """The conversation being had; its coroutines run on the portal's event loop."""

    def __init__(self, llm: LLMManager, options: ChatOptions) -> None:
        self._llm = llm
        self._options = options
        self.conversation: ConversationView | None = None

    async def start(self) -> None:
        """Check the configuration and parameters, and find the conversation to continue, if any."""
        parse_params(self._options.overrides)
        self.conversation = await find_conversation(
            self._llm,
            self._options.configuration,
            conversation_id=self._options.conversation_id,
            continue_latest=self._options.continue_latest,
            system=self._options.system,
        )

    def new(self) -> None:
        """The next message starts a new conversation (none is stored before it has a message)."""
        self.conversation = None

    async def reply(
        self, text: str, *, task_status: TaskStatus[anyio.CancelScope] = anyio.TASK_STATUS_IGNORED
    ) -> _Turn:
        """Send `text` and print the reply; the scope handed out lets the main thread stop it."""
        turn = _Turn()
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            await self._send(text, turn)
        turn.stopped = scope.cancelled_caught
        return turn

    async def _send(self, text: str, turn: _Turn) -> None:
        options = self._options
        started = self.conversation is None
        if self.conversation is None:
            handle = await self._llm.conversation(options.configuration, system=options.system)
            self.conversation = handle.view
        conversation_id = self.conversation.id
        replies = self._llm.services.replies
        try:
            if not options.stream:
                reply = await replies.send(conversation_id, VIEWER, text, overrides=options.overrides)
                turn.result = reply.result
                _write(turn, reply.result.text)
                return
            stream = await replies.stream(conversation_id, VIEWER, text, overrides=options.overrides)
            try:
                async with stream:
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            _write(turn, event.text)
            finally:
                turn.result = stream.result
        except BaseException:
            if started:
                with anyio.CancelScope(shield=True):
                    if await forget_if_empty(self._llm, conversation_id):
                        self.conversation = None
            raise
        finally:
            if turn.wrote:
                sys.stdout.write("\n")
                sys.stdout.flush()


def run_interactive(options: ChatOptions) -> None:
    """Chat until /exit, Ctrl-D or Ctrl-C at the prompt."""
    err = consoles()[1]
    try:
        with (
            start_blocking_portal() as portal,
            portal.wrap_async_context_manager(LLMManager.open(load_settings())) as llm,
        ):
            session = _Session(llm, options)
            portal.call(session.start)
            _greet(err, options, session.conversation)
            _chat(portal, session, err)
            if session.conversation is not None:
                err.print(
                    f"Conversation {session.conversation.id} is kept; continue it with "
                    f"[bold]llm-manager chat {options.configuration} --conversation "
                    f"{session.conversation.id}[/].",
                    highlight=False,
                )
    except LLMManagerError as error:
        fail(str(error))


def _chat(portal: BlockingPortal, session: _Session, err: Console) -> None:
    while True:
        try:
            line = err.input("[bold cyan]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            err.print()
            return
        text = line.strip()
        if not text:
            continue
        if not _COMMAND.fullmatch(text):
            _reply(portal, session, line, err)
        elif text in ("/exit", "/quit"):
            return
        elif text == "/help":
            err.print(_HELP, markup=False, highlight=False)
        elif text == "/new":
            session.new()
            err.print("A new conversation starts with your next message.")
        else:
            err.print(f"Unknown command {text}; /help lists the commands.", highlight=False)


def _reply(portal: BlockingPortal, session: _Session, text: str, err: Console) -> None:
    """One reply; Ctrl-C while it runs stops it, and waits for what arrived to be stored."""
    future, scope = portal.start_task(session.reply, text)
    try:
        turn = _wait(portal, future, scope)
    except LLMManagerError as error:
        err.print(f"[bold red]error:[/] {error}", highlight=False)
        return
    if turn.result is not None:
        err.print(result_summary(turn.result))
    if turn.stopped:
        stopped = "what arrived is kept in the conversation" if turn.result else "nothing was sent"
        err.print(Text(f"Stopped: {stopped}.", style="yellow"))


def _wait(portal: BlockingPortal, future: Future[_Turn], scope: anyio.CancelScope) -> _Turn:
    while True:
        try:
            return future.result()
        except KeyboardInterrupt:
            portal.call(scope.cancel)


def _greet(err: Console, options: ChatOptions, conversation: ConversationView | None) -> None:
    if conversation is None:
        err.print(
            f"Chatting with [bold]{options.configuration}[/] in a new conversation. "
            "/help for commands, Ctrl-D to leave.",
            highlight=False,
        )
        return
    err.print(
        Text.assemble(
            "Continuing ",
            (f"“{conversation.title or '(untitled)'}”", "bold"),
            f" on {conversation.configuration} ({conversation.message_count} messages). "
            "/help for commands, Ctrl-D to leave.",
        )
    )


def _write(turn: _Turn, text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
    turn.wrote = True
