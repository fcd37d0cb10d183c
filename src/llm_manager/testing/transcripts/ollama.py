"""Ollama native API replies, byte for byte as documented (`shared/protocols/ollama.md`).

Each NDJSON line is one chunk, so `drop_after=n` cuts the stream after n lines. Ollama publishes no
raw captures: its streamed lines are RECONSTRUCTED in the Go struct order the server emits, with
documented values. Pretty-printed doc bodies are sent compact, as the server (gin `c.JSON`) does.
"""

from __future__ import annotations

from typing import Any

from llm_manager.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderError,
    RateLimitedError,
    UnavailableError,
)
from llm_manager.testing.fake_upstream import Reply
from llm_manager.types import ToolCall, Usage

CHAT_PATH = "/api/chat"
EMBED_PATH = "/api/embed"
MODELS_PATH = "/api/tags"
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def base_url(server_url: str) -> str:
    """The adapter's base URL for a fake server: the API lives at its root."""
    return server_url


def _lines(transcript: str) -> tuple[bytes, ...]:
    return tuple(f"{line}\n".encode() for line in transcript.strip("\n").split("\n"))


def _json(body: bytes, *, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status=status, headers=(("content-type", JSON_CONTENT_TYPE), *headers), chunks=(body,))


# The first three lines and the final metrics are docs/api.md "Chat request (Streaming)"; the
# " blue" and "." lines extend the excerpt in the same shape so a stream has five text chunks.
_TEXT_STREAM = """
{"model":"llama3.2","created_at":"2023-08-04T08:52:19.385406455-07:00","message":{"role":"assistant","content":"The"},"done":false}
{"model":"llama3.2","created_at":"2023-08-04T08:52:19.397234651-07:00","message":{"role":"assistant","content":" sky"},"done":false}
{"model":"llama3.2","created_at":"2023-08-04T08:52:19.409871233-07:00","message":{"role":"assistant","content":" is"},"done":false}
{"model":"llama3.2","created_at":"2023-08-04T08:52:19.421903771-07:00","message":{"role":"assistant","content":" blue"},"done":false}
{"model":"llama3.2","created_at":"2023-08-04T08:52:19.433852097-07:00","message":{"role":"assistant","content":"."},"done":false}
{"model":"llama3.2","created_at":"2023-08-04T19:22:45.499127Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}
"""
TEXT_STREAM_TEXT = "The sky is blue."
TEXT_STREAM_USAGE = Usage(prompt_tokens=26, completion_tokens=282)
TEXT_STREAM_CHUNKS = 5
TEXT_STREAM_MODEL = "llama3.2"


def text_stream(**reply_options: Any) -> Reply:
    return Reply.ndjson(_lines(_TEXT_STREAM), **reply_options)


_TEXT_COMPLETION = (
    b'{"model":"llama3.2","created_at":"2023-12-12T14:13:43.416799Z","message":{"role":"assistant",'
    b'"content":"Hello! How are you today?"},"done":true,"done_reason":"stop","total_duration":5191566416,'
    b'"load_duration":2154458,"prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":298,'
    b'"eval_duration":4799921000}'
)
TEXT_COMPLETION_TEXT = "Hello! How are you today?"
TEXT_COMPLETION_USAGE = Usage(prompt_tokens=26, completion_tokens=298)


def text_completion() -> Reply:
    return _json(_TEXT_COMPLETION)


# docs/api.md "Chat request (Streaming with tools)" with the `id` and `function.index` the current
# server adds. A tool call arrives whole in one line, `arguments` as an object.
_TOOL_CALL_STREAM = """
{"model":"llama3.2","created_at":"2025-07-07T20:22:19.184789Z","message":{"role":"assistant","content":"","tool_calls":[{"id":"call_k3h8s0qz","function":{"index":0,"name":"get_weather","arguments":{"city":"Tokyo"}}}]},"done":false}
{"model":"llama3.2","created_at":"2025-07-07T20:22:19.19314Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":182242375,"load_duration":41295167,"prompt_eval_count":169,"prompt_eval_duration":24573166,"eval_count":15,"eval_duration":115959084}
"""
TOOL_CALL_STREAM_CALLS = (ToolCall(id="call_k3h8s0qz", name="get_weather", arguments='{"city":"Tokyo"}'),)
TOOL_CALL_STREAM_USAGE = Usage(prompt_tokens=169, completion_tokens=15)


def tool_call_stream(**reply_options: Any) -> Reply:
    return Reply.ndjson(_lines(_TOOL_CALL_STREAM), **reply_options)


