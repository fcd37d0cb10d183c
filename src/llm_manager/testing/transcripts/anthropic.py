r"""Anthropic Messages API replies, byte for byte as recorded (`shared/protocols/anthropic.md`).

Each SSE event is one chunk, so `drop_after=n` cuts the stream after n events. Transcripts marked
[VERBATIM] are copied exactly, including the spaces the live API pads some `data:` JSON with
before its final `}`; [RECONSTRUCTED] bodies keep the documented field names and key order.
"""

from __future__ import annotations

from typing import Any

from llm_manager.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    RateLimitedError,
    UnavailableError,
)
from llm_manager.testing.fake_upstream import Reply
from llm_manager.types import ToolCall, Usage

CHAT_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
STREAM_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def base_url(server_url: str) -> str:
    """The adapter's base URL for a fake server: the API lives at its root."""
    return server_url


def _events(transcript: str) -> tuple[bytes, ...]:
    """Split a transcript into one chunk per SSE event, each ending in its blank line."""
    return tuple(f"{event}\n\n".encode() for event in transcript.strip("\n").split("\n\n"))


def _stream(transcript: str, reply_options: dict[str, Any]) -> Reply:
    return Reply.sse(_events(transcript), content_type=STREAM_CONTENT_TYPE, **reply_options)


# [VERBATIM] simonw/llm-anthropic tests/cassettes/test_anthropic/test_prompt.yaml (live, 2026-02-17).
_TEXT_STREAM = r"""
event: message_start
data: {"type":"message_start","message":{"model":"claude-sonnet-4-5-20250929","id":"msg_017A4s3HAsrqf5d2WvBmrpLr","type":"message","role":"assistant","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":17,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":1,"service_tier":"standard","inference_geo":"not_available"}}               }

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}   }

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"-"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" Captain"}          }

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\n- Sc"}    }

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"oop"}     }

event: content_block_stop
data: {"type":"content_block_stop","index":0             }

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":17,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":10}        }

event: message_stop
data: {"type":"message_stop" }
"""
TEXT_STREAM_TEXT = "- Captain\n- Scoop"
TEXT_STREAM_USAGE = Usage(prompt_tokens=17, completion_tokens=10)
TEXT_STREAM_CHUNKS = 4
TEXT_STREAM_MODEL = "claude-sonnet-4-5-20250929"


def text_stream(**reply_options: Any) -> Reply:
    return _stream(_TEXT_STREAM, reply_options)


# [RECONSTRUCTED-ORDER] pydantic-ai test_anthropic_model_instructions.yaml; values verbatim.
_TEXT_COMPLETION = (
    b'{"id":"msg_01Fg1JVgvCYUHWsxrj9GkpEv","type":"message","role":"assistant",'
    b'"model":"claude-3-opus-20240229","content":[{"type":"text","text":"The capital of France is Paris."}],'
    b'"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":20,'
    b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
    b'"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},'
    b'"output_tokens":10,"service_tier":"standard"}}'
)
TEXT_COMPLETION_TEXT = "The capital of France is Paris."
TEXT_COMPLETION_USAGE = Usage(prompt_tokens=20, completion_tokens=10)


def text_completion() -> Reply:
    return Reply.json(_TEXT_COMPLETION)


# [VERBATIM] anthropic-sdk-python tests/lib/streaming/fixtures/tool_use_response.txt.
_TOOL_CALL_STREAM = r"""
event: message_start
data: {"type":"message_start","message":{"id":"msg_019Q1hrJbZG26Fb9BQhrkHEr","type":"message","role":"assistant","model":"claude-sonnet-4-20250514","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":377,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"'ll check the current weather in Paris for you."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01NRLabsLyVHZPKxbKvkfSMn","name":"get_weather","caller":{"type":"direct"},"input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"locati"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"on\": \"P"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ar"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"is\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":65}}

event: message_stop
data: {"type":"message_stop"}
"""
TOOL_CALL_STREAM_TEXT = "I'll check the current weather in Paris for you."
TOOL_CALL_STREAM_CALLS = (
    ToolCall(id="toolu_01NRLabsLyVHZPKxbKvkfSMn", name="get_weather", arguments='{"location": "Paris"}'),
)
TOOL_CALL_STREAM_USAGE = Usage(prompt_tokens=377, completion_tokens=65)


