"""Every exception LLM Manager raises, in one tree.

```
LLMManagerError
├── SettingsError                  unsafe or invalid settings, refused at start-up
├── InvalidInputError              bad input from a caller (names the field)
│   └── InvalidParameterError      a generation parameter out of range or unknown
├── NotFoundError                  a configuration, application, ... that does not exist
├── ConflictError                  a unique name already taken, a cycle in fallbacks
├── SecretError                    a secret that cannot be decrypted with the key ring
├── UnauthenticatedError           no credentials, or a token that is unknown, revoked or expired
├── PermissionDeniedError          the caller may not do this (a token outside its scope)
├── GuardRefusedError              a guard refused the call before any money was spent
│   ├── BudgetExceededError        a hard budget would be overrun (or cannot be checked)
│   ├── RateLimitExceededError     requests or tokens per minute used up
│   └── SignInThrottledError       too many failed sign-ins for an account or an address
└── ProviderError                  an upstream API failed; `retryable` says if trying again may help
    ├── AuthenticationError        key missing, wrong or revoked (401/403)
    ├── RateLimitedError           429 with an optional `retry_after`
    ├── QuotaExceededError         429 "insufficient_quota": retrying cannot help
    ├── OverloadedError            529 / 503 "overloaded"
    ├── ContextLengthExceededError the prompt does not fit the model
    ├── ModelNotFoundError         404 on the model
    ├── BadRequestError            any other 4xx
    ├── UpstreamTimeoutError       no first byte, or the stream went idle, in time
    └── UnavailableError           5xx, connection refused or dropped mid-stream
```

Adapters translate upstream failures into this tree at the boundary (`providers/_wire.py`);
nothing else catches broadly. Messages never contain secrets: adapters redact them first.
"""

from __future__ import annotations


class LLMManagerError(Exception):
    """Base of every error raised by LLM Manager."""

    code: str = "llm_manager_error"


class SettingsError(LLMManagerError):
    code = "invalid_settings"


class InvalidInputError(LLMManagerError):
    """Bad input; `field` names what was wrong so surfaces can point at it."""

    code = "invalid_input"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidParameterError(InvalidInputError):
    code = "invalid_parameter"


class NotFoundError(LLMManagerError):
    code = "not_found"


class ConflictError(LLMManagerError):
    code = "conflict"


class SecretError(LLMManagerError):
    code = "secret_error"


class UnauthenticatedError(LLMManagerError):
    code = "invalid_api_key"


class PermissionDeniedError(LLMManagerError):
    code = "permission_denied"


class GuardRefusedError(LLMManagerError):
    """A guard refused the call before any money was spent."""

    code = "refused"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExceededError(GuardRefusedError):
    code = "budget_exceeded"


class RateLimitExceededError(GuardRefusedError):
    code = "rate_limit_exceeded"


class SignInThrottledError(GuardRefusedError):
    code = "too_many_sign_in_attempts"


class ProviderError(LLMManagerError):
    """An upstream API failed. Carries what retry and accounting logic need."""

    code = "provider_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        upstream_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.upstream_code = upstream_code
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"status_code={self.status_code!r})"
        )


class AuthenticationError(ProviderError):
    code = "authentication_error"


class RateLimitedError(ProviderError):
    code = "rate_limited"
    retryable = True


class QuotaExceededError(ProviderError):
    code = "quota_exceeded"


class OverloadedError(ProviderError):
    code = "overloaded"
    retryable = True


class ContextLengthExceededError(ProviderError):
    code = "context_length_exceeded"


class ModelNotFoundError(ProviderError):
    code = "model_not_found"


class BadRequestError(ProviderError):
    code = "bad_request"


class UpstreamTimeoutError(ProviderError):
    code = "timeout"
    retryable = True


class UnavailableError(ProviderError):
    code = "unavailable"
    retryable = True
