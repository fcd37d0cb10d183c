"""OpenRouter's chat, model-list and error replies as recorded, for fake upstreams.

Every body is copied from `shared/protocols/openrouter.md`, which names the recording each comes
from; labels are that file's: VERBATIM bytes, RECONSTRUCTED-ORDER (recorded values in emission
order) and RECONSTRUCTED (shape from OpenRouter's docs). What differs from OpenAI is kept as
recorded: `: OPENROUTER PROCESSING` comments, `"role":"assistant"` on every delta, a usage chunk
whose `choices` is not empty, `usage.cost`, and errors whose `code` is an integer.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from llm_manager.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    ModelNotFoundError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    UnavailableError,
)
from llm_manager.testing.fake_upstream import Reply
from llm_manager.types import ToolCall, Usage

CHAT_PATH = "/api/v1/chat/completions"
MODELS_PATH = "/api/v1/models"

_STREAM_HEADERS = (
    ("content-type", "text/event-stream"),
    ("cache-control", "no-cache"),
    ("access-control-allow-origin", "*"),
)


def base_url(server_url: str) -> str:
    return f"{server_url}/api/v1"


# -- streamed text (VERBATIM, x-ai/grok-4 via OpenRouter, recorded 2025-11) -------------------
# The protocol notes elide ~60 token chunks in the middle and most of one base64 blob; the
# elided events are left out and the blob keeps its recorded prefix, so the text is short.

_TEXT_STREAM = r""": OPENROUTER PROCESSING

: OPENROUTER PROCESSING

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":null,"reasoning_details":[{"type":"reasoning.encrypted","data":"B7oH6rUO9kQMWKmZOE/vO5bKz16j1SCeoDLf5c1J","id":"rs_619f3702-e30e-6ba5-7b57-466db8036365_us-east-1","format":"xai-responses-v1","index":0}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":"I'm"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":" Gro"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":"k"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":"?"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop","native_finish_reason":"completed","logprobs":null}]}

data: {"id":"gen-1762064096-m5VxL2xrxOREwashCey6","provider":"xAI","model":"x-ai/grok-4","object":"chat.completion.chunk","created":1762064097,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"usage":{"prompt_tokens":687,"completion_tokens":187,"total_tokens":874,"cost":0.00333825,"is_byok":false,"prompt_tokens_details":{"cached_tokens":679,"audio_tokens":0},"cost_details":{"upstream_inference_cost":null,"upstream_inference_prompt_cost":0.00053325,"upstream_inference_completions_cost":0.002805},"completion_tokens_details":{"reasoning_tokens":118,"image_tokens":0}}}

data: [DONE]

"""

TEXT_STREAM_TEXT = "I'm Grok?"
TEXT_STREAM_USAGE = Usage(
    prompt_tokens=687,
    completion_tokens=187,
    cached_tokens=679,
    reasoning_tokens=118,
    reported_cost=Decimal("0.00333825"),
)
TEXT_STREAM_CHUNKS = 4
TEXT_STREAM_MODEL = "x-ai/grok-4"


def text_stream(**reply_options: Any) -> Reply:
    return _stream(_events(_TEXT_STREAM), **reply_options)


# -- non-streamed text (RECONSTRUCTED-ORDER, openai/gpt-5-mini; long strings elided in the notes) --

_TEXT_COMPLETION = r"""{
  "id": "gen-1762789734-sxYWfPfn343ZvBkw9zV9",
  "provider": "OpenAI",
  "model": "openai/gpt-5-mini",
  "object": "chat.completion",
  "created": 1762789734,
  "choices": [
    {
      "logprobs": null,
      "finish_reason": "stop",
      "native_finish_reason": "completed",
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "Here’s a concise but thorough overview of Mars …",
        "refusal": null,
        "reasoning": "**Discussing Mars …**",
        "reasoning_details": [
          {"type": "reasoning.summary", "summary": "…", "format": "openai-responses-v1", "index": 0},
          {"type": "reasoning.encrypted", "data": "gAAAAABpEgl8…", "id": "rs_029b1b33873fe02b0169120967d9a88197af3d9f4db7a92055", "format": "openai-responses-v1", "index": 0}
        ]
      }
    }
  ],
  "usage": {
    "prompt_tokens": 17,
    "completion_tokens": 2177,
    "total_tokens": 2194,
    "cost": 0.00435825,
    "is_byok": false,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0, "video_tokens": 0},
    "cost_details": {"upstream_inference_cost": null, "upstream_inference_prompt_cost": 4.25e-06, "upstream_inference_completions_cost": 0.004354},
    "completion_tokens_details": {"reasoning_tokens": 960, "image_tokens": 0}
  }
}
"""

TEXT_COMPLETION_TEXT = "Here’s a concise but thorough overview of Mars …"
TEXT_COMPLETION_USAGE = Usage(
    prompt_tokens=17,
    completion_tokens=2177,
    reasoning_tokens=960,
    reported_cost=Decimal("0.00435825"),
)


def text_completion() -> Reply:
    return _json(_TEXT_COMPLETION)


# -- streamed tool call --------------------------------------------------------------------------
# RECONSTRUCTED: the notes say tool calls stream exactly like OpenAI's; this puts the recorded
# non-streamed Mistral call (its id, name and arguments) into OpenRouter's recorded chunk shape.
# The cost figures are illustrative.

_TOOL_CALL_STREAM = r""": OPENROUTER PROCESSING

