"""The one settings object, read from `LLM_MANAGER_*` environment variables and validated once.

Unsafe values are refused here, at start-up, with a message that names the variable — never
discovered deep inside a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llm_manager.errors import SettingsError

_ASYNC_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
PositiveSeconds = Annotated[float, Field(gt=0, le=3600)]


class Settings(BaseSettings):
    """Everything configurable about a running LLM Manager."""

    model_config = SettingsConfigDict(env_prefix="LLM_MANAGER_", frozen=True, extra="ignore")

    data_dir: Path = Field(default_factory=lambda: Path(user_data_dir("llm-manager", appauthor=False)))
    database_url: str = ""
    """Defaults to a SQLite file in the data directory."""
    secret_keys: SecretStr | None = None
    """Comma-separated Fernet keys, newest first. Unset: the key file in the data directory."""
    redis_url: str | None = None
    """Set it when running more than one process: rate limits and stream cancels then span them all."""
    redis_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "llm-manager:"
    """Prefix of every Redis key and channel, so several deployments can share one Redis."""

    shutdown_grace: Annotated[float, Field(ge=0, le=600)] = 20.0
    """On SIGTERM, how long open streams may run on before they are ended with an `error` event."""
    session_max_age: Annotated[int, Field(ge=300, le=30 * 86400)] = 12 * 3600
    """Seconds an admin UI sign-in lasts; sign-out, a password change or deactivation end it sooner."""
    password_hash_memory_kib: Annotated[int, Field(ge=8, le=4 * 1024 * 1024)] = 65536
    """Argon2id memory per password hash; the default (64 MiB) is argon2-cffi's, above OWASP's 19 MiB."""
    password_hash_time_cost: Annotated[int, Field(ge=1, le=20)] = 3
    sse_heartbeat: Annotated[float, Field(gt=0, le=300)] = 15.0
    """Seconds of silence after which a native SSE stream sends a comment, keeping proxies open."""

    connect_timeout: PositiveSeconds = 10.0
    upstream_max_connections: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """Upstream connections one process keeps open at once, across providers: a streamed call
    holds one for its whole length, so this bounds the concurrent calls a process can relay."""
    first_byte_timeout: PositiveSeconds = 120.0
    """How long a call may wait for its first event (reasoning models think before they speak)."""
    idle_timeout: PositiveSeconds = 120.0
    """How long a started stream may stay silent before it is abandoned."""
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_max_wait: Annotated[float, Field(ge=0, le=600)] = 30.0
    """Total time retries may wait (Retry-After included) before giving up on a configuration."""
    model_cache_ttl: Annotated[int, Field(ge=0)] = 3600
    usage_queue_size: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    usage_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 200
    usage_flush_interval: Annotated[float, Field(gt=0, le=60)] = 0.2

    @field_validator("data_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value and not value.startswith(_ASYNC_DRIVERS):
            raise ValueError(
                "LLM_MANAGER_DATABASE_URL must use an async driver: "
                "sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("LLM_MANAGER_REDIS_URL must start with redis://, rediss:// or unix://")
        return value or None

    @model_validator(mode="after")
    def _default_database(self) -> Self:
        if not self.database_url:
            object.__setattr__(
                self, "database_url", f"sqlite+aiosqlite:///{self.data_dir / 'llm-manager.db'}"
            )
        return self

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus explicit overrides), turning validation errors into one message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"LLM_MANAGER_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
