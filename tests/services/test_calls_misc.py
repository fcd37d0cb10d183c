"""Embeddings, model discovery, metrics, guards, the sync mirror and secrets staying secret."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from pydantic import SecretStr

from llm_manager import LLMManager, SyncLLMManager
from llm_manager.errors import AuthenticationError, GuardRefusedError, InvalidInputError
from llm_manager.providers._wire import decode_base64_floats
from llm_manager.services.calls import ChatCall
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.configurations import ResolvedConfiguration
from llm_manager.settings import Settings
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from llm_manager.testing.transcripts import ollama, openai
from llm_manager.types import Usage

SECRET = "sk-live-TOPSECRET-0123456789abcdef"


async def _demo(llm: LLMManager) -> None:
    await llm.configurations.create(
        ConfigurationCreate(slug="d", provider="demo", model="demo-chat", options={"delay_ms": 0})
    )


@pytest.mark.parametrize("encoding", ["base64", "float"])
async def test_openai_embeddings_are_decoded_and_accounted(
    llm: LLMManager, upstream: FakeUpstream, encoding: str
) -> None:
    upstream.add("POST", openai.EMBEDDINGS_PATH, openai.embeddings_reply(encoding))
    await llm.configurations.create(
        ConfigurationCreate(
            slug="emb",
            provider="openai",
            model="text-embedding-3-small",
            base_url=openai.base_url(upstream.url),
            api_key=SecretStr(SECRET),
        )
    )
    result = await llm.embed("emb", ["hello"])
    expected = (
        decode_base64_floats(openai.EMBEDDING_BASE64) if encoding == "base64" else openai.EMBEDDING_FLOATS
    )
    assert result.vectors[0] == pytest.approx(expected)
    assert result.usage.prompt_tokens == openai.EMBEDDINGS_PROMPT_TOKENS[encoding]
    assert result.cost is not None
    assert result.cost > 0
    row = await llm.usage.get(result.log_id)
    assert row is not None
    assert (row.operation, row.status) == ("embed", "ok")


async def test_ollama_and_demo_embeddings(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("POST", ollama.EMBED_PATH, ollama.embeddings_reply())
    await llm.configurations.create(
        ConfigurationCreate(
            slug="oe", provider="ollama", model="all-minilm", base_url=ollama.base_url(upstream.url)
        )
    )
    await _demo(llm)
    local = await llm.embed("oe", ["why is the sky blue?", "why is the grass green?"])
    assert local.vectors == ollama.EMBEDDINGS_VECTORS
    assert local.cost == 0
    demo = await llm.embed("d", ["a", "a", "b"])
    assert demo.vectors[0] == demo.vectors[1] != demo.vectors[2]
    with pytest.raises(InvalidInputError):
        await llm.embed("d", [])


async def test_models_are_cached_until_refreshed(llm: LLMManager, upstream: FakeUpstream) -> None:
    upstream.add("GET", openai.MODELS_PATH, openai.models_reply())
    await llm.configurations.create(
        ConfigurationCreate(
            slug="gpt",
            provider="openai",
            model="gpt-4o-mini",
            base_url=openai.base_url(upstream.url),
            api_key=SecretStr(SECRET),
        )
    )
    first = await llm.models("gpt")
    second = await llm.models("gpt")
    assert [model.id for model in first] == [model.id for model in second] == list(openai.MODEL_IDS)
    assert len(upstream.requests) == 1
    await llm.models("gpt", refresh=True)
    assert len(upstream.requests) == 2
    assert upstream.requests[0].headers["authorization"] == f"Bearer {SECRET}"


async def test_metrics_tie_to_a_usage_row_or_an_application(llm: LLMManager) -> None:
    await _demo(llm)
    result = await llm.chat("d", "hello")
    app = await llm.applications.create("shop")
    await llm.record_metric("rating", 4.5, log_id=result.log_id, data={"by": "user"})
    await llm.record_metric("daily_active", 12, application_id=app.id)
    metrics = await llm.metrics.list_recent()
    assert {(metric.name, metric.value) for metric in metrics} == {("rating", 4.5), ("daily_active", 12)}
    assert (await llm.metrics.list_recent(usage_log_id=result.log_id))[0].data == {"by": "user"}
    with pytest.raises(InvalidInputError, match="usage log"):
        await llm.record_metric("rating", 1, log_id="no-such-log")
    with pytest.raises(InvalidInputError, match="value"):
        await llm.record_metric("empty", log_id=result.log_id)
    with pytest.raises(InvalidInputError, match="name"):
        await llm.record_metric("bad name!", 1, application_id=app.id)
    with pytest.raises(InvalidInputError, match="finite"):
        await llm.record_metric("nan", float("nan"), application_id=app.id)


class _Recorder:
    """A guard that records the admission lifecycle and can refuse."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.events: list[str] = []

    async def admit(self, configuration: ResolvedConfiguration, call: ChatCall) -> _Recorder:
        if self.refuse:
            raise GuardRefusedError("budget exhausted", retry_after=60)
        self.events.append(f"admit {configuration.slug}")
        return self

    async def settle(self, usage: Usage, cost: Decimal | None) -> None:
        self.events.append(f"settle {usage.completion_tokens} {cost}")

    async def release(self) -> None:
        self.events.append("release")