data: {"id":"gen-1762047030-dJUcJW4ildNGqK4UV6iJ","provider":"Mistral","model":"mistralai/mistral-small","object":"chat.completion.chunk","created":1762047030,"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"id":"3sniiMddS","index":0,"type":"function","function":{"name":"divide","arguments":""}}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762047030-dJUcJW4ildNGqK4UV6iJ","provider":"Mistral","model":"mistralai/mistral-small","object":"chat.completion.chunk","created":1762047030,"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"index":0,"function":{"arguments":"{\"numerator\": 123, "}}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762047030-dJUcJW4ildNGqK4UV6iJ","provider":"Mistral","model":"mistralai/mistral-small","object":"chat.completion.chunk","created":1762047030,"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"index":0,"function":{"arguments":"\"denominator\": 456, \"on_inf\": \"infinity\"}"}}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762047030-dJUcJW4ildNGqK4UV6iJ","provider":"Mistral","model":"mistralai/mistral-small","object":"chat.completion.chunk","created":1762047030,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"tool_calls","native_finish_reason":"tool_calls","logprobs":null}]}

data: {"id":"gen-1762047030-dJUcJW4ildNGqK4UV6iJ","provider":"Mistral","model":"mistralai/mistral-small","object":"chat.completion.chunk","created":1762047030,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"usage":{"prompt_tokens":134,"completion_tokens":43,"total_tokens":177,"cost":0.0000263,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"cost_details":{"upstream_inference_cost":null,"upstream_inference_prompt_cost":0.0000134,"upstream_inference_completions_cost":0.0000129},"completion_tokens_details":{"reasoning_tokens":0,"image_tokens":0}}}

data: [DONE]

