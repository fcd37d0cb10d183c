"""Two real server processes on one PostgreSQL database and one Redis behave as one gateway.

Budgets, rate limits and stream cancels are enforced across processes: each test starts two
`llm-manager serve` processes on a fresh database (they migrate it concurrently, under the
migration lock), sets data up through the library, and sends requests to both ports in turn.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet

from llm_manager.manager import LLMManager
from llm_manager.providers._wire import estimate_tokens
from llm_manager.services.budgets import BudgetSpec
from llm_manager.services.configurations import ConfigurationCreate
from llm_manager.services.usage import UsageFilter, UsageRow
from llm_manager.settings import Settings
from tests.server.processes import ServerProcess, running_servers

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.parametrize("fresh_database_url", ["postgres"], indirect=True),
]

PROMPT = "Count to ten"
MAX_TOKENS = 10
CALLS_IN_BUDGET = 10
PARALLEL_REQUESTS = 200
RPM_LIMIT = 6
RATE_LIMITED_REQUESTS = 30


@pytest.fixture
def shared_settings(
    fresh_database_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> dict[str, object]:
    """What both processes and the test's own manager are configured with."""
    return {
        "data_dir": tmp_path / "data",
        "database_url": fresh_database_url,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "secret_keys": Fernet.generate_key().decode(),
        "usage_flush_interval": 0.05,
    }


@pytest.fixture
def servers(shared_settings: dict[str, object], tmp_path: Path) -> Iterator[list[ServerProcess]]:
    with running_servers(2, shared_settings, tmp_path) as started:
        yield started


@pytest.fixture
async def llm(shared_settings: dict[str, object], servers: list[ServerProcess]) -> AsyncIterator[LLMManager]:
    """The library on the same database and Redis, opened once the servers have migrated it."""
    async with LLMManager.open(Settings(**shared_settings)) as manager:  # type: ignore[arg-type]
        yield manager


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield http


async def _issue(llm: LLMManager, application: str) -> str:
    await llm.applications.create(application)
    issued = await llm.tokens.create(application, groups=("inference",))
    return issued.secret


def _headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass(frozen=True, kw_only=True)
class Reply:
    server: int
    """Index of the process that answered."""
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


async def _burst(servers: Sequence[ServerProcess], count: int, secret: str, model: str) -> list[Reply]:
    """`count` chat calls at once, alternating between the servers.

    Every connection is opened first and then all requests are written in one go: built one by
    one by an HTTP client, the burst would take the client long enough for whichever process
    got the CPU first to win every race, on a small machine.
    """
    body = orjson.dumps(
        {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS}
    )
    targets = [index % len(servers) for index in range(count)]
    connections = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", servers[target].port) for target in targets)
    )
    try:
        for target, (_, writer) in zip(targets, connections, strict=True):
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{servers[target].port}\r\n"
                f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
        raw = await asyncio.gather(*(reader.read() for reader, _ in connections))
    finally:
        for _, writer in connections:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in connections), return_exceptions=True)
    return [_reply(target, data) for target, data in zip(targets, raw, strict=True)]


def _reply(server: int, data: bytes) -> Reply:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(server=server, status=int(status_line.split()[1]), headers=headers, body=orjson.loads(body))


async def _warm_up(
    llm: LLMManager, client: httpx.AsyncClient, servers: Sequence[ServerProcess], model: str, burst_secret: str
) -> None:
    """One budgeted call per process from another application, so that neither process starts
    the burst with cold caches and connection pools (the warm one would win every race)."""
    secret = await _issue(llm, "warm-up")
    await llm.budgets.set(BudgetSpec(application="warm-up", period="day", limit_usd=Decimal(1)))
    for server in servers:
        payload = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 1}
        response = await client.post(
            f"{server.base_url}/v1/chat/completions", json=payload, headers=_headers(secret)
        )
        assert response.status_code == 200, response.text
    listed = await asyncio.gather(
        *(
            client.get(f"{server.base_url}/v1/models", headers=_headers(burst_secret))
            for server in servers
            for _ in range(20)
        )
    )
    assert {response.status_code for response in listed} == {200}


async def _usage_rows(llm: LLMManager, application: str, expected: int) -> list[UsageRow]:
    """The application's usage rows, once the servers' writers have flushed `expected` of them."""
    deadline = time.monotonic() + 10
    while True:
        page = await llm.usage.list_page(limit=1000, filters=UsageFilter(application=application))
        if len(page.rows) >= expected or time.monotonic() > deadline:
            return page.rows
        await asyncio.sleep(0.05)


def _refusal(reply: Reply) -> tuple[int, str, int]:
    """(status, error code, Retry-After seconds) of a refused request."""
    return reply.status, reply.body["error"]["code"], int(reply.headers["retry-after"])


