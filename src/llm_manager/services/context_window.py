"""Which messages of a conversation fit the model's context window.

History is cut in *turns* (a user message and the replies after it), never mid-turn, so the
model never sees an answer without its question. The newest turn and every pinned message are
always kept; older turns go oldest first. Sizes are estimates (about four characters a token
plus a per-message overhead), so a safety margin keeps the plan under the real limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llm_manager.errors import InvalidInputError
from llm_manager.providers._wire import estimate_tokens

MESSAGE_OVERHEAD = 4
"""Tokens each message costs beyond its text (role markers, separators) in chat formats."""
SAFETY_MARGIN = 0.9
"""Plan with this share of the window: estimates are not the provider's tokenizer."""
DEFAULT_CONTEXT_LENGTH = 8192
"""Used when neither the configuration, the provider's model list nor the price table knows."""
DEFAULT_REPLY_RESERVE = 1024
"""Room kept for the reply when the call sets no `max_tokens` (never more than a quarter of the window)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HistoryItem:
    seq: int
    role: str
    tokens: int
    pinned: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ContextPlan:
    kept: tuple[int, ...]
    """The `seq`s to send, oldest first."""
    dropped: tuple[int, ...]
    """The `seq`s left out (oldest turns first)."""
    budget: int
    """Tokens available to the history after the system prompt, the summary and the reply."""
    used: int
    """Estimated tokens of the kept history."""
    tail_start: int = 0
    """The first `seq` of the kept turns; anything kept before it is pinned."""


class ContextWindowError(InvalidInputError):
    """Even the newest turn and the pinned messages do not fit: say so rather than send a doomed call."""

    code = "context_length_exceeded"


def message_tokens(text: str | None) -> int:
    return estimate_tokens(text or "") + MESSAGE_OVERHEAD


def reply_reserve(max_tokens: int | None, window: int) -> int:
    if max_tokens is not None:
        return max_tokens
    return min(DEFAULT_REPLY_RESERVE, window // 4)


def history_budget(*, window: int, reserve: int, fixed: int) -> int:
    """Tokens left for history once the reply's room and the always-sent parts are taken."""
    return int(window * SAFETY_MARGIN) - reserve - fixed


def plan_context(items: Sequence[HistoryItem], *, budget: int) -> ContextPlan:
    """Keep the newest turn and the pinned messages, then whole turns, newest first, while they fit."""
    turns = _turns(items)
    if not turns:
        return ContextPlan(kept=(), dropped=(), budget=budget, used=0)
    pinned = sum(item.tokens for item in items if item.pinned)
    newest = turns[-1]
    used = pinned + sum(item.tokens for item in newest if not item.pinned)
    if used > budget:
        raise ContextWindowError(
            f"the message needs about {used} tokens with the pinned ones, but the model's context "
            f"window leaves {max(budget, 0)} for history: shorten it, unpin messages or lower max_tokens",
            field="content",
        )
    kept_turns = [newest]
    for turn in reversed(turns[:-1]):
        size = sum(item.tokens for item in turn if not item.pinned)
        if used + size > budget:
            break
        used += size
        kept_turns.append(turn)
    kept_seqs = {item.seq for turn in kept_turns for item in turn} | {i.seq for i in items if i.pinned}
    kept = tuple(item.seq for item in items if item.seq in kept_seqs)
    dropped = tuple(item.seq for item in items if item.seq not in kept_seqs)
    return ContextPlan(kept=kept, dropped=dropped, budget=budget, used=used, tail_start=kept_turns[-1][0].seq)


def _turns(items: Sequence[HistoryItem]) -> list[list[HistoryItem]]:
    turns: list[list[HistoryItem]] = []
    for item in items:
        if item.role == "user" or not turns:
            turns.append([item])
        else:
            turns[-1].append(item)
    return turns