async def test_guards_admit_settle_release_and_refuse(settings: Settings, upstream: FakeUpstream) -> None:
    guard = _Recorder()
    async with LLMManager.open(settings, guards=[guard]) as llm:
        await _demo(llm)
        result = await llm.chat("d", "hello", max_tokens=3)
        assert guard.events == ["admit d", f"settle 3 {result.cost}"]

        upstream.add("POST", openai.CHAT_PATH, openai.error_reply("authentication"))
        await llm.configurations.create(
            ConfigurationCreate(
                slug="bad",
                provider="openai",
                model="gpt-4o-mini",
                base_url=openai.base_url(upstream.url),
                api_key=SecretStr(SECRET),
                fallbacks=["d"],
            )
        )
        guard.events.clear()
        await llm.chat("bad", "hello", max_tokens=2)
        assert guard.events == ["admit bad", "release", "admit d", "settle 2 0"]

    refusing = _Recorder(refuse=True)
    async with LLMManager.open(settings, guards=[refusing]) as llm:
        with pytest.raises(GuardRefusedError) as caught:
            await llm.chat("d", "hello")
        assert caught.value.retry_after == 60
        page = await llm.usage.list_page()
        assert len(page.rows) == 2, "the refused call spent nothing and added no row"


def test_sync_mirror(settings: Settings) -> None:
    with SyncLLMManager.open(settings) as llm:
        llm._portal.call(_demo, llm.manager)
        result = llm.chat("d", "hello", max_tokens=4)
        assert result.usage.completion_tokens == 4
        texts = [event for event in llm.stream("d", "hi", max_tokens=2)]
        assert len([event for event in texts if getattr(event, "kind", "") == "text"]) == 2
        vectors = llm.embed("d", "x")
        assert len(vectors.vectors) == 1
        assert [model.id for model in llm.models("d")] == ["demo-chat", "demo-embed"]


async def test_no_secret_in_errors_rows_views_or_logs(
    llm: LLMManager, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {
        "error": {
            "message": f"Incorrect API key provided: {SECRET}.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    upstream.add("POST", openai.CHAT_PATH, Reply.json(body, status=401))
    view = await llm.configurations.create(
        ConfigurationCreate(
            slug="gpt",
            provider="openai",
            model="gpt-4o-mini",
            base_url=openai.base_url(upstream.url),
            api_key=SecretStr(SECRET),
        )
    )
    with pytest.raises(AuthenticationError) as caught:
        await llm.chat("gpt", "hello")
    stream_error: Exception | None = None
    try:
        async for _ in llm.stream("gpt", "hello"):
            pass
    except AuthenticationError as error:
        stream_error = error
    page = await llm.usage.list_page()
    texts = [
        str(caught.value),
        repr(caught.value),
        str(stream_error),
        repr(view),
        str(await llm.configurations.get("gpt")),
        repr(await llm.configurations.resolve("gpt")),
        *(str(row) for row in page.rows),
        caplog.text,
    ]
    assert upstream.requests[0].headers["authorization"] == f"Bearer {SECRET}", "the key was really used"
    for text in texts:
        assert SECRET not in text
        assert "TOPSECRET" not in text
    assert all(row.error_message and "[redacted]" in row.error_message for row in page.rows)
