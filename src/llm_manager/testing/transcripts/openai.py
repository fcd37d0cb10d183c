"""OpenAI's Chat Completions, Embeddings and Models replies as recorded, for fake upstreams.

Every body is copied from `shared/protocols/openai.md`, which names the recording each comes
from; the labels below are that file's: VERBATIM bytes, RECONSTRUCTED-ORDER (recorded values in
OpenAI's key order) and RECONSTRUCTED (shape from the API reference). A stream is kept as the
recorded text and split into one chunk per SSE event, so `chunk_delay` paces events the way the
upstream did. The same replies feed our adapter and the official SDK in the fidelity tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llm_manager.errors import (
    AuthenticationError,
    BadRequestError,
    ContextLengthExceededError,
    ModelNotFoundError,
    OverloadedError,
    ProviderError,
    QuotaExceededError,
    RateLimitedError,
    UnavailableError,
)
from llm_manager.testing.fake_upstream import Reply
from llm_manager.types import ToolCall, Usage

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
MODELS_PATH = "/v1/models"

_STREAM_HEADERS = (
    ("content-type", "text/event-stream; charset=utf-8"),
    ("openai-processing-ms", "290"),
    ("openai-version", "2020-10-01"),
)


def base_url(server_url: str) -> str:
    return f"{server_url}/v1"


# -- streamed text (VERBATIM, gpt-4o-mini, recorded 2026; with `usage:null` and `obfuscation`) --

_TEXT_STREAM = r"""data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"HM7mrUsjk"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":"The"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"auU6fTns"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":" capital"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"oHb"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":" of"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"CduGPpSo"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"uYGzrM6"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":" UK"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"OYcXbxcY"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":" is"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"fcc4yi1x"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":" London"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"A4Z2"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"content":"."},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Jovwz5hY6J"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"RTaww"}

