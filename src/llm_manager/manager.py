"""`LLMManager`: the library facade. One object owns the engine, the HTTP client and the writer.

    async with LLMManager.open() as llm:
        result = await llm.chat("demo", "Hello")
        async for event in llm.stream("demo", "Tell me more"):
            ...

`SyncLLMManager` mirrors it for scripts, running the same code on a background event loop.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from argon2 import PasswordHasher

from llm_manager.conversation import ConversationHandle
from llm_manager.db.migrate import upgrade_to_head
from llm_manager.db.session import Database
from llm_manager.errors import InvalidInputError
from llm_manager.providers._http import UpstreamClient
from llm_manager.providers._wire import HttpTimeouts, new_http_client
from llm_manager.providers.registry import ProviderRegistry
from llm_manager.services.accounting import UsageRecord, UsageWriter
from llm_manager.services.accounts import AccountService, Passwords, ensure_default_roles
from llm_manager.services.activity import ActivityService
from llm_manager.services.applications import ApplicationService
from llm_manager.services.budgets import BudgetGuard, BudgetService
from llm_manager.services.calls import CallContext, ChatCall, Guard, ProviderFactory, RetryPolicy
from llm_manager.services.chat import ChatService, ChatStream
from llm_manager.services.configuration_specs import parse_params
from llm_manager.services.configurations import ConfigurationService
from llm_manager.services.conversation_replies import ConversationReplies
from llm_manager.services.conversations import ConversationOwner, ConversationService, Viewer
from llm_manager.services.metrics import MetricService
from llm_manager.services.models import ModelDiscovery
from llm_manager.services.pricing import Pricing
from llm_manager.services.ratelimits import MemoryRateCounter, RateCounter, RateLimitGuard, RedisRateCounter
from llm_manager.services.secrets import SecretsService, ensure_key_file, load_key_ring
from llm_manager.services.stats import StatsService
from llm_manager.services.streams import MemoryStreamBoard, RedisStreamBoard, StreamBoard
from llm_manager.services.templates import RenderedTemplate, TemplateService
from llm_manager.services.tokens import TokenService
from llm_manager.services.usage import UsageService
from llm_manager.services.web_sessions import SessionService
from llm_manager.settings import Settings, load_settings
from llm_manager.types import (
    ChatResult,
    EmbeddingResult,
    Message,
    ModelInfo,
    StreamEvent,
    ToolCall,
    ToolDefinition,
)

if TYPE_CHECKING:  # annotations only: redis is imported lazily, by `_redis_client`
    from redis.asyncio import Redis

Prompt = str | Sequence[Message | Mapping[str, Any]] | RenderedTemplate
"""Text, messages, or a rendered template (its version is then recorded on the usage row)."""
_CONNECTION_TEST_PROMPT = "Reply with the single word: OK"


@dataclass(frozen=True, kw_only=True)
class Services:
    """Every service, wired once; surfaces (server, CLI) use these through the manager."""

    database: Database
    http: UpstreamClient
    writer: UsageWriter
    applications: ApplicationService
    configurations: ConfigurationService
    chat: ChatService
    models: ModelDiscovery
    usage: UsageService
    metrics: MetricService
    secrets: SecretsService
    tokens: TokenService
    budgets: BudgetService
    stats: StatsService
    accounts: AccountService
    sessions: SessionService
    activity: ActivityService
    conversations: ConversationService
    replies: ConversationReplies
    templates: TemplateService
    streams: StreamBoard = dataclasses.field(default_factory=MemoryStreamBoard)
    redis: Redis | None = None
    """Shared by every process of a deployment when `LLM_MANAGER_REDIS_URL` is set."""


class LLMManager:
    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        guards: Sequence[Guard] = (),
        observers: Sequence[Callable[[UsageRecord], None]] = (),
    ) -> AsyncIterator[LLMManager]:
        """Migrate the database to head, wire the services, and close everything on exit."""
        settings = settings or load_settings()
        ensure_key_file(settings)
        key_ring = load_key_ring(settings)
        if settings.is_sqlite:
            settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        database = Database(settings.database_url)
        http = new_http_client(
            HttpTimeouts(connect=settings.connect_timeout), max_connections=settings.upstream_max_connections
        )
        writer = UsageWriter(
            database,
            max_queue=settings.usage_queue_size,
            batch_size=settings.usage_batch_size,
            flush_interval=settings.usage_flush_interval,
        )
        redis = _redis_client(settings.redis_url)
        rates: RateCounter = (
            RedisRateCounter(redis, settings.redis_prefix) if redis is not None else MemoryRateCounter()
        )
        streams: StreamBoard = (
            RedisStreamBoard(redis, settings.redis_prefix) if redis is not None else MemoryStreamBoard()
        )
        services: Services | None = None
        try:
            await upgrade_to_head(database)
            services = _wire_services(
                settings, database, http, writer, key_ring, (RateLimitGuard(rates), *guards), observers
            )
            services = replace(services, redis=redis, streams=streams)
            await services.secrets.record_keys()
            await ensure_default_roles(database)
            await streams.start()
            await services.tokens.invalidations.start(redis, settings.redis_prefix)
            writer.start()
            yield cls(settings, services)
        finally:
            await writer.close()
            if services is not None:
                await services.budgets.aclose()  # after the writer: settlements first, then leases
                await services.tokens.aclose()
                await services.configurations.aclose()
                await services.tokens.invalidations.aclose()
            await streams.aclose()
            await rates.aclose()
            if redis is not None:
                await redis.aclose()
            await http.aclose()
            await database.dispose()

    @property
    def configurations(self) -> ConfigurationService:
        return self.services.configurations

    @property
    def applications(self) -> ApplicationService:
        return self.services.applications

    @property
    def tokens(self) -> TokenService:
        return self.services.tokens

    @property
    def budgets(self) -> BudgetService:
        return self.services.budgets

    @property
    def usage(self) -> UsageService:
        return self.services.usage

    @property
    def metrics(self) -> MetricService:
        return self.services.metrics

    @property
    def secrets(self) -> SecretsService:
        return self.services.secrets

    @property
    def templates(self) -> TemplateService:
        return self.services.templates

    async def conversation(
        self,
        configuration: str | None = None,
        *,
        id: str | None = None,
        title: str | None = None,
        system: str | None = None,
        context_strategy: str = "truncate",
        owner: ConversationOwner | None = None,
        viewer: Viewer | None = None,
        context: CallContext | None = None,
        **params: Any,
    ) -> ConversationHandle:
        """A new conversation on `configuration` (None: the default), or the existing one `id`.

        The library acts for whoever holds the database: by default it owns what it creates and
        sees every conversation; pass `owner` / `viewer` to act for a user or an application.
        """
        viewer = viewer or Viewer.system()
        services = self.services
        if id is not None:
            view = await services.conversations.get(id, viewer)
        else:
            view = await services.conversations.create(
                owner or ConversationOwner(),
                configuration,
                title=title,
                system_prompt=system,
                context_strategy=context_strategy,
                params=params,
            )
        return ConversationHandle(view, services.conversations, services.replies, viewer, context)

    async def chat(
        self,
        configuration: str | None,
        prompt: Prompt | None = None,
        *,
        template: str | None = None,
        variables: Mapping[str, Any] | None = None,
        system: str | None = None,
        tools: Sequence[ToolDefinition] = (),
        tool_choice: str | None = None,
        context: CallContext | None = None,
        **overrides: Any,
    ) -> ChatResult:
        """One whole call. `overrides` are generation parameters (temperature=0.2, max_tokens=100…).

        Give a `prompt`, or a `template` reference (`name`, `name@label`, `name@3`) and its `variables`.
        """
        if template is not None:
            if prompt is not None:
                raise InvalidInputError("give either a prompt or a template, not both", field="template")
            prompt = await self.templates.render(template, variables)
        if prompt is None:
            raise InvalidInputError("give a prompt or a template", field="prompt")
        call = _chat_call(configuration, prompt, system, tools, tool_choice, context, overrides, "chat")
        return await self.services.chat.chat(call)

    def stream(
        self,
        configuration: str | None,
        prompt: Prompt,
        *,
        system: str | None = None,
        tools: Sequence[ToolDefinition] = (),
        tool_choice: str | None = None,
        context: CallContext | None = None,
        **overrides: Any,
    ) -> ChatStream:
        """A streamed call: `async for event in llm.stream(...)`; its `.result` is set at the end."""
        call = _chat_call(configuration, prompt, system, tools, tool_choice, context, overrides, "stream")
        return self.services.chat.stream(call)

    async def embed(
        self, configuration: str | None, inputs: str | Sequence[str], *, context: CallContext | None = None
    ) -> EmbeddingResult:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts or any(not isinstance(text, str) or not text for text in texts):
            raise InvalidInputError("input must be one or more non-empty strings", field="input")
        return await self.services.chat.embed(configuration, texts, context)

    async def models(self, configuration: str, *, refresh: bool = False) -> list[ModelInfo]:
        return await self.services.models.models(configuration, refresh=refresh)

    async def test(self, configuration: str, *, context: CallContext | None = None) -> ChatResult:
        """A tiny real call through the whole pipeline, recorded like any other (operation `test`)."""
        call = _chat_call(
            configuration, _CONNECTION_TEST_PROMPT, None, (), None, context, {"max_tokens": 5}, "test"
        )
        return await self.services.chat.chat(replace(call, follow_fallbacks=False))

    async def record_metric(
        self,
        name: str,
        value: float | None = None,
        *,
        data: dict[str, Any] | None = None,
        log_id: str | None = None,
        application_id: int | None = None,
    ) -> str:
        return await self.services.metrics.record(
            name, value=value, data=data, usage_log_id=log_id, application_id=application_id
        )


class SyncLLMManager:
    """The same API for synchronous code; calls run on a private event loop thread."""

    def __init__(self, portal: BlockingPortal, manager: LLMManager) -> None:
        self._portal = portal
        self.manager = manager

    @classmethod
    @contextmanager
    def open(cls, settings: Settings | None = None) -> Iterator[SyncLLMManager]:
        with (
            start_blocking_portal() as portal,
            portal.wrap_async_context_manager(LLMManager.open(settings)) as llm,
        ):
            yield cls(portal, llm)

    def chat(self, configuration: str | None, prompt: Prompt | None = None, **options: Any) -> ChatResult:
        return self._portal.call(functools.partial(self.manager.chat, configuration, prompt, **options))

    def stream(self, configuration: str | None, prompt: Prompt, **options: Any) -> Iterator[StreamEvent]:
        stream = self.manager.stream(configuration, prompt, **options)
        try:
            while True:
                try:
                    yield self._portal.call(stream.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            self._portal.call(stream.aclose)

    def embed(self, configuration: str | None, inputs: str | Sequence[str]) -> EmbeddingResult:
        return self._portal.call(self.manager.embed, configuration, inputs)

    def models(self, configuration: str, *, refresh: bool = False) -> list[ModelInfo]:
        return self._portal.call(functools.partial(self.manager.models, configuration, refresh=refresh))

    def test(self, configuration: str) -> ChatResult:
        return self._portal.call(self.manager.test, configuration)

    def record_metric(self, name: str, value: float | None = None, **options: Any) -> str:
        return self._portal.call(functools.partial(self.manager.record_metric, name, value, **options))


def _redis_client(url: str | None) -> Redis | None:
    """Redis is imported only when configured: ~6 MB that a single-process deployment never needs."""
    if not url:
        return None
    from redis.asyncio import Redis

    return Redis.from_url(url)


def _wire_services(
    settings: Settings,
    database: Database,
    http: UpstreamClient,
    writer: UsageWriter,
    key_ring: Any,
    guards: Sequence[Guard],
    observers: Sequence[Callable[[UsageRecord], None]],
) -> Services:
    registry = ProviderRegistry.default()
    providers = ProviderFactory(registry, http)
    configurations = ConfigurationService(database, key_ring, registry)
    pricing = Pricing()
    passwords = Passwords(
        PasswordHasher(
            memory_cost=settings.password_hash_memory_kib, time_cost=settings.password_hash_time_cost
        )
    )
    tokens = TokenService(database, writer=writer)
    budgets = BudgetService(database, pricing, providers, writer=writer, invalidations=tokens.invalidations)
    models = ModelDiscovery(configurations, providers, settings.model_cache_ttl)
    chat = ChatService(
        configurations=configurations,
        providers=providers,
        writer=writer,
        pricing=pricing,
        retry=RetryPolicy(max_retries=settings.max_retries, max_wait=settings.retry_max_wait),
        first_byte_timeout=settings.first_byte_timeout,
        idle_timeout=settings.idle_timeout,
        guards=(*guards, BudgetGuard(budgets)),
        observers=observers,
    )
    return Services(
        database=database,
        http=http,
        writer=writer,
        applications=ApplicationService(database),
        configurations=configurations,
        chat=chat,
        models=models,
        usage=UsageService(database, writer),
        metrics=MetricService(database, writer),
        secrets=SecretsService(database, key_ring),
        tokens=tokens,
        budgets=budgets,
        stats=StatsService(database),
        accounts=AccountService(database, passwords),
        sessions=SessionService(database, passwords, max_age=timedelta(seconds=settings.session_max_age)),
        activity=ActivityService(database),
        conversations=ConversationService(database, configurations),
        replies=ConversationReplies(database, chat, configurations, models, pricing),
        templates=TemplateService(database, writer),
    )


def _chat_call(
    configuration: str | None,
    prompt: Prompt,
    system: str | None,
    tools: Sequence[ToolDefinition],
    tool_choice: str | None,
    context: CallContext | None,
    overrides: Mapping[str, Any],
    operation: str,
) -> ChatCall:
    params = dict(overrides)
    template_name = template_version = None
    if isinstance(prompt, RenderedTemplate):
        # The template's configuration and parameters are defaults: the caller's win.
        configuration = configuration or prompt.configuration
        params = {**prompt.params, **params}
        template_name, template_version = prompt.name, prompt.version
        system = system or prompt.system
        prompt = prompt.user
    messages = to_messages(prompt)
    if system:
        messages = (Message(role="system", content=system), *messages)
    return ChatCall(
        configuration=configuration,
        messages=messages,
        overrides=parse_params(params),
        tools=tuple(tools),
        tool_choice=tool_choice,
        context=context or CallContext(),
        operation=operation,
        template_name=template_name,
        template_version=template_version,
    )


def to_messages(prompt: Prompt) -> tuple[Message, ...]:
    """Accept a string, `Message`s, OpenAI-style dicts or a rendered template; refuse anything else by name."""
    if isinstance(prompt, RenderedTemplate):
        user = Message(role="user", content=prompt.user)
        return (Message(role="system", content=prompt.system), user) if prompt.system else (user,)
    if isinstance(prompt, str):
        if not prompt:
            raise InvalidInputError("prompt must not be empty", field="prompt")
        return (Message(role="user", content=prompt),)
    messages = []
    for index, item in enumerate(prompt):
        if isinstance(item, Message):
            messages.append(item)
            continue
        role = item.get("role")
        if role == "developer":  # what newer OpenAI models call the system message
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidInputError(
                f"messages[{index}].role must be system, developer, user, assistant or tool",
                field=f"messages[{index}].role",
            )
        content = item.get("content")
        if content is not None and not isinstance(content, str):
            raise InvalidInputError(
                f"messages[{index}].content must be a string", field=f"messages[{index}].content"
            )
        messages.append(
            Message(
                role=role,
                content=content,
                tool_calls=_tool_calls(item.get("tool_calls") or (), index),
                tool_call_id=item.get("tool_call_id"),
                name=item.get("name"),
            )
        )
    if not messages:
        raise InvalidInputError("messages must not be empty", field="messages")
    return tuple(messages)


def _tool_calls(raw: Sequence[Mapping[str, Any]], index: int) -> tuple[ToolCall, ...]:
    """OpenAI-style `tool_calls` of an assistant message."""
    try:
        return tuple(
            ToolCall(
                id=str(call["id"]),
                name=str(call["function"]["name"]),
                arguments=str(call["function"]["arguments"]),
            )
            for call in raw
        )
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"messages[{index}].tool_calls must be a list of {{id, function: {{name, arguments}}}}",
            field=f"messages[{index}].tool_calls",
        ) from None
