"""Planning which turns fit the window: whole turns only, the newest and the pinned always kept."""

from __future__ import annotations

import pytest

from llm_manager.errors import InvalidInputError
from llm_manager.services.context_window import (
    DEFAULT_REPLY_RESERVE,
    MESSAGE_OVERHEAD,
    ContextWindowError,
    HistoryItem,
    history_budget,
    message_tokens,
    plan_context,
    reply_reserve,
)


def _chat(*sizes: int, pinned: tuple[int, ...] = ()) -> list[HistoryItem]:
    """Alternating user/assistant messages with these sizes, numbered from seq 1."""
    return [
        HistoryItem(seq=seq, role="user" if seq % 2 else "assistant", tokens=size, pinned=seq in pinned)
        for seq, size in enumerate(sizes, start=1)
    ]


def test_everything_is_kept_when_it_fits() -> None:
    plan = plan_context(_chat(10, 10, 10, 10, 10), budget=100)

    assert plan.kept == (1, 2, 3, 4, 5)
    assert plan.dropped == ()
    assert plan.used == 50
    assert plan.budget == 100
    assert plan.tail_start == 1


def test_no_history_is_an_empty_plan() -> None:
    plan = plan_context([], budget=10)

    assert (plan.kept, plan.dropped, plan.used) == ((), (), 0)


def test_oldest_turns_go_first_and_whole() -> None:
    plan = plan_context(_chat(10, 10, 10, 10, 10), budget=35)

    assert plan.kept == (3, 4, 5)
    assert plan.dropped == (1, 2)
    assert plan.used == 30
    assert plan.tail_start == 3


def test_a_turn_is_never_split() -> None:
    # 25 would fit the newest message plus one more, but never an answer without its question.
    plan = plan_context(_chat(10, 10, 10, 10, 10), budget=25)

    assert plan.kept == (5,)
    assert plan.dropped == (1, 2, 3, 4)
    assert plan.tail_start == 5


def test_a_turn_of_several_messages_moves_as_one() -> None:
    items = [
        HistoryItem(seq=1, role="user", tokens=5),
        HistoryItem(seq=2, role="assistant", tokens=5),
        HistoryItem(seq=3, role="tool", tokens=5),
        HistoryItem(seq=4, role="assistant", tokens=5),
        HistoryItem(seq=5, role="user", tokens=5),
    ]

    assert plan_context(items, budget=25).kept == (1, 2, 3, 4, 5)
    assert plan_context(items, budget=24).kept == (5,)


def test_an_older_turn_is_not_kept_once_a_newer_one_was_dropped() -> None:
    # The first turn is small enough to fit, but sending it without the turn after it would
    # leave a hole in the conversation.
    plan = plan_context(_chat(1, 1, 100, 1, 1), budget=10)

    assert plan.kept == (5,)
    assert plan.dropped == (1, 2, 3, 4)


def test_history_starting_with_a_reply_counts_it_as_a_turn() -> None:
    items = [
        HistoryItem(seq=1, role="assistant", tokens=10),
        HistoryItem(seq=2, role="user", tokens=10),
        HistoryItem(seq=3, role="assistant", tokens=10),
        HistoryItem(seq=4, role="user", tokens=10),
    ]

    plan = plan_context(items, budget=30)

    assert plan.kept == (2, 3, 4)
    assert plan.dropped == (1,)


def test_pinned_messages_are_kept_whatever_is_dropped() -> None:
    plan = plan_context(_chat(5, 10, 10, 10, 10, pinned=(1,)), budget=30)

    assert plan.kept == (1, 5)
    assert plan.dropped == (2, 3, 4)
    assert plan.used == 15
    assert plan.tail_start == 5, "what is kept before tail_start is pinned"


def test_a_pinned_message_inside_a_kept_turn_is_counted_once() -> None:
    plan = plan_context(_chat(10, 10, 10, 10, 10, pinned=(3,)), budget=30)

    assert plan.kept == (3, 4, 5)
    assert plan.used == 30
    assert plan.tail_start == 3


def test_the_newest_turn_that_does_not_fit_is_refused() -> None:
    with pytest.raises(ContextWindowError) as refused:
        plan_context(_chat(10, 10, 50), budget=40)

    assert refused.value.code == "context_length_exceeded"
    assert isinstance(refused.value, InvalidInputError)
    assert "50" in str(refused.value)


def test_pinned_messages_count_towards_the_newest_turn_fitting() -> None:
    plan_context(_chat(25, 10, 20), budget=45)
    with pytest.raises(ContextWindowError):
        plan_context(_chat(30, 10, 20, pinned=(1,)), budget=45)


def test_a_budget_eaten_by_fixed_parts_refuses_any_message() -> None:
    with pytest.raises(ContextWindowError):
        plan_context(_chat(1), budget=-5)


def test_message_tokens_adds_the_per_message_overhead() -> None:
    assert message_tokens(None) == MESSAGE_OVERHEAD
    assert message_tokens("") == MESSAGE_OVERHEAD
    assert message_tokens("abcd") == 1 + MESSAGE_OVERHEAD
    assert message_tokens("a" * 400) == 100 + MESSAGE_OVERHEAD


def test_the_reply_reserve_is_max_tokens_or_a_share_of_the_window() -> None:
    assert reply_reserve(100, 600) == 100
    assert reply_reserve(None, 128_000) == DEFAULT_REPLY_RESERVE
    assert reply_reserve(None, 600) == 150, "never more than a quarter of a small window"


def test_the_history_budget_keeps_a_safety_margin() -> None:
    budget = history_budget(window=1000, reserve=100, fixed=50)

    assert budget == 750
    assert budget + 100 + 50 < 1000