async def test_a_hard_budget_holds_across_processes(
    servers: list[ServerProcess], llm: LLMManager, client: httpx.AsyncClient
) -> None:
    secret = await _issue(llm, "budgeted")
    await llm.configurations.create(
        ConfigurationCreate(
            slug="priced",
            provider="demo",
            model="demo-chat",
            options={"delay_ms": 20},
            input_price=Decimal(100),
            output_price=Decimal(1000),
        )
    )
    application = await llm.applications.get("budgeted")
    resolved = (await llm.services.configurations.resolve_chain("priced", application_id=application.id))[0]
    ceiling = llm.budgets.ceiling(resolved, prompt_tokens=estimate_tokens(PROMPT), params_max=MAX_TOKENS)
    assert ceiling.usd is not None
    limit = (ceiling.usd * CALLS_IN_BUDGET + ceiling.usd / 2).quantize(Decimal("1e-9"))
    budget = await llm.budgets.set(BudgetSpec(application="budgeted", period="day", limit_usd=limit))
    await _warm_up(llm, client, servers, "priced", secret)

    replies = await _burst(servers, PARALLEL_REQUESTS, secret, "priced")

    served = [reply.server for reply in replies if reply.status == 200]
    refused = [reply for reply in replies if reply.status != 200]
    rows = await _usage_rows(llm, "budgeted", len(served))
    window = await llm.budgets.get(budget.id)
    spent = sum((row.cost or Decimal(0) for row in rows), Decimal(0))
    # Each call costs exactly its reservation (the demo's prompt count equals the estimate and it
    # always uses all 10 tokens), so the budget admits exactly 10 calls: no more, none lost.
    assert {row.cost for row in rows} == {ceiling.usd}
    assert len(served) == CALLS_IN_BUDGET
    assert 0 < served.count(0) < CALLS_IN_BUDGET, "both processes served calls"
    print("BUDGET", served.count(0), served.count(1), spent, limit, ceiling, len(refused), window)
    assert len(rows) == len(served)
    assert {(row.status, row.completion_tokens) for row in rows} == {("ok", MAX_TOKENS)}
    assert window.spent_usd == spent <= limit
    assert (window.reserved_usd, window.reserved_tokens) == (Decimal(0), 0)
    for status, code, retry_after in map(_refusal, refused):
        assert (status, code) == (429, "budget_exceeded")
        assert 1 <= retry_after <= 86_400  # the daily window resets at midnight UTC


async def test_a_rate_limit_is_shared_by_both_processes(
    servers: list[ServerProcess], llm: LLMManager, client: httpx.AsyncClient
) -> None:
    secret = await _issue(llm, "limited")
    await llm.configurations.create(
        ConfigurationCreate(slug="fast", provider="demo", model="demo-chat", options={"delay_ms": 0})
    )
    await _warm_up(llm, client, servers, "fast", secret)
    await llm.applications.update("limited", rpm_limit=RPM_LIMIT)  # applies to the next request

    replies = await _burst(servers, RATE_LIMITED_REQUESTS, secret, "fast")
    after = await _burst(servers, len(servers), secret, "fast")

    served = [reply.server for reply in replies if reply.status == 200]
    refused = [reply for reply in replies if reply.status != 200]
    # Counted apart, each process would have admitted RPM_LIMIT: twice as many in all.
    print("RATE", served.count(0), served.count(1), [r.headers.get("retry-after") for r in refused][:5])
    assert len(served) == RPM_LIMIT
    assert len(refused) == RATE_LIMITED_REQUESTS - RPM_LIMIT
    for status, code, retry_after in map(_refusal, [*refused, *after]):
        assert (status, code) == (429, "rate_limit_exceeded")
        assert 1 <= retry_after <= 60
    rows = await _usage_rows(llm, "limited", RPM_LIMIT)
    assert len(rows) == RPM_LIMIT


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield orjson.loads(line[6:])


async def test_a_stream_is_cancelled_through_the_other_process(
    servers: list[ServerProcess], llm: LLMManager, client: httpx.AsyncClient
) -> None:
    secret = await _issue(llm, "streaming")
    await llm.configurations.create(
        ConfigurationCreate(slug="slow", provider="demo", model="demo-chat", options={"delay_ms": 100})
    )
    first, second = servers
    created = await client.post(
        f"{first.base_url}/api/streams",
        json={"configuration": "slow", "prompt": "Tell me a long story"},
        headers=_headers(secret),
    )
    assert created.status_code == 201, created.text
    stream = created.json()

    async with asyncio.timeout(15):
        async with client.stream("GET", first.base_url + stream["events_url"]) as response:
            assert response.status_code == 200
            events = _events(response)
            chunk = await anext(events)
            assert chunk["type"] == "chunk"
            cancelled_at = time.monotonic()
            cancel = await client.post(
                f"{second.base_url}/api/streams/{stream['id']}/cancel", headers=_headers(secret)
            )
            rest = [event async for event in events]
            ended_after = time.monotonic() - cancelled_at

    assert cancel.status_code == 202, cancel.text
    assert cancel.json() == {"id": stream["id"], "cancelled": True}
    done = rest[-1]
    received = chunk["content"] + "".join(event["content"] for event in rest if event["type"] == "chunk")
    assert [event["type"] for event in rest[:-1]] == ["chunk"] * (len(rest) - 1)
    assert done["type"] == "done"
    assert (done["stats"]["status"], done["stats"]["response"]) == ("cancelled", received)
    print("CANCEL", ended_after, len(rest), done)
    assert ended_after < 2, "the whole reply would take about 5 s; the cancel stopped it"
    row = (await _usage_rows(llm, "streaming", 1))[0]
    assert row.id == done["stats"]["log_id"]
    assert (row.status, row.response_chars) == ("cancelled", len(received))
    assert row.completion_tokens > 0
