"""OpenAI-style message dicts become the normalised messages every provider adapter takes."""

from __future__ import annotations

import pytest

from llm_manager.errors import InvalidInputError
from llm_manager.manager import to_messages
from llm_manager.types import Message


def test_a_developer_message_is_the_system_message() -> None:
    messages = to_messages(
        [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "hi"}]
    )
    assert messages == (
        Message(role="system", content="Answer in French."),
        Message(role="user", content="hi"),
    )


def test_an_unknown_role_is_refused_naming_the_message() -> None:
    with pytest.raises(InvalidInputError) as refused:
        to_messages([{"role": "user", "content": "hi"}, {"role": "critic", "content": "no"}])
    assert refused.value.field == "messages[1].role"
    assert "developer" in str(refused.value)
