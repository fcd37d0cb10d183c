"""SIGTERM on a real server process: streams get the grace period, accounting is flushed, it exits.

Three streams run on a slow demo configuration (100 ms a token) when the signal arrives: a short
one that ends within the grace period, and two long ones — native SSE and OpenAI-style — that
would need seconds more and are ended with a `shutting_down` error when the grace runs out.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.usage import UsageRow
from llm_manager.settings import Settings
from tests.server.processes import ServerProcess, running_servers

pytestmark = pytest.mark.slow

GRACE = 1.5
SHORT_REPLY_TOKENS = 8
TOKEN_DELAY_MS = 100
SLACK = 1.0
"""Allowed lateness: the OpenAI stream notices the end of the grace at its next token."""


@pytest.fixture
def values(tmp_path: Path) -> dict[str, object]:
    return {
        "data_dir": tmp_path / "data",
        "secret_keys": Fernet.generate_key().decode(),
        "shutdown_grace": GRACE,
        "usage_flush_interval": 0.05,
    }


@pytest.fixture
async def secret(values: dict[str, object]) -> str:
    """A token of an application with a slow demo configuration (the database is set up first)."""
    async with LLMManager.open(Settings(**values)) as llm:  # type: ignore[arg-type]
        await llm.configurations.create(
            ConfigurationCreate(
                slug="slow", provider="demo", model="demo-chat", options={"delay_ms": TOKEN_DELAY_MS}
            )
        )
        await llm.applications.create("app")
        issued = await llm.tokens.create("app", groups=("inference",))
    return issued.secret


@pytest.fixture
def server(values: dict[str, object], secret: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with running_servers(1, values, tmp_path) as (started,):
        yield started


@dataclass
class Streamed:
    """What a client received: the usage row named in the headers, and each event with its time."""

    log_id: str = ""
    events: list[tuple[float, Any]] = field(default_factory=list)

    @property
    def last(self) -> Any:
        return self.events[-1][1]

    @property
    def ended_at(self) -> float:
        return self.events[-1][0]

    @property
    def text(self) -> str:
        return "".join(_text(event) for _, event in self.events)


def _text(event: Any) -> str:
    """The reply text an event carries, in either protocol."""
    if not isinstance(event, dict):
        return ""
    if event.get("type") == "chunk":
        return str(event["content"])
    choices = event.get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")


async def _stream(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], secret: str, started: asyncio.Event
) -> Streamed:
    """Read a stream to its end; `started` is set once its first text arrived."""
    streamed = Streamed()
    headers = {"Authorization": f"Bearer {secret}"}
    async with client.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        streamed.log_id = response.headers["x-llm-manager-log-id"]
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            payload = line.removeprefix("data: ")
            event = payload if payload == "[DONE]" else orjson.loads(payload)
            streamed.events.append((time.monotonic(), event))
            if _text(event):
                started.set()
    return streamed


async def _request_after_signal(server: ServerProcess) -> str:
    """A new request on a new connection: how it was refused.

    Until uvicorn stops listening (on its next tick) the drain answers 503; a connection the
    kernel queued just before the listening socket closed is closed unanswered; after that,
    connections are refused.
    """
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        try:
            response = await client.get("/healthz")
        except httpx.ConnectError:
            return "connection refused"
        except (httpx.ReadError, httpx.RemoteProtocolError):
            return "connection closed unanswered"
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "shutting_down"
    return "503 shutting_down"


async def _rows(values: dict[str, object]) -> dict[str, UsageRow]:
    async with LLMManager.open(Settings(**values)) as llm:  # type: ignore[arg-type]
        page = await llm.usage.list_page(limit=10)
    return {row.id: row for row in page.rows}


async def test_sigterm_lets_short_streams_finish_ends_long_ones_and_flushes_accounting(
    server: ServerProcess, secret: str, values: dict[str, object]
) -> None:
    story = "Tell me a long story"
    requests: dict[str, tuple[str, dict[str, Any]]] = {
        "short": (
            "/api/stream",
            {"configuration": "slow", "prompt": story, "params": {"max_tokens": SHORT_REPLY_TOKENS}},
        ),
        "native": ("/api/stream", {"configuration": "slow", "prompt": story}),
        "openai": (
            "/v1/chat/completions",
            {"model": "slow", "messages": [{"role": "user", "content": story}], "stream": True},
        ),
    }
    started = {name: asyncio.Event() for name in requests}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as client:
        reading = [
            asyncio.create_task(_stream(client, url, body, secret, started[name]))
            for name, (url, body) in requests.items()
        ]
        try:
            async with asyncio.timeout(10):
                await asyncio.gather(*(event.wait() for event in started.values()))

            signalled = time.monotonic()
            server.terminate()
            refusal = await _request_after_signal(server)
            await asyncio.sleep(0.5)  # uvicorn closes its listening socket on its next tick (0.1 s)
            later_refusal = await _request_after_signal(server)
            async with asyncio.timeout(GRACE + 10):
                short, native, openai = await asyncio.gather(*reading)
        finally:
            for task in reading:
                task.cancel()
            await asyncio.gather(*reading, return_exceptions=True)
    exit_code = await asyncio.to_thread(server.process.wait, 10)
    exited_after = time.monotonic() - signalled

    assert refusal in ("503 shutting_down", "connection closed unanswered", "connection refused")
    assert later_refusal == "connection refused"
    assert short.last["type"] == "done"
    assert (short.last["stats"]["status"], short.last["stats"]["completion_tokens"]) == (
        "ok",
        SHORT_REPLY_TOKENS,
    )
    assert short.ended_at - signalled < GRACE
    assert (native.last["type"], native.last["code"]) == ("error", "shutting_down")
    assert GRACE <= native.ended_at - signalled < GRACE + SLACK
    assert openai.last["error"]["code"] == "shutting_down"
    assert "[DONE]" not in [event for _, event in openai.events]
    assert GRACE <= openai.ended_at - signalled < GRACE + SLACK
    # uvicorn re-raises the SIGTERM it handled once shut down (since 0.29), so the status is that
    # of a process ended by the signal; the log shows the shutdown was the graceful one.
    assert exit_code in (0, -signal.SIGTERM)
    assert exited_after < GRACE + 3
    log = server.log()
    assert "Application shutdown complete." in log
    assert "Traceback" not in log

    rows = await _rows(values)
    assert rows[short.log_id].status == "ok"
    assert rows[short.log_id].completion_tokens == SHORT_REPLY_TOKENS
    for cut in (native, openai):
        row = rows[cut.log_id]
        assert (row.status, row.response_chars) == ("cancelled", len(cut.text))
        assert row.completion_tokens > 0
        assert len(cut.text) > 0