# Bodies from server/routes.go and docs/api/errors.mdx, as listed in ollama.md §7. Ollama cloud's
# 401 and 429 bodies are undocumented: their messages are the ones clients print (continuedev/continue
# #11405, #9233), wrapped in the documented `{"error"}` shape.
_ERRORS: dict[str, tuple[int, bytes]] = {
    "authentication": (401, b'{"error":"unauthorized"}'),
    "rate_limited": (
        429,
        b'{"error":"you\'ve reached your hourly usage limit, please wait or upgrade to continue"}',
    ),
    "context_length": (400, b'{"error":"the input length exceeds the context length"}'),
    "model_not_found": (404, b'{"error":"model \\"llama3\\" not found, try pulling it first"}'),
    "bad_request": (400, b'{"error":"model is required"}'),
    "unavailable": (
        503,
        b'{"error":"server busy, please try again.  maximum pending requests exceeded"}',
    ),
}
ERROR_KINDS: dict[str, type[ProviderError]] = {
    "authentication": AuthenticationError,
    "rate_limited": RateLimitedError,
    "context_length": ContextLengthExceededError,
    "model_not_found": ModelNotFoundError,
    "bad_request": BadRequestError,
    "unavailable": UnavailableError,
}


def error_reply(kind: str, *, retry_after: str | None = None) -> Reply:
    status, body = _ERRORS[kind]
    headers = (("retry-after", retry_after),) if retry_after is not None else ()
    return _json(body, status=status, headers=headers)


# The error line is docs/api/errors.mdx verbatim; the text lines before it are the same recording's
# values in /api/chat shape (the doc shows them from /api/generate).
_MID_STREAM_ERROR = """
{"model":"gemma4","created_at":"2025-10-26T17:21:21.196249Z","message":{"role":"assistant","content":" Yes"},"done":false}
{"model":"gemma4","created_at":"2025-10-26T17:21:21.207235Z","message":{"role":"assistant","content":"."},"done":false}
{"model":"gemma4","created_at":"2025-10-26T17:21:21.219166Z","message":{"role":"assistant","content":"I"},"done":false}
{"model":"gemma4","created_at":"2025-10-26T17:21:21.231094Z","message":{"role":"assistant","content":"can"},"done":false}
{"error":"an error was encountered while running the model"}
"""
MID_STREAM_ERROR_TEXT = " Yes.Ican"
MID_STREAM_ERROR_CLASS: type[ProviderError] = UnavailableError


def mid_stream_error(**reply_options: Any) -> Reply:
    return Reply.ndjson(_lines(_MID_STREAM_ERROR), **reply_options)


# docs/api.md "List Local Models", sent compact.
_MODELS = (
    b'{"models":[{"name":"deepseek-r1:latest","model":"deepseek-r1:latest",'
    b'"modified_at":"2025-05-10T08:06:48.639712648-07:00","size":4683075271,'
    b'"digest":"0a8c266910232fd3291e71e5ba1e058cc5af9d411192cf88b6d30e92b6e73163",'
    b'"details":{"parent_model":"","format":"gguf","family":"qwen2","families":["qwen2"],'
    b'"parameter_size":"7.6B","quantization_level":"Q4_K_M"}},'
    b'{"name":"llama3.2:latest","model":"llama3.2:latest","modified_at":"2025-05-04T17:37:44.706015396-07:00",'
    b'"size":2019393189,"digest":"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",'
    b'"details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],'
    b'"parameter_size":"3.2B","quantization_level":"Q4_K_M"}}]}'
)
MODEL_IDS = ("deepseek-r1:latest", "llama3.2:latest")


def models_reply() -> Reply:
    return _json(_MODELS)


# docs/api.md "Generate Embeddings", sent compact.
_EMBEDDINGS = (
    b'{"model":"all-minilm","embeddings":[[0.010071029,-0.0017594862,0.05007221,0.04692972,0.054916814,'
    b"0.008599704,0.105441414,-0.025878139,0.12958129,0.031952348]],"
    b'"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}'
)
EMBEDDINGS_VECTORS = (
    (
        0.010071029,
        -0.0017594862,
        0.05007221,
        0.04692972,
        0.054916814,
        0.008599704,
        0.105441414,
        -0.025878139,
        0.12958129,
        0.031952348,
    ),
)
EMBEDDINGS_USAGE = Usage(prompt_tokens=8)


def embeddings_reply() -> Reply:
    return _json(_EMBEDDINGS)
