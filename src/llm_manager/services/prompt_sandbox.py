"""The sandbox prompt templates render in: Jinja2's immutable sandbox, bounded in size and time.

Templates are plain text (no HTML escaping). Jinja2's `ImmutableSandboxedEnvironment` keeps them
away from Python internals (`__class__`, `__globals__`, ...) and from mutating their inputs, but it
does not limit resources: a few lines of template can build a gigabyte string or loop for hours.
This module adds the limits, kept apart from the declarations and caching in `prompt_rendering`,
which only drives it:

- size: output is capped in characters. The operations that could build a huge value in one step
  (`*`, `**`, `~`, `%`, `str.format`, `join`, `replace`, `center`, `indent`, ...) are checked before
  they run; the renderer counts the output chunk by chunk as it is produced.
- time: every render has a deadline, checked on each output chunk, attribute lookup, call,
  operator, filter and `range`; a loop that reaches none of these is stopped by `RenderThread`.

A limit hit raises `SandboxLimitError` (or `DeadlineError`), which the renderer turns into its own
`TemplateError`; this module never imports the renderer.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import re
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from jinja2 import StrictUndefined, nodes
from jinja2 import exceptions as jinja_errors
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, safe_range
from jinja2.utils import generate_lorem_ipsum
from markupsafe import EscapeFormatter, Markup

__all__ = [
    "MAX_INTEGER_BITS",
    "DeadlineError",
    "PromptEnvironment",
    "RenderThread",
    "SandboxLimitError",
    "timeout_message",
]

MAX_INTEGER_BITS = 1 << 13
"""About 2,500 digits: below the 4,300 Python converts to text, far above what a prompt needs."""
_MAX_LIPSUM_PARAGRAPHS = 100
_MAX_JSON_INDENT = 16
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_STR_METHODS = frozenset(
    {"capitalize", "casefold", "count", "endswith", "find", "index", "lower", "lstrip", "partition"}
    | {"removeprefix", "removesuffix", "rfind", "rindex", "rpartition", "rsplit", "rstrip", "split"}
    | {"splitlines", "startswith", "strip", "swapcase", "title", "upper", "join", "replace"}
    | {"center", "ljust", "rjust", "zfill", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit"}
    | {"isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper"}
)
"""The `str` methods a template may call; the others (`translate`, `expandtabs`, `encode`, ...) are
refused, being useless in prompts and hard to bound."""

_Result = TypeVar("_Result")


class SandboxLimitError(Exception):
    """A limit hit inside the sandbox, worded to follow "the user template ..." in the renderer's error."""


class DeadlineError(SandboxLimitError):
    """The render's deadline passed (a message that stands alone)."""


class _RenderInterruptedError(BaseException):
    """Raised inside a render thread that outlived its deadline (see `RenderThread`).

    A BaseException, so that no `except Exception` in Jinja or in a filter can swallow it.
    """


def _weight(value: Any, limit: int) -> int:
    """About how many characters `value` renders to, counted only until `limit` is passed.

    Containers count each item, however often the same one recurs: `[s, s, s]` weighs three times
    `s`, which is what makes lists of repeated references refusable before they are printed.
    """
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list | tuple | set | frozenset | dict):
            total += 2 + 2 * len(item)
            if total <= limit:
                pending.extend(item)
                if isinstance(item, dict):
                    pending.extend(item.values())
        else:
            total += 1
    return total


