"""Through `create_app`: `/readyz` follows the schema and the database, `/metrics` counts real calls,
and unknown routes and wrong methods answer in the one error shape."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from alembic import command
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Connection

from llm_manager.db.migrate import alembic_config, head_revision, upgrade_to_head
from llm_manager.db.session import Database
from llm_manager.manager import LLMManager
from llm_manager.server import health
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.testing.fake_upstream import FakeUpstream
from tests.server.conftest import Gateway

DEMO = {"configuration": "demo", "provider": "demo", "model": "demo-chat"}


def _previous_revision() -> str:
    head = head_revision()
    assert head is not None
    revision = ScriptDirectory.from_config(alembic_config()).get_revision(head)
    assert revision is not None
    previous = revision.down_revision
    assert isinstance(previous, str)
    return previous


def _downgrade_on(connection: Connection, target: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, target)


async def _downgrade_one_step(llm: LLMManager) -> None:
    previous = _previous_revision()
    async with llm.services.database.engine.begin() as connection:
        await connection.run_sync(_downgrade_on, previous)


def _probe_app(database: Database) -> FastAPI:
    """Only the health routes, over a manager stand-in holding `database` (nothing migrates it)."""
    app = FastAPI()
    app.include_router(health.router)
    app.state.llm = SimpleNamespace(services=SimpleNamespace(database=database))
    return app


def test_readyz_is_503_while_migrations_are_behind_and_200_once_at_head(
    client: TestClient, gateway: Gateway
) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "database": True,
        "revision": head_revision(),
        "head": head_revision(),
    }

    gateway.run(_downgrade_one_step)
    behind = client.get("/readyz")
    assert behind.status_code == 503
    assert behind.json() == {
        "ready": False,
        "database": True,
        "revision": _previous_revision(),
        "head": head_revision(),
    }

    gateway.run(lambda llm: upgrade_to_head(llm.services.database))
    again = client.get("/readyz")
    assert again.status_code == 200
    assert again.json()["ready"] is True


async def _probe(app: FastAPI, path: str = "/readyz") -> tuple[int, object]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as probe:
        response = await probe.get(path)
    return response.status_code, response.json()


async def test_readyz_is_503_on_a_database_that_was_never_migrated(fresh_database_url: str) -> None:
    database = Database(fresh_database_url)
    try:
        status, body = await _probe(_probe_app(database))
        assert (status, body) == (
            503,
            {"ready": False, "database": True, "revision": None, "head": head_revision()},
        )
        await upgrade_to_head(database)
        status, body = await _probe(_probe_app(database))
        assert (status, body) == (
            200,
            {"ready": True, "database": True, "revision": head_revision(), "head": head_revision()},
        )
    finally:
        await database.dispose()


async def test_readyz_is_503_when_the_database_is_unreachable() -> None:
    port = FakeUpstream.closed_port_url().rsplit(":", 1)[1]
    unreachable = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/llmm")
    try:
        status, body = await _probe(_probe_app(unreachable))
    finally:
        await unreachable.dispose()
    assert (status, body) == (
        503,
        {"ready": False, "database": False, "revision": None, "head": head_revision()},
    )


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_a_real_chat_completion(client: TestClient, gateway: Gateway) -> None:
    async def setup(llm: LLMManager) -> None:
        await llm.configurations.create(
            ConfigurationCreate(slug="demo", provider="demo", model="demo-chat", options={"delay_ms": 0})
        )

    gateway.run(setup)
    before = _samples(client.get("/metrics").text)
    assert not any(name == "llm_manager_requests_total" for name, _ in before)

    response = client.post(
        "/v1/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 4},
        headers=gateway.headers(gateway.token()),
    )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]

    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    samples = _samples(scrape.text)

    def value(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    requests = value("llm_manager_requests_total", **DEMO, operation="chat", status="ok")
    assert requests is not None
    assert requests >= 1
    assert value("llm_manager_tokens_total", **DEMO, kind="prompt") == usage["prompt_tokens"]
    assert value("llm_manager_tokens_total", **DEMO, kind="completion") == usage["completion_tokens"] == 4
    assert value("llm_manager_request_duration_seconds_count", **DEMO) == 1
    assert value("llm_manager_request_duration_seconds_bucket", **DEMO, le="+Inf") == 1
    assert value("llm_manager_request_duration_seconds_sum", **DEMO) is not None
    assert value("llm_manager_open_streams", surface="openai") in (None, 0)


def test_unknown_route_is_404_in_the_one_error_shape(client: TestClient) -> None:
    response = client.get("/v1/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {"message": "Not Found", "type": "invalid_request_error", "code": "not_found", "param": None}
    }


def test_wrong_method_is_405_in_the_one_error_shape(client: TestClient) -> None:
    for method, path in (("GET", "/v1/chat/completions"), ("DELETE", "/v1/embeddings"), ("POST", "/readyz")):
        response = client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "error": {
                "message": "Method Not Allowed",
                "type": "invalid_request_error",
                "code": "method_not_allowed",
                "param": None,
            }
        }
