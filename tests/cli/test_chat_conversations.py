"""`llm-manager chat` keeps every exchange in a conversation: -c, --conversation, the interactive
chat (Ctrl-C included, through a real terminal), --no-save, and --template."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llm_manager.manager import LLMManager
from llm_manager.providers.demo import demo_tokens
from llm_manager.services.conversations import ConversationOwner
from llm_manager.settings import load_settings
from llm_manager.testing.fake_upstream import FakeUpstream
from llm_manager.testing.transcripts import openai as openai_transcripts
from tests.cli.conftest import FAST, Cli, json_output

SCRIPT = Path(sys.executable).parent / "llm-manager"


def _conversations(cli: Cli, *args: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json_output(cli("conversations", "list", "--json", *args))
    return listed


def _messages(cli: Cli, conversation_id: str) -> list[dict[str, Any]]:
    shown = json_output(cli("conversations", "show", conversation_id, "--json"))
    messages: list[dict[str, Any]] = shown["messages"]
    return messages


def _usage_rows(cli: Cli) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json_output(cli("usage", "--json"))
    return rows


def test_chat_starts_a_conversation_and_continue_sends_its_history_upstream(
    cli: Cli, database: None, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai_transcripts.CHAT_PATH, openai_transcripts.text_stream())
    _add_openai_configuration(cli, "compatible", upstream)

    first = cli("chat", "compatible", "What is the capital of the UK?", "--system", "Answer briefly.")
    second = cli("chat", "compatible", "And of France?", "-c")

    assert first.stdout.strip() == second.stdout.strip() == openai_transcripts.TEXT_STREAM_TEXT
    [conversation] = _conversations(cli)
    assert conversation["id"] in first.stderr
    assert conversation["id"] in second.stderr
    assert (conversation["title"], conversation["message_count"]) == ("What is the capital of the UK?", 4)
    assert upstream.requests[1].json()["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is the capital of the UK?"},
        {"role": "assistant", "content": openai_transcripts.TEXT_STREAM_TEXT},
        {"role": "user", "content": "And of France?"},
    ]


def test_each_chat_without_continue_is_a_new_conversation(cli: Cli, data_dir: Path) -> None:
    first = json_output(cli("chat", FAST, "one", "--json"))
    second = json_output(cli("chat", FAST, "two", "--json"))

    assert first["conversation_id"] != second["conversation_id"]
    assert {row["conversation_id"] for row in _usage_rows(cli)} == {
        first["conversation_id"],
        second["conversation_id"],
    }
    assert first["template"] is None


def test_json_reply_names_its_conversation_and_the_history_counts_in_its_prompt(
    cli: Cli, database: None
) -> None:
    first = json_output(cli("chat", FAST, "hello there", "--json"))
    second = json_output(cli("chat", FAST, "and again", "-c", "--json", "--no-stream"))

    assert second["conversation_id"] == first["conversation_id"]
    # The demo model counts every message it is sent: the first exchange came along.
    history = 2 + len(demo_tokens(first["text"]))
    assert second["usage"]["prompt_tokens"] == history + 2
    messages = _messages(cli, first["conversation_id"])
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert messages[3]["usage_log_id"] == second["log_id"]


def test_conversation_option_continues_that_conversation(cli: Cli, database: None) -> None:
    chosen = json_output(cli("chat", FAST, "first topic", "--json"))["conversation_id"]
    json_output(cli("chat", FAST, "second topic", "--json"))

    reply = json_output(cli("chat", FAST, "back to the first", "--conversation", chosen, "--json"))

    assert reply["conversation_id"] == chosen
    assert [m["content"] for m in _messages(cli, chosen) if m["role"] == "user"] == [
        "first topic",
        "back to the first",
    ]


def test_continue_takes_the_latest_local_conversation_of_that_configuration(cli: Cli, database: None) -> None:
    on_fast = json_output(cli("chat", FAST, "on fast", "--json"))["conversation_id"]
    json_output(cli("chat", "demo", "on demo", "--json", "-p", "max_tokens=1"))
    cli("apps", "create", "portal")
    asyncio.run(_application_conversation("portal", FAST))  # more recent, but an application's

    reply = json_output(cli("chat", FAST, "continued", "-c", "--json"))

    assert reply["conversation_id"] == on_fast


async def _application_conversation(application: str, configuration: str) -> None:
    async with LLMManager.open(load_settings()) as llm:
        app = await llm.applications.get(application)
        conversation = await llm.conversation(configuration, owner=ConversationOwner(application_id=app.id))
        await conversation.send("an end user's message")


def test_continue_without_an_earlier_conversation_starts_one(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "hello", "-c", "--json")

    assert "starting a new one" in result.stderr
    assert [c["id"] for c in _conversations(cli)] == [json_output(result)["conversation_id"]]


def test_no_save_keeps_no_conversation(cli: Cli, data_dir: Path) -> None:
    reply = json_output(cli("chat", FAST, "just once", "--no-save", "--json"))

    assert reply["conversation_id"] is None
    assert _conversations(cli) == []
    [row] = _usage_rows(cli)
    assert (row["operation"], row["conversation_id"]) == ("chat", None)


def test_no_save_streams_too(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "just once", "--no-save")

    assert "You said: “just once”" in result.stdout
    assert "conversation" not in result.stderr
    assert _conversations(cli) == []


def test_unknown_conversation_is_an_error_and_stores_nothing(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "hello", "--conversation", "no-such-id", exit_code=1)

    assert "conversation 'no-such-id' not found" in result.stderr
    assert _usage_rows(cli) == []


def test_conversation_on_another_configuration_is_refused(cli: Cli, data_dir: Path) -> None:
    chosen = json_output(cli("chat", FAST, "hello", "--json"))["conversation_id"]

    result = cli("chat", "demo", "more", "--conversation", chosen, exit_code=1)

    assert f"uses configuration '{FAST}', not 'demo'" in result.stderr
    assert len(_messages(cli, chosen)) == 2


def test_system_prompt_of_a_continued_conversation_is_refused(cli: Cli, data_dir: Path) -> None:
    cli("chat", FAST, "hello", "--json")

    result = cli("chat", FAST, "more", "-c", "--system", "be terse", exit_code=1)

    assert "--system" in result.stderr


def test_refused_parameter_starts_no_conversation(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", FAST, "hello", "-p", "temperature=9", exit_code=1)

    assert "temperature" in result.stderr
    assert _conversations(cli) == []


def _add_openai_configuration(cli: Cli, slug: str, upstream: FakeUpstream) -> None:
    cli(
        "config",
        "add",
        slug,
        "--provider",
        "openai-compatible",
        "--model",
        "gpt-4o-mini",
        "--base-url",
        openai_transcripts.base_url(upstream.url),
        "--api-key-stdin",
        input="sk-test-key\n",
    )


def test_a_failed_reply_is_kept_as_an_error(cli: Cli, data_dir: Path, upstream: FakeUpstream) -> None:
    upstream.add("POST", openai_transcripts.CHAT_PATH, openai_transcripts.error_reply("authentication"))
    _add_openai_configuration(cli, "broken", upstream)

    cli("chat", "broken", "hello", exit_code=1)

    [conversation] = _conversations(cli)
    assert [m["status"] for m in _messages(cli, conversation["id"])] == ["complete", "error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((FAST,), "no prompt"),
        (("--template", "greet", FAST, "hello"), "--template gives the prompt"),
        (("--template", "greet", "-c"), "one-off"),
        ((FAST, "hello", "-v", "a=b"), "--template"),
        ((FAST, "hello", "-c", "--conversation", "x"), "not both"),
        ((FAST, "hello", "--no-save", "-c"), "--no-save"),
        ((FAST, "hello", "-i"), "leave the prompt out"),
        ((FAST, "-i", "--json"), "--json"),
        ((), "configuration"),
    ],
)
def test_contradictory_options_are_usage_errors(
    cli: Cli, empty_data_dir: Path, args: tuple[str, ...], message: str
) -> None:
    result = cli("chat", *args, exit_code=2)

    assert message in result.stderr


def test_interactive_chat_reads_messages_and_commands_from_stdin(cli: Cli, database: None) -> None:
    result = cli(
        "chat",
        FAST,
        "--interactive",
        "--system",
        "be brief",
        input="first\n\n/help\n/nonsense\nsecond\n/new\nthird\n/exit\nnever sent\n",
    )

    assert [line for line in result.stdout.splitlines() if line] == [
        _demo_reply("first"),
        _demo_reply("second"),
        _demo_reply("third"),
    ]
    assert "/new" in result.stderr  # the help
    assert "Unknown command /nonsense" in result.stderr
    newest, older = _conversations(cli)
    assert (older["message_count"], newest["message_count"]) == (4, 2)
    assert older["system_prompt"] == newest["system_prompt"] == "be brief"
    assert newest["id"] in result.stderr  # where to continue
    assert "never sent" not in result.stdout


def test_interactive_chat_continues_a_conversation_and_ends_at_end_of_input(cli: Cli, data_dir: Path) -> None:
    chosen = json_output(cli("chat", FAST, "hello", "--json"))["conversation_id"]

    result = cli("chat", FAST, "-i", "-c", "--no-stream", input="more\n")

    assert result.stdout.strip() == _demo_reply("more")
    assert "Continuing" in result.stderr
    assert [c["id"] for c in _conversations(cli)] == [chosen]
    assert len(_messages(cli, chosen)) == 4


def test_interactive_chat_reports_a_failed_reply_and_goes_on(
    cli: Cli, data_dir: Path, upstream: FakeUpstream
) -> None:
    upstream.add("POST", openai_transcripts.CHAT_PATH, openai_transcripts.error_reply("authentication"))
    _add_openai_configuration(cli, "broken", upstream)

    result = cli("chat", "broken", "-i", input="hello\nagain\n")

    assert result.stderr.count("error:") == 2
    [conversation] = _conversations(cli)
    assert [m["status"] for m in _messages(cli, conversation["id"])] == ["complete", "error"] * 2


def test_interactive_chat_on_an_unknown_configuration_fails_at_once(cli: Cli, data_dir: Path) -> None:
    result = cli("chat", "no-such-thing", "-i", input="hello\n", exit_code=1)

    assert "not found" in result.stderr
    assert _conversations(cli) == []


def test_template_chat_records_the_template_version_on_the_usage_row(cli: Cli, database: None) -> None:
    cli(
        "templates",
        "add",
        "greet",
        "--user",
        "Hello {{ name }}, {{ age + 1 }} soon",
        "--var",
        "name!",
        "--var",
        "age:integer:1",
        "--config",
        FAST,
    )
    cli("templates", "add", "greet", "--user", "Hi {{ name }}", "--var", "name!", "--config", FAST)
    cli("templates", "label", "greet", "production", "1")

    streamed = cli("chat", "--template", "greet", "-v", "name=Ada", "-v", "age=41")
    as_json = json_output(cli("chat", FAST, "--template", "greet@latest", "-v", "name=Bob", "--json"))

    assert streamed.stdout.strip() == _demo_reply("Hello Ada, 42 soon")
    assert "template greet v1" in streamed.stderr
    assert as_json["template"] == {"name": "greet", "version": 2}
    assert as_json["conversation_id"] is None
    rows = _usage_rows(cli)
    assert [(row["template_name"], row["template_version"]) for row in rows] == [("greet", 2), ("greet", 1)]
    assert {row["configuration"] for row in rows} == {FAST}
    assert _conversations(cli) == []


def test_template_chat_names_a_missing_required_variable(cli: Cli, data_dir: Path) -> None:
    cli("templates", "add", "greet", "--user", "Hello {{ name }}", "--var", "name!")

    result = cli("chat", FAST, "--template", "greet", exit_code=1)

    assert "variable 'name' is required" in result.stderr
    assert _usage_rows(cli) == []


def _demo_reply(prompt: str) -> str:
    return (
        f"This is the LLM Manager demo model, answering offline. You said: “{prompt}”. Every reply is "
        "streamed token by token, counted, priced at zero and logged like a real call, so you can try "
        "the console, the CLI and the API before adding a real provider."
    )


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_stops_one_reply_keeps_it_and_a_second_at_the_prompt_leaves(
    cli: Cli, data_dir: Path
) -> None:
    cli("config", "add", "slow", "--provider", "demo", "--model", "demo-chat", "--option", "delay_ms=100")
    terminal = _Terminal([str(SCRIPT), "chat", "slow"])
    try:
        terminal.expect("you>")
        terminal.write("tell me a story\n")
        terminal.expect("This is the")
        terminal.interrupt()  # during the reply: stops it
        terminal.expect("Stopped")
        terminal.expect("you>")
        time.sleep(0.5)  # a signal in the instant before readline waits would only be seen on the next
        terminal.interrupt()  # at the prompt: leaves
        assert terminal.wait() == 0, terminal.output
    finally:
        terminal.close()

    [conversation] = _conversations(cli)
    assert conversation["id"] in terminal.output
    message, reply = _messages(cli, conversation["id"])
    assert (message["content"], reply["status"]) == ("tell me a story", "interrupted")
    assert reply["content"].startswith("This is the")
    assert len(demo_tokens(reply["content"])) < len(demo_tokens(_demo_reply("tell me a story")))
    [row] = _usage_rows(cli)
    assert (row["status"], row["id"]) == ("cancelled", reply["usage_log_id"])
    assert row["completion_tokens"] == reply["completion_tokens"] > 0


class _Terminal:
    """A process on a pseudo-terminal of its own: it sees a TTY, as a person's shell would give it."""

    def __init__(self, command: list[str]) -> None:
        controller, terminal = pty.openpty()
        environment = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
        self._process = subprocess.Popen(
            command, stdin=terminal, stdout=terminal, stderr=terminal, env=environment, close_fds=True
        )
        os.close(terminal)
        self._controller = controller
        self.output = ""
        self._seen = 0

    def expect(self, text: str, timeout: float = 20) -> None:
        """Wait until `text` appears after what an earlier `expect` matched."""
        deadline = time.monotonic() + timeout
        while (found := self.output.find(text, self._seen)) < 0:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} did not appear in:\n{self.output}"
            if select.select([self._controller], [], [], remaining)[0]:
                self._read()
        self._seen = found + len(text)

    def write(self, text: str) -> None:
        os.write(self._controller, text.encode())

    def interrupt(self) -> None:
        self._process.send_signal(signal.SIGINT)

    def wait(self) -> int:
        code = self._process.wait(timeout=20)
        while select.select([self._controller], [], [], 0.1)[0] and self._read():
            pass
        return code

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        os.close(self._controller)

    def _read(self) -> bool:
        try:
            chunk = os.read(self._controller, 4096)
        except OSError:  # the process has gone and closed its side
            return False
        self.output += re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", chunk.decode(errors="replace"))
        return bool(chunk)