def tool_call_stream(**reply_options: Any) -> Reply:
    return _stream(_TOOL_CALL_STREAM, reply_options)


# Bodies [VERBATIM] from the issues named in anthropic.md §6, except `unavailable` (api_error,
# RECONSTRUCTED from the documented error table).
_RATE_LIMIT_MESSAGE = (
    "This request would exceed the rate limit for your organization (---) of 20,000 input tokens per "
    "minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the "
    "response headers for current usage. Please reduce the prompt length or the maximum tokens "
    "requested, or try again later. You may also contact sales at "
    "https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."
)
_ERRORS: dict[str, tuple[int, bytes]] = {
    "authentication": (
        401,
        b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
    ),
    "rate_limited": (
        429,
        b'{"type":"error","error":{"type":"rate_limit_error","message":"%s"}}' % _RATE_LIMIT_MESSAGE.encode(),
    ),
    "overloaded": (
        529,
        b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded. '
        b'https://docs.claude.com/en/api/errors"},"request_id":"req_011CZTEFvft13DajMTp9pp64"}',
    ),
    "context_length": (
        400,
        b'{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: '
        b'208310 tokens > 200000 maximum"},"request_id":"req_011CVQe1dLrGNMJyE1ghG1av"}',
    ),
    "model_not_found": (
        404,
        b'{"type":"error","error":{"type":"not_found_error","message":"model: claude-does-not-exist"},'
        b'"request_id":"req_011CVEA3SF7rnb3DuBZytqQa"}',
    ),
    "bad_request": (
        400,
        b'{"type":"error","error":{"type":"invalid_request_error","message":"This model does not '
        b"support effort level 'xhigh'. Supported levels: high, low, max, medium.\"},"
        b'"request_id":"req_011Ca7jT9AHpgXgdv8igm4z9"}',
    ),
    "unavailable": (
        500,
        b'{"type":"error","error":{"type":"api_error","message":"Internal server error"}}',
    ),
}
ERROR_KINDS: dict[str, type[ProviderError]] = {
    "authentication": AuthenticationError,
    "rate_limited": RateLimitedError,
    "overloaded": OverloadedError,
    "context_length": ContextLengthExceededError,
    "model_not_found": ModelNotFoundError,
    "bad_request": BadRequestError,
    "unavailable": UnavailableError,
}


def error_reply(kind: str, *, retry_after: str | None = None) -> Reply:
    status, body = _ERRORS[kind]
    headers = (("retry-after", retry_after),) if retry_after is not None else ()
    return Reply.json(body, status=status, headers=headers)


# The opening of basic_response.txt [VERBATIM], then the `event: error` bytes [VERBATIM,
# anthropic-sdk-python tests/test_streaming.py]; the placement is RECONSTRUCTED.
_MID_STREAM_ERROR = r"""
event: message_start
data: {"type":"message_start","message":{"id":"msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK","type":"message","role":"assistant","content":[],"model":"claude-3-opus-latest","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":11,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}

event: error
data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
"""
MID_STREAM_ERROR_TEXT = "Hello there"
MID_STREAM_ERROR_CLASS: type[ProviderError] = OverloadedError


def mid_stream_error(**reply_options: Any) -> Reply:
    return _stream(_MID_STREAM_ERROR, reply_options)


# [RECONSTRUCTED] from the API reference and the SDK's types/model_info.py.
_MODELS = (
    b'{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5",'
    b'"created_at":"2025-09-29T00:00:00Z"},{"type":"model","id":"claude-haiku-4-5-20251001",'
    b'"display_name":"Claude Haiku 4.5","created_at":"2025-10-01T00:00:00Z","max_input_tokens":200000,'
    b'"max_tokens":64000}],"has_more":false,"first_id":"claude-sonnet-4-5-20250929",'
    b'"last_id":"claude-haiku-4-5-20251001"}'
)
MODEL_IDS = ("claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")


def models_reply() -> Reply:
    return Reply.json(_MODELS)