data: {"id":"chatcmpl-Dx0Xq5Xx9rHB2ehcHZCRDsnuymUXc","object":"chat.completion.chunk","created":1782955818,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[],"usage":{"prompt_tokens":78,"completion_tokens":9,"total_tokens":87,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"dhWUdLZO659"}

data: [DONE]

"""

TEXT_STREAM_TEXT = "The capital of the UK is London."
TEXT_STREAM_USAGE = Usage(prompt_tokens=78, completion_tokens=9)
TEXT_STREAM_CHUNKS = 8
TEXT_STREAM_MODEL = "gpt-4o-mini-2024-07-18"


def text_stream(**reply_options: Any) -> Reply:
    return _stream(_events(_TEXT_STREAM), **reply_options)


def text_stream_without_usage(**reply_options: Any) -> Reply:
    """The same stream without its usage chunk, as servers that ignore `include_usage` send it
    (llama.cpp's server); derived from the recording above by dropping that one event."""
    events = [event for event in _events(_TEXT_STREAM) if b'"choices":[]' not in event]
    return _stream(events, **reply_options)


# -- non-streamed text (RECONSTRUCTED-ORDER, o3-mini) ------------------------------------------

_TEXT_COMPLETION = r"""{
  "id": "chatcmpl-BJyAKqCjJI3mIdQmTSW6UlG6NKpjm",
  "object": "chat.completion",
  "created": 1744099208,
  "model": "o3-mini-2025-01-31",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "That's right—I am a potato! A spud of many talents, here to help you out. How can this humble potato be of service today?",
        "refusal": null,
        "annotations": []
      },
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 11,
    "completion_tokens": 809,
    "total_tokens": 820,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 768, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
  },
  "service_tier": "default",
  "system_fingerprint": "fp_617f206dd9"
}
"""

TEXT_COMPLETION_TEXT = "That's right—I am a potato! A spud of many talents, here to help you out. How can this humble potato be of service today?"
TEXT_COMPLETION_USAGE = Usage(prompt_tokens=11, completion_tokens=809, reasoning_tokens=768)


def text_completion() -> Reply:
    return _json(_TEXT_COMPLETION)


# -- tool calls --------------------------------------------------------------------------------

# VERBATIM, gpt-4o-mini, recorded 2026: one call, its arguments streamed in fragments.
_TOOL_CALL_STREAM = r"""data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_ZR5UUuTt3pf61kjwAJIYdVMj","type":"function","function":{"name":"get_capital","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"C63r"}

data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"qfQVOwfh62oUst"}

data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"country"}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"UqdZk18gUR"}

data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":\""}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"76zA6BxgBTLA"}

data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"UK"}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"QpK3qslFTUGILk1"}

data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"H5PIzYSIGNFGWO"}

data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null,"obfuscation":"VskHzNI7KMRUodI"}

data: {"id":"chatcmpl-Dx0XpqH8w09uBXwq1zFGYdETjtnEl","object":"chat.completion.chunk","created":1782955817,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_d0469e1700","choices":[],"usage":{"prompt_tokens":53,"completion_tokens":15,"total_tokens":68,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"khVgg3RsaN"}

data: [DONE]

"""

TOOL_CALL_STREAM_CALLS = (
    ToolCall(id="call_ZR5UUuTt3pf61kjwAJIYdVMj", name="get_capital", arguments='{"country":"UK"}'),
)
TOOL_CALL_STREAM_USAGE = Usage(prompt_tokens=53, completion_tokens=15)


def tool_call_stream(**reply_options: Any) -> Reply:
    return _stream(_events(_TOOL_CALL_STREAM), **reply_options)


# VERBATIM, gpt-4o-2024-08-06, recorded 2024: two parallel calls, each starting a new `index`.
_PARALLEL_TOOL_CALL_STREAM = r"""data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_JMW1whyEaYG438VE1OIflxA2","type":"function","function":{"name":"GetWeatherArgs","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": "}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Edinb"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"urgh"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\", \"c"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ountry"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\": \""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"GB\", "}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"units"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\": \""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"c\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_DNYTawLBoN8fj3KN6qU9N1Ou","type":"function","function":{"name":"get_stock_price","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"ti"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"cker\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":": \"AAP"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"L\", "}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"exch"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"ange\":"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" \"NA"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"SDAQ\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[],"usage":{"prompt_tokens":149,"completion_tokens":60,"total_tokens":209,"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

"""

PARALLEL_TOOL_CALL_STREAM_CALLS = (
    ToolCall(
        id="call_JMW1whyEaYG438VE1OIflxA2",
        name="GetWeatherArgs",
        arguments='{"city": "Edinburgh", "country": "GB", "units": "c"}',
    ),
    ToolCall(
        id="call_DNYTawLBoN8fj3KN6qU9N1Ou",
        name="get_stock_price",
        arguments='{"ticker": "AAPL", "exchange": "NASDAQ"}',
    ),
)
PARALLEL_TOOL_CALL_STREAM_USAGE = Usage(prompt_tokens=149, completion_tokens=60)


def parallel_tool_call_stream(**reply_options: Any) -> Reply:
    return _stream(_events(_PARALLEL_TOOL_CALL_STREAM), **reply_options)


# RECONSTRUCTED-ORDER, gpt-4o: a non-streamed tool call.
_TOOL_CALL_COMPLETION = r"""{
  "id": "chatcmpl-BSXk0dWkG4hfPt0lph4oFO35iT73I",
  "object": "chat.completion",
  "created": 1746142584,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": null,
        "tool_calls": [
          {"id": "call_iXFttys57ap0o16JSlC8yhYo", "type": "function",
           "function": {"name": "get_user_country", "arguments": "{}"}}
        ],
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "tool_calls"
    }
  ],
  "usage": {"prompt_tokens": 68, "completion_tokens": 12, "total_tokens": 80,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
  "service_tier": "default",
  "system_fingerprint": "fp_f5bdcc3276"
}
"""

TOOL_CALL_COMPLETION_CALLS = (
    ToolCall(id="call_iXFttys57ap0o16JSlC8yhYo", name="get_user_country", arguments="{}"),
)


def tool_call_completion() -> Reply:
    return _json(_TOOL_CALL_COMPLETION)


# -- errors --------------------------------------------------------------------------------------

# VERBATIM bodies (their sources are named in the protocol notes).
_AUTHENTICATION = r"""{
  "error": {
    "message": "Incorrect API key provided: kk. You can find your API key at https://platform.openai.com/account/api-keys.",
    "type": "invalid_request_error",
    "param": null,
    "code": "invalid_api_key"
  }
}
"""
_RATE_LIMITED = r"""{
  "error": {
    "message": "Rate limit reached for gpt-4 in organization org-********** on tokens per min (TPM): Limit 10000, Used 9348, Requested 5086. Please try again in 26.604s. Visit https://platform.openai.com/account/rate-limits to learn more.",
    "type": "tokens",
    "param": null,
    "code": "rate_limit_exceeded"
  }
}
"""
_QUOTA = r"""{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}
"""
_CONTEXT_LENGTH = r"""{
  "error": {
    "message": "This model's maximum context length is 16385 tokens. However, your messages resulted in 16468 tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded"
  }
}
"""
_BAD_REQUEST = r"""{"error":{"message":"Unsupported value: 'messages[0].role' does not support 'system' with this model.","type":"invalid_request_error","param":"messages[0].role","code":"unsupported_value"}}
"""
# The 404 was recorded with sorted keys; it is given here in OpenAI's order (message, type, param, code).
_MODEL_NOT_FOUND = r"""{"error":{"message":"The model `nonexistent` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"""
_SERVER_ERROR = r"""{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"""
# RECONSTRUCTED: not in the protocol notes; the message OpenAI's 503s have long carried.
_OVERLOADED = r"""{"error":{"message":"The engine is currently overloaded, please try again later.","type":"server_error","param":null,"code":null}}"""
# RECONSTRUCTED: the documented rate-limit headers as a 429 carries them.
_RATE_LIMIT_HEADERS = (
    ("x-ratelimit-limit-requests", "60"),
    ("x-ratelimit-limit-tokens", "150000"),
    ("x-ratelimit-remaining-requests", "59"),
    ("x-ratelimit-remaining-tokens", "0"),
    ("x-ratelimit-reset-requests", "1s"),
    ("x-ratelimit-reset-tokens", "6m0s"),
)
_ERRORS: dict[str, tuple[int, str, str, tuple[tuple[str, str], ...]]] = {
    "authentication": (401, _AUTHENTICATION, "application/json", ()),
    "rate_limited": (429, _RATE_LIMITED, "application/json", _RATE_LIMIT_HEADERS),
    "quota": (429, _QUOTA, "application/json", ()),
    "context_length": (400, _CONTEXT_LENGTH, "application/json", ()),
    "model_not_found": (404, _MODEL_NOT_FOUND, "application/json; charset=utf-8", ()),
    "bad_request": (400, _BAD_REQUEST, "application/json", ()),
    "unavailable": (500, _SERVER_ERROR, "application/json", ()),
    "overloaded": (503, _OVERLOADED, "application/json", ()),
}

ERROR_KINDS: dict[str, type[ProviderError]] = {
    "authentication": AuthenticationError,
    "rate_limited": RateLimitedError,
    "quota": QuotaExceededError,
    "context_length": ContextLengthExceededError,
    "model_not_found": ModelNotFoundError,
    "bad_request": BadRequestError,
    "unavailable": UnavailableError,
    "overloaded": OverloadedError,
}


def error_reply(kind: str, *, retry_after: str | None = None) -> Reply:
    status, body, content_type, headers = _ERRORS[kind]
    if retry_after is not None:
        headers = (*headers, ("retry-after", retry_after))
    return _json(body, status=status, content_type=content_type, headers=headers)


# VERBATIM (sashabaranov/go-openai#396, typo corrected as noted): the error event after HTTP 200.
_MID_STREAM_ERROR = r"""data: {"error":{"message":"The server experienced an error while processing your request. We apologize for the inconvenience!","type":"server_error","param":null,"code":null}}

data: [DONE]

"""

MID_STREAM_ERROR_TEXT = "The capital of"
MID_STREAM_ERROR_CLASS: type[ProviderError] = UnavailableError


def mid_stream_error(**reply_options: Any) -> Reply:
    """The first text events of the recorded stream, then OpenAI's mid-stream error event."""
    return _stream([*_events(_TEXT_STREAM)[:4], *_events(_MID_STREAM_ERROR)], **reply_options)


# -- embeddings and models -----------------------------------------------------------------------

# RECONSTRUCTED-ORDER; the recorded base64 vector is cut to its first 6 floats (32 characters).
_EMBEDDINGS_BASE64 = r"""{
  "object": "list",
  "data": [
    {"object": "embedding", "index": 0, "embedding": "sDqdvHJAz7zp5926swiaPMqbCr0gMqG8"}
  ],
  "model": "text-embedding-3-small",
  "usage": {"prompt_tokens": 4, "total_tokens": 4}
}
"""
# RECONSTRUCTED from the API reference example.
_EMBEDDINGS_FLOAT = r"""{
  "object": "list",
  "data": [
    {"object": "embedding", "index": 0, "embedding": [0.0023064255, -0.009327292, -0.0028842222]}
  ],
  "model": "text-embedding-ada-002",
  "usage": {"prompt_tokens": 8, "total_tokens": 8}
}
"""

EMBEDDING_BASE64 = "sDqdvHJAz7zp5926swiaPMqbCr0gMqG8"
EMBEDDING_FLOATS = (0.0023064255, -0.009327292, -0.0028842222)
EMBEDDINGS_PROMPT_TOKENS = {"base64": 4, "float": 8}


def embeddings_reply(encoding: str = "base64") -> Reply:
    body = _EMBEDDINGS_BASE64 if encoding == "base64" else _EMBEDDINGS_FLOAT
    return _json(body, headers=(("openai-model", "text-embedding-3-small"), ("openai-processing-ms", "145")))


# RECONSTRUCTED from the API reference.
_MODELS = r"""{
  "object": "list",
  "data": [
    {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
    {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
    {"id": "text-embedding-3-small", "object": "model", "created": 1705948997, "owned_by": "system"},
    {"id": "whisper-1", "object": "model", "created": 1677532384, "owned_by": "openai-internal"}
  ]
}
"""

MODEL_IDS = ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "whisper-1")


def models_reply() -> Reply:
    return _json(_MODELS)


# -- helpers -------------------------------------------------------------------------------------


def _events(recording: str) -> tuple[bytes, ...]:
    """One chunk per SSE event, each with its terminating blank line, exactly as recorded."""
    return tuple(f"{event}\n\n".encode() for event in recording.split("\n\n") if event)


def _stream(events: Sequence[bytes], **reply_options: Any) -> Reply:
    return Reply(headers=_STREAM_HEADERS, chunks=tuple(events), streamed=True, **reply_options)


def _json(
    body: str,
    *,
    status: int = 200,
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
) -> Reply:
    return Reply(status=status, headers=(("content-type", content_type), *headers), chunks=(body.encode(),))