"""

TOOL_CALL_STREAM_CALLS = (
    ToolCall(
        id="3sniiMddS",
        name="divide",
        arguments='{"numerator": 123, "denominator": 456, "on_inf": "infinity"}',
    ),
)
TOOL_CALL_STREAM_USAGE = Usage(prompt_tokens=134, completion_tokens=43, reported_cost=Decimal("0.0000263"))


def tool_call_stream(**reply_options: Any) -> Reply:
    return _stream(_events(_TOOL_CALL_STREAM), **reply_options)


# -- errors --------------------------------------------------------------------------------------

# RECONSTRUCTED: OpenRouter's documented "Provider returned error" shape for an upstream 400.
_BAD_REQUEST = r"""{"error":{"message":"Provider returned error","code":400,"metadata":{"raw":"{\"error\":{\"message\":\"Invalid schema for function 'divide': 'integer' is not a valid type.\",\"type\":\"invalid_request_error\",\"param\":\"tools[0].function.parameters\",\"code\":\"invalid_function_parameters\"}}","provider_name":"OpenAI"}},"user_id":"user_2wT5ElBE4Es3R4QrNLpZiXICmQP"}"""
# RECONSTRUCTED: a 502 "model down" in the documented error shape.
_UNAVAILABLE = r"""{"error":{"message":"Network connection lost.","code":502,"metadata":{"error_type":"provider_unavailable"}}}"""
# RECONSTRUCTED from the documented moderation-error metadata (reasons, flagged_input, ...).
_MODERATION = r"""{"error":{"code":403,"message":"Your chosen model requires moderation and your input was flagged","metadata":{"reasons":["harassment"],"flagged_input":"...","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}}}"""
# VERBATIM bodies (their sources are named in the protocol notes).
_AUTHENTICATION = r"""{"error":{"message":"No auth credentials found","code":401}}
"""
_QUOTA = r"""{"error":{"message":"Insufficient credits. This account never purchased credits. Make sure your key is on the correct account or org, and if so, purchase more at https://openrouter.ai/settings/credits","code":402}}
"""
_RATE_LIMITED = r"""{"error":{"message":"Provider returned error","code":429,"metadata":{"raw":"google/gemini-2.0-flash-exp:free is temporarily rate-limited upstream. Please retry shortly, or add your own key to accumulate your rate limits: https://openrouter.ai/settings/integrations","provider_name":"Google"}},"user_id":"user_2wT5ElBE4Es3R4QrNLpZiXICmQP"}
"""
_CONTEXT_LENGTH = r"""{"error":{"message":"This endpoint's maximum context length is 131072 tokens. However, you requested about 141607 tokens (10535 of text input, 131072 in the output). Please reduce the length of either one, or use the \"middle-out\" transform to compress your prompt automatically.","code":400,"metadata":{"provider_name":"Chutes"}}}
"""
_MODEL_NOT_FOUND = r"""{"error":{"message":"No endpoints found for this model.","code":404},"user_id":"user_2lBakZZi7xxxxxxxxxxbTJ4"}
"""
_ERRORS: dict[str, tuple[int, str]] = {
    "authentication": (401, _AUTHENTICATION),
    "quota": (402, _QUOTA),
    "rate_limited": (429, _RATE_LIMITED),
    "context_length": (400, _CONTEXT_LENGTH),
    "model_not_found": (404, _MODEL_NOT_FOUND),
    "bad_request": (400, _BAD_REQUEST),
    "unavailable": (502, _UNAVAILABLE),
    "moderation": (403, _MODERATION),
}

ERROR_KINDS: dict[str, type[ProviderError]] = {
    "authentication": AuthenticationError,
    "quota": QuotaExceededError,
    "rate_limited": RateLimitedError,
    "context_length": ContextLengthExceededError,
    "model_not_found": ModelNotFoundError,
    "bad_request": BadRequestError,
    "unavailable": UnavailableError,
    "moderation": BadRequestError,
}


def error_reply(kind: str, *, retry_after: str | None = None) -> Reply:
    status, body = _ERRORS[kind]
    headers = (("retry-after", retry_after),) if retry_after is not None else ()
    return _json(body, status=status, headers=headers)


# VERBATIM (minimax/minimax-m2:free, recorded 2025-11): reasoning only, then an ordinary chunk
# that also carries `error` (integer code) and the call's `usage`, then [DONE].
_MID_STREAM_ERROR_RECORDED = r""": OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

: OPENROUTER PROCESSING

data: {"id":"gen-1762179802-UN8pkJI4AGZvryk0kFnb","provider":"Minimax","model":"minimax/minimax-m2:free","object":"chat.completion.chunk","created":1762179802,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"We need","reasoning_details":[{"type":"reasoning.text","text":"We need","index":0,"format":null}]},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}

data: {"id":"gen-1762179802-UN8pkJI4AGZvryk0kFnb","provider":"Minimax","model":"minimax/minimax-m2:free","object":"chat.completion.chunk","created":1762179802,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":" to respond to a greeting. The user","reasoning_details":[{"type":"reasoning.text","text":" to respond to a greeting. The user","index":0,"format":null}]},"finish_reason":"length","native_finish_reason":"length","logprobs":null}]}

data: {"id":"gen-1762179802-UN8pkJI4AGZvryk0kFnb","provider":"Minimax","model":"minimax/minimax-m2:free","object":"chat.completion.chunk","created":1762179802,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":null,"reasoning_details":[]},"finish_reason":"length","native_finish_reason":"length","logprobs":null}]}

data: {"id":"gen-1762179802-UN8pkJI4AGZvryk0kFnb","provider":"Minimax","error":{"code":400,"message":"Token limit reached"},"model":"minimax/minimax-m2:free","object":"chat.completion.chunk","created":1762179802,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"usage":{"prompt_tokens":43,"completion_tokens":10,"total_tokens":53,"cost":0,"is_byok":false,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"cost_details":{"upstream_inference_cost":null,"upstream_inference_prompt_cost":0,"upstream_inference_completions_cost":0},"completion_tokens_details":{"reasoning_tokens":11,"image_tokens":0}}}

data: [DONE]

"""

MID_STREAM_ERROR_TEXT = "I'm Grok"
MID_STREAM_ERROR_CLASS: type[ProviderError] = BadRequestError
MID_STREAM_ERROR_USAGE = Usage(
    prompt_tokens=43, completion_tokens=10, reasoning_tokens=11, reported_cost=Decimal(0)
)


def mid_stream_error(**reply_options: Any) -> Reply:
    """Text, then an error: the text stream's first events spliced onto the recorded error events.

    The recording with the error streamed no text, so the text comes from the other recording;
    each event is verbatim, only their ids differ.
    """
    text = [event for event in _events(_TEXT_STREAM) if b"data: " in event][:5]
    recorded = _events(_MID_STREAM_ERROR_RECORDED)
    errors = [event for event in recorded if b'"error"' in event or b"[DONE]" in event]
    return _stream([b": OPENROUTER PROCESSING\n\n", *text, *errors], **reply_options)


def mid_stream_error_recorded(**reply_options: Any) -> Reply:
    """The whole recording, keep-alive comments and reasoning included."""
    return _stream(_events(_MID_STREAM_ERROR_RECORDED), **reply_options)


# -- models (RECONSTRUCTED from OpenRouter's model-list docs; prices are USD per token, as strings) --

_MODELS = r"""{
  "data": [
    {
      "id": "openai/gpt-4",
      "canonical_slug": "openai/gpt-4",
      "hugging_face_id": "",
      "name": "OpenAI: GPT-4",
      "created": 1692901234,
      "description": "GPT-4 is a large multimodal model that can solve difficult problems with greater accuracy.",
      "context_length": 8192,
      "architecture": {
        "modality": "text->text",
        "input_modalities": ["text"],
        "output_modalities": ["text"],
        "tokenizer": "GPT",
        "instruct_type": null
      },
      "pricing": {
        "prompt": "0.00003",
        "completion": "0.00006",
        "request": "0",
        "image": "0",
        "web_search": "0",
        "internal_reasoning": "0",
        "input_cache_read": "0",
        "input_cache_write": "0"
      },
      "top_provider": {"context_length": 8192, "max_completion_tokens": 4096, "is_moderated": true},
      "per_request_limits": null,
      "supported_parameters": ["temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty", "tools", "tool_choice"],
      "default_parameters": null
    }
  ]
}
"""

MODEL_IDS = ("openai/gpt-4",)


def models_reply() -> Reply:
    return _json(_MODELS)


# -- helpers -------------------------------------------------------------------------------------


def _events(recording: str) -> tuple[bytes, ...]:
    """One chunk per SSE event or comment, each with its terminating blank line, as recorded."""
    return tuple(f"{event}\n\n".encode() for event in recording.split("\n\n") if event)


def _stream(events: Sequence[bytes], **reply_options: Any) -> Reply:
    return Reply(headers=_STREAM_HEADERS, chunks=tuple(events), streamed=True, **reply_options)


def _json(body: str, *, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Reply:
    return Reply(
        status=status, headers=(("content-type", "application/json"), *headers), chunks=(body.encode(),)
    )