def _int_argument(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    text, old, new = str(text), str(old), str(new)
    occurrences = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * len(new)


def _printf_size(template: str, values: Any, limit: int) -> int:
    """An upper estimate of `template % values`: each conversion may print all the values, padded."""
    widest = max((value for value in _flatten(values) if isinstance(value, int)), default=0)
    each = _weight(values, limit)
    total = len(template)
    for width, precision in _PRINTF_SPEC.findall(template):
        total += each
        for number in (width, precision):
            total += widest if number == "*" else _number_size(number)
    return total


def _flatten(values: Any) -> Iterable[Any]:
    if isinstance(values, tuple):
        return values
    if isinstance(values, dict):
        return values.values()
    return (values,)


def _number_size(digits: str) -> int:
    """The value of a width or precision written in a format, without parsing a huge one."""
    return int(digits) if 0 < len(digits) <= 9 else (0 if not digits else 10**9)


def _indent_size(arguments: Mapping[str, Any], limit: int) -> int:
    text, width = str(arguments["s"]), arguments["width"]
    prefix = len(width) if isinstance(width, str) else _int_argument(width)
    return len(text) + prefix * (text.count("\n") + 1)


def _wordwrap_size(arguments: Mapping[str, Any], limit: int) -> int:
    text, wrap = str(arguments["s"]), arguments["wrapstring"]
    breaks = len(text) // max(_int_argument(arguments["width"]), 1) + text.count("\n") + 1
    return len(text) + len(str(wrap or "\n")) * breaks


def _join_size(arguments: Mapping[str, Any], limit: int) -> int:
    items = arguments["value"]
    count = len(items) if isinstance(items, list | tuple | str) else 0
    return _weight(items, limit) + len(str(arguments["d"])) * max(count - 1, 0)


def _json_size(arguments: Mapping[str, Any], limit: int) -> int:
    indent = arguments["indent"]
    width = len(indent) if isinstance(indent, str) else _int_argument(indent)
    return limit + 1 if width > _MAX_JSON_INDENT else _weight(arguments["value"], limit) * (width + 1)


_FILTER_SIZES: dict[str, Callable[[Mapping[str, Any], int], int]] = {
    "center": lambda arguments, limit: _int_argument(arguments["width"]),
    "indent": _indent_size,
    "join": _join_size,
    "replace": lambda arguments, limit: _replaced_size(
        arguments["s"], arguments["old"], arguments["new"], arguments["count"]
    ),
    "batch": lambda arguments, limit: _int_argument(arguments["linecount"]),
    "slice": lambda arguments, limit: _int_argument(arguments["slices"]),
    "tojson": _json_size,
    "wordwrap": _wordwrap_size,
    "format": lambda arguments, limit: _printf_size(
        str(arguments["value"]), arguments["kwargs"] or arguments["args"], limit
    ),
}
"""For the filters whose output can be much larger than their input: an estimate of that output."""


class _CodeGenerator(CodeGenerator):
    """Compiles `~` to a size-checked join: a chain of `{% set b = a ~ a %}` would otherwise double a
    string at each step without reaching any sandbox hook."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 (Jinja's visitor name)
        self.write("environment.join_checked((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


class _LimitedFormatter(SandboxedFormatter):
    """`str.format` for templates: no field wider than the output limit, no result larger than it."""

    def __init__(self, environment: PromptEnvironment, **kwargs: Any) -> None:
        super().__init__(environment, **kwargs)
        self._limits = environment
        self._produced = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        limit = self._limits.max_chars
        if any(_number_size(digits) > limit for digits in re.findall(r"\d+", format_spec)):
            raise SandboxLimitError(f"uses a format width or precision above the limit of {limit} characters")
        self._limits.check_size(value)
        text = super().format_field(value, format_spec)
        self._produced += len(text)
        if self._produced > limit:
            raise SandboxLimitError(f"would format a string longer than the limit of {limit} characters")
        return text


class _LimitedEscapeFormatter(_LimitedFormatter, EscapeFormatter):
    pass


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with a deadline and size checks in each of its hooks."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, *, max_chars: int, timeout: float) -> None:
        self.max_chars = max_chars
        self.timeout = timeout
        self._clock = threading.local()
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=self._finalize,
            auto_reload=False,
        )
        self.globals["range"] = self._range
        self.globals["lipsum"] = self._lipsum
        self.filters = {name: self._guard_filter(name, function) for name, function in self.filters.items()}

    def start_clock(self, deadline: float | None) -> None:
        """Set the deadline of the render running in this thread (None: no deadline)."""
        self._clock.deadline = deadline

    def check_deadline(self) -> None:
        deadline: float | None = getattr(self._clock, "deadline", None)
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineError(timeout_message(self.timeout))

    def check_size(self, value: Any) -> None:
        self.check_estimate(_weight(value, self.max_chars))

    def check_estimate(self, size: int) -> None:
        """Refuse to build a value that would be longer than the output limit."""
        if size > self.max_chars:
            raise SandboxLimitError(
                f"would build a value longer than the limit of {self.max_chars} characters"
            )

    def _finalize(self, value: Any) -> Any:
        """Every `{{ ... }}`: None prints as nothing, and nothing larger than the output limit prints."""
        if value is None:
            return ""
        self.check_size(value)
        return value

    def concat(self, parts: Iterable[str]) -> str:
        """The join Jinja uses for blocks, macros and `{% set %}` blocks, stopped once too long."""
        collected: list[str] = []
        total = 0
        for part in parts:
            total += len(part)
            self.check_estimate(total)
            collected.append(part)
        return "".join(collected)

    def join_checked(self, parts: tuple[Any, ...]) -> str:
        """The `~` operator (see `_CodeGenerator`); it never escapes, prompts being plain text."""
        self.check_deadline()
        self.check_size(parts)
        return str_join(parts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.check_deadline()
        limit = self.max_chars
        sequence, times = (left, right) if isinstance(right, int) else (right, left)
        if operator == "*" and isinstance(sequence, str | list | tuple) and isinstance(times, int):
            self.check_estimate(_weight(sequence, limit) * max(times, 0))
        elif operator in ("*", "**") and isinstance(left, int) and isinstance(right, int):
            bits = left.bit_length() + right.bit_length()
            if operator == "**":
                bits = left.bit_length() * right if right > 0 and abs(left) > 1 else 0
            if bits > MAX_INTEGER_BITS:
                raise SandboxLimitError(f"would compute a number of more than {MAX_INTEGER_BITS} bits")
        elif operator == "+" and isinstance(left, str | list | tuple):
            self.check_estimate(_weight(left, limit) + _weight(right, limit))
        elif operator == "%" and isinstance(left, str):
            self.check_estimate(_printf_size(left, right, limit))
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.check_deadline()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.check_deadline()
        return super().getitem(obj, argument)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.check_deadline()
        if isinstance(obj, types.BuiltinMethodType | types.MethodType) and isinstance(obj.__self__, str):
            args = self._check_str_method(obj.__self__, obj.__name__, args)
        result = super().call(context, obj, *args, **kwargs)
        self.check_size(result)
        return result

    def _check_str_method(self, text: str, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if name not in _STR_METHODS:
            raise jinja_errors.SecurityError(f"the string method {name!r} is not available in templates")
        estimate = 0
        if name in ("center", "ljust", "rjust", "zfill") and args:
            estimate = _int_argument(args[0])
        elif name == "replace" and len(args) >= 2:
            estimate = _replaced_size(text, args[0], args[1], args[2] if len(args) > 2 else -1)
        elif name == "join" and args:
            items = self._bounded_list(args[0])
            args = (items, *args[1:])
            estimate = _weight(items, self.max_chars) + len(text) * max(len(items) - 1, 0)
        self.check_estimate(estimate)
        return args

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `str.format_map` through `_LimitedFormatter` (the sandbox's own, bounded)."""
        if not isinstance(value, types.BuiltinMethodType | types.MethodType) or value.__name__ not in (
            "format",
            "format_map",
        ):
            return None
        text = value.__self__
        if not isinstance(text, str):
            return None
        formatter = (
            _LimitedEscapeFormatter(self, escape=text.escape)
            if isinstance(text, Markup)
            else _LimitedFormatter(self)
        )
        is_map = value.__name__ == "format_map"

        def format_checked(*args: Any, **kwargs: Any) -> str:
            self.check_deadline()
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                return type(text)(formatter.vformat(text, (), args[0]))
            return type(text)(formatter.vformat(text, args, kwargs))

        return format_checked

    def _bounded_list(self, items: Iterable[Any]) -> list[Any]:
        """`items` as a list, refused as soon as it grows past the output limit."""
        if isinstance(items, list | tuple | str):
            return list(items)
        collected: list[Any] = []
        total = 0
        for item in items:
            total += _weight(item, self.max_chars) + 1
            self.check_estimate(total)
            if len(collected) % 1024 == 0:
                self.check_deadline()
            collected.append(item)
        return collected

    def _guard_filter(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        value_index = 0 if getattr(function, "jinja_pass_arg", None) is None else 1
        size_of = _FILTER_SIZES.get(name)
        signature = inspect.signature(function) if size_of else None

        @functools.wraps(function)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self.check_deadline()
            if len(args) > value_index:
                value = args[value_index]
                if isinstance(value, types.GeneratorType):
                    value = self._bounded_list(value)
                    args = (*args[:value_index], value, *args[value_index + 1 :])
                self.check_size(value)
            if size_of is not None and signature is not None:
                with contextlib.suppress(TypeError):  # wrong arguments: the filter itself says so
                    bound = signature.bind(*args, **kwargs)
                    bound.apply_defaults()
                    self.check_estimate(size_of(bound.arguments, self.max_chars))
            result = function(*args, **kwargs)
            if not isinstance(result, types.GeneratorType):
                self.check_size(result)
            return result

        return guarded

    def _range(self, *args: int) -> range:
        self.check_deadline()
        return safe_range(*args)

    def _lipsum(self, n: int = 5, html: bool = False, min: int = 20, max: int = 100) -> str:
        if n > _MAX_LIPSUM_PARAGRAPHS or max > 1000:
            raise SandboxLimitError(
                f"asks lipsum for more than {_MAX_LIPSUM_PARAGRAPHS} paragraphs or 1000 words"
            )
        return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def timeout_message(timeout: float) -> str:
    """The one wording of a render that ran out of time, wherever it was noticed."""
    return f"the template took longer than {timeout:g}s to render"


def _interrupt_thread(thread_id: int) -> None:
    """Raise `_RenderInterruptedError` in a thread when it next checks for pending events."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(_RenderInterruptedError)
    )


def _receive_pending_interrupt() -> None:
    """Does nothing, but entering a Python function checks for pending events: an interrupt sent
    earlier is raised here, at the latest."""


class RenderThread(Generic[_Result]):
    """One render in its own short-lived thread, which can be stopped once past its deadline.

    The sandbox checks the deadline cooperatively (see `PromptEnvironment`), but a template can
    spin without reaching any check: nested `for` loops over a long list that print and call
    nothing run entirely in Jinja's generated code. Python cannot kill a thread; the one way to stop
    such a loop is `PyThreadState_SetAsyncExc`, which raises an exception in the thread at its next
    bytecode boundary. It is sent at most once and only while the render still runs (both decided
    under a lock), and the thread makes it arrive inside its `try` before finishing, so it can never
    escape into code that is not the render's, nor stay pending (CPython 3.11 would then keep every
    thread checking for it). It is never withdrawn with a NULL exception: on 3.11 that leaves the
    interpreter's pending-events flag set for good, which hangs threads under a tracer (coverage).
    A single long C call (which the size checks exist to prevent) cannot be interrupted this way:
    the thread is a daemon, abandoned after a grace period.
    """

    def __init__(self, render: Callable[[], _Result], on_done: Callable[[], None], timeout: float) -> None:
        self._render = render
        self._on_done = on_done
        self._timeout = timeout
        self._lock = threading.Lock()
        self._running = True
        self._interrupted = False
        self._outcome: _Result | BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="prompt-render", daemon=True)

    def _run(self) -> None:
        while True:
            try:
                if self._outcome is None:
                    self._outcome = self._outcome_of_render()
                with self._lock:
                    self._running = False
                _receive_pending_interrupt()
                break
            except _RenderInterruptedError:
                self._outcome = DeadlineError(timeout_message(self._timeout))
        self._on_done()

    def _outcome_of_render(self) -> _Result | BaseException:
        try:
            return self._render()
        except _RenderInterruptedError:
            raise
        except BaseException as exc:  # handed to the caller's thread, which raises it
            return exc

    def interrupt(self) -> None:
        """Stop the render if it is still running."""
        with self._lock:
            if self._running and not self._interrupted and self.thread.ident is not None:
                self._interrupted = True
                _interrupt_thread(self.thread.ident)

    def result(self) -> _Result:
        """The render's result, or the exception it raised; `DeadlineError` if it was stopped."""
        outcome = self._outcome
        if outcome is None:
            raise DeadlineError(timeout_message(self._timeout))
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
