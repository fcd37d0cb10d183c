"""Prompt templates: declared variables, their values, and the renderer that checks and renders templates.

A template has a system part and a user part, and declares the variables it uses (`VariableSpec`),
each with a type, a default and whether it is required. This module validates those declarations,
coerces the values a call gives to their declared types (as plain JSON data: strings, numbers,
booleans, lists, objects, so nothing but that data and Jinja's few globals can be called from a
template), and checks and renders templates through `TemplateRenderer`: sources and variables are
capped in characters, compiled templates are cached, and the rendered output is counted chunk by
chunk against its limit.

The sandbox itself (Jinja2's immutable sandbox with size and time checks in its hooks, and the
thread that stops a render past its deadline) lives in `prompt_sandbox`, whose errors are turned
into `TemplateError` here, so that callers see one kind of error for any template that will not
render. The dependency runs one way: this module imports the sandbox, never the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import re
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from jinja2 import Template, meta, nodes
from jinja2 import exceptions as jinja_errors

from llm_manager.errors import InvalidInputError
from llm_manager.services.prompt_sandbox import (
    MAX_INTEGER_BITS,
    DeadlineError,
    PromptEnvironment,
    RenderThread,
    SandboxLimitError,
    timeout_message,
)

VariableType = Literal["string", "number", "integer", "boolean", "list", "object"]

MAX_VARIABLES = 50
_VARIABLE_TYPES: tuple[str, ...] = get_args(VariableType)
_EXPECTED = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean (true/false, yes/no, 1/0)",
    "list": 'a list (a JSON array such as ["a", "b"])',
    "object": 'an object (a JSON object such as {"key": "value"})',
}
_BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_INTEGER_TEXT = re.compile(r"[+-]?\d{1,30}")
_MAX_NAME_CHARS = 64
_MAX_DESCRIPTION_CHARS = 1000
_SPEC_KEYS = ("name", "type", "default", "required", "description")
_RESERVED_NAMES = frozenset(
    {"true", "false", "none", "loop", "self", "caller", "varargs", "kwargs"}
    | {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)
_TEMPLATE_CACHE_SIZE = 256


class TemplateError(InvalidInputError):
    """A template that cannot be rendered: bad syntax, a sandbox violation, or a size or time limit."""

    code = "template_error"


@dataclass(frozen=True, kw_only=True)
class VariableSpec:
    """One declared template variable. A `default` of None means there is none."""

    name: str
    type: VariableType = "string"
    default: Any = None
    required: bool = False
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The declaration as JSON data, as `parse_variable_specs` reads it back."""
        return {
            "name": self.name,
            "type": self.type,
            "default": _json_copy(self.default),
            "required": self.required,
            "description": self.description,
        }


def parse_variable_specs(
    raw: Sequence[Mapping[str, Any]] | None, *, field: str = "variables"
) -> tuple[VariableSpec, ...]:
    """Validate declarations as submitted or stored; errors name the entry, e.g. `variables[2].name`."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        raise InvalidInputError("the variables must be a list of declarations", field=field)
    if len(raw) > MAX_VARIABLES:
        raise InvalidInputError(f"at most {MAX_VARIABLES} variables may be declared", field=field)
    specs: list[VariableSpec] = []
    for index, item in enumerate(raw):
        spec = _parse_variable_spec(item, field=f"{field}[{index}]")
        if any(seen.name == spec.name for seen in specs):
            raise InvalidInputError(
                f"variable '{spec.name}' is declared twice", field=f"{field}[{index}].name"
            )
        specs.append(spec)
    return tuple(specs)


def _parse_variable_spec(item: Any, *, field: str) -> VariableSpec:
    if not isinstance(item, Mapping):
        raise InvalidInputError("a variable declaration must be an object", field=field)
    for key in item:
        if key not in _SPEC_KEYS:
            raise InvalidInputError(
                f"unknown key {key!r}; a declaration has {', '.join(_SPEC_KEYS)}", field=f"{field}.{key}"
            )
    name = item.get("name")
    if not isinstance(name, str) or not name.isidentifier() or len(name) > _MAX_NAME_CHARS:
        raise InvalidInputError(
            f"a variable name must be an identifier of at most {_MAX_NAME_CHARS} characters "
            f"(letters, digits and _, not starting with a digit), not {name!r}",
            field=f"{field}.name",
        )
    if name in _RESERVED_NAMES or name.lower() in {"true", "false", "none"}:
        raise InvalidInputError(
            f"'{name}' has a meaning in templates; choose another name", field=f"{field}.name"
        )
    kind = item.get("type", "string")
    if kind not in _VARIABLE_TYPES:
        raise InvalidInputError(
            f"unknown type {kind!r}; expected one of {', '.join(_VARIABLE_TYPES)}", field=f"{field}.type"
        )
    required = item.get("required", False)
    if not isinstance(required, bool):
        raise InvalidInputError("required must be true or false", field=f"{field}.required")
    description = item.get("description", "")
    if not isinstance(description, str) or len(description) > _MAX_DESCRIPTION_CHARS:
        raise InvalidInputError(
            f"the description must be text of at most {_MAX_DESCRIPTION_CHARS} characters",
            field=f"{field}.description",
        )
    default = item.get("default")
    if default is not None:
        if required:
            raise InvalidInputError(
                f"variable '{name}' is required, so it cannot have a default", field=f"{field}.default"
            )
        try:
            default = _coerce(kind, default)
        except ValueError:
            raise InvalidInputError(
                f"the default of '{name}' must be {_EXPECTED[kind]}", field=f"{field}.default"
            ) from None
    return VariableSpec(name=name, type=kind, default=default, required=required, description=description)


def _coerce(kind: str, value: Any) -> Any:
    """`value` as a `kind` variable, converting text (a command line gives only text) and copying
    containers as plain JSON data; ValueError when it does not fit."""
    if kind == "string" and isinstance(value, str):
        return value
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLEAN_WORDS:
            return _BOOLEAN_WORDS[value.strip().lower()]
    if kind in ("integer", "number") and isinstance(value, str):
        text = value.strip()
        if _INTEGER_TEXT.fullmatch(text):
            return int(text)
        if kind == "number":
            value = float(text)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind in ("integer", "number") and isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INTEGER_BITS:
            raise ValueError("too large")
        return value
    if kind == "number" and isinstance(value, float) and math.isfinite(value):
        return value
    if kind in ("list", "object") and isinstance(value, str):
        try:
            value = json.loads(value)
        except RecursionError:
            raise ValueError("nested too deeply") from None
    if (kind == "list" and isinstance(value, list | tuple)) or (
        kind == "object" and isinstance(value, Mapping)
    ):
        return _json_copy(value)
    raise ValueError(kind)


def _json_copy(value: Any) -> Any:
    """A deep copy made of plain JSON data; ValueError for anything JSON cannot hold."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError):
        raise ValueError("not JSON data") from None


@dataclass(frozen=True, kw_only=True)
class RenderedPrompt:
    """A rendered template. `system` is None when there is no system part or it rendered blank."""

    system: str | None
    user: str
    variables: dict[str, Any]


class TemplateRenderer:
    """Checks templates when they are saved and renders them for calls; safe to share between threads.

    `render_sync` and `render` both run each render in a short-lived thread of its own (see
    `prompt_sandbox.RenderThread`) so that the time limit holds for any template.
    """

    def __init__(
        self,
        *,
        max_source_chars: int = 100_000,
        max_output_chars: int = 200_000,
        max_variables_chars: int = 100_000,
        timeout: float = 1.0,
    ) -> None:
        if min(max_source_chars, max_output_chars, max_variables_chars) <= 0 or timeout <= 0:
            raise ValueError("the limits of a TemplateRenderer must be positive")
        self.max_source_chars = max_source_chars
        self.max_output_chars = max_output_chars
        self.max_variables_chars = max_variables_chars
        self.timeout = timeout
        self._environment = PromptEnvironment(max_chars=max_output_chars, timeout=timeout)
        self._templates: OrderedDict[str, Template] = OrderedDict()
        self._templates_lock = threading.Lock()

    def check(self, *, system: str | None, user: str, specs: Sequence[VariableSpec]) -> None:
        """Refuse a template that cannot work: too long, bad syntax, or using an undeclared variable."""
        if not user.strip():
            raise TemplateError("the user part of the template is empty", field="user")
        known = {spec.name for spec in specs} | set(self._environment.globals)
        for part, source in (("system", system), ("user", user)):
            if source is None:
                continue
            tree = self._parse(part, source)
            other = next(tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)), None)
            if other is not None:
                raise TemplateError(
                    f"the {part} template refers to other templates (line {other.lineno}); prompts cannot",
                    field=part,
                )
            self._template(part, source)
            undeclared = meta.find_undeclared_variables(tree) - known
            if undeclared:
                name = next(node.name for node in tree.find_all(nodes.Name) if node.name in undeclared)
                raise TemplateError(f"the template uses variable '{name}', which is not declared", field=part)

    def resolve_values(self, specs: Sequence[VariableSpec], values: Mapping[str, Any]) -> dict[str, Any]:
        """The value of every declared variable: given ones coerced to their type, defaults for the
        rest (None for an optional variable without one). A given None counts as not given."""
        declared = {spec.name: spec for spec in specs}
        for name in values:
            if name not in declared:
                listing = ", ".join(declared) if declared else "none"
                raise InvalidInputError(
                    f"unknown variable '{name}'; the template declares: {listing}", field=f"variables.{name}"
                )
        resolved: dict[str, Any] = {}
        size = 0
        for spec in specs:
            value = values.get(spec.name)
            if value is None:
                if spec.required:
                    raise InvalidInputError(
                        f"variable '{spec.name}' is required", field=f"variables.{spec.name}"
                    )
                value = _json_copy(spec.default)
            else:
                if isinstance(value, str) and len(value) > self.max_variables_chars:
                    raise self._variables_too_large()
                try:
                    value = _coerce(spec.type, value)
                except ValueError:
                    raise InvalidInputError(
                        f"variable '{spec.name}' must be {_EXPECTED[spec.type]}",
                        field=f"variables.{spec.name}",
                    ) from None
            size += len(json.dumps(value))
            if size > self.max_variables_chars:
                raise self._variables_too_large()
            resolved[spec.name] = value
        return resolved

    def render_sync(
        self, *, system: str | None, user: str, specs: Sequence[VariableSpec], values: Mapping[str, Any]
    ) -> RenderedPrompt:
        """Render the template; blocks the calling thread for at most about the timeout."""
        worker = self._worker(system, user, specs, values, on_done=lambda: None)
        worker.thread.start()
        worker.thread.join(self.timeout)
        if worker.thread.is_alive():
            worker.interrupt()
            worker.thread.join(self._stop_grace)
            raise TemplateError(timeout_message(self.timeout))
        return _result_of(worker)

    async def render(
        self, *, system: str | None, user: str, specs: Sequence[VariableSpec], values: Mapping[str, Any]
    ) -> RenderedPrompt:
        """Render the template in a worker thread, so that a slow template never blocks the event loop."""
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def settle() -> None:
            if not finished.done():
                finished.set_result(None)

        def on_done() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while the render ran
                loop.call_soon_threadsafe(settle)

        worker = self._worker(system, user, specs, values, on_done=on_done)
        worker.thread.start()
        try:
            await asyncio.wait_for(asyncio.shield(finished), self.timeout)
        except TimeoutError:
            worker.interrupt()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(finished), self._stop_grace)
            raise TemplateError(timeout_message(self.timeout)) from None
        except asyncio.CancelledError:
            worker.interrupt()
            raise
        return _result_of(worker)

    @property
    def _stop_grace(self) -> float:
        return min(1.0, max(0.1, self.timeout))

    def _worker(
        self,
        system: str | None,
        user: str,
        specs: Sequence[VariableSpec],
        values: Mapping[str, Any],
        *,
        on_done: Callable[[], None],
    ) -> RenderThread[RenderedPrompt]:
        render = functools.partial(self._render_now, system=system, user=user, specs=specs, values=values)
        return RenderThread(render, on_done, self.timeout)

    def _render_now(
        self, *, system: str | None, user: str, specs: Sequence[VariableSpec], values: Mapping[str, Any]
    ) -> RenderedPrompt:
        self._environment.start_clock(time.monotonic() + self.timeout)
        try:
            resolved = self.resolve_values(specs, values)
            budget = self.max_output_chars
            rendered_system = None
            if system:
                rendered_system = self._render_part(
                    "system", self._template("system", system), resolved, budget
                )
                budget -= len(rendered_system)
            rendered_user = self._render_part("user", self._template("user", user), resolved, budget)
        finally:
            self._environment.start_clock(None)
        if not rendered_user.strip():
            raise InvalidInputError("the template's user part rendered empty", field="user")
        return RenderedPrompt(
            system=rendered_system if rendered_system and rendered_system.strip() else None,
            user=rendered_user,
            variables=resolved,
        )

    def _render_part(self, part: str, template: Template, values: dict[str, Any], budget: int) -> str:
        chunks: list[str] = []
        total = 0
        generator = template.generate(values)
        try:
            for chunk in generator:
                total += len(chunk)
                if total > budget:
                    raise SandboxLimitError(
                        f"rendered to more than the limit of {self.max_output_chars} characters"
                    )
                self._environment.check_deadline()
                chunks.append(chunk)
        except DeadlineError as exc:
            raise TemplateError(str(exc)) from None
        except SandboxLimitError as exc:
            raise TemplateError(f"the {part} template {exc}", field=part) from None
        except jinja_errors.SecurityError as exc:
            raise TemplateError(
                f"the template tried something the sandbox forbids: {exc}", field=part
            ) from exc
        except jinja_errors.UndefinedError as exc:
            raise TemplateError(f"the {part} template uses an undefined value: {exc}", field=part) from exc
        except Exception as exc:  # a template can raise what Python can; all of it is the template's fault
            raise TemplateError(f"the {part} template failed to render: {exc}", field=part) from exc
        finally:
            if isinstance(generator, types.GeneratorType):
                generator.close()
        return "".join(chunks)

    def _parse(self, part: str, source: str) -> nodes.Template:
        self._check_source_size(part, source)
        try:
            return self._environment.parse(source)
        except jinja_errors.TemplateSyntaxError as exc:
            raise _syntax_error(part, exc) from None
        except RecursionError:
            raise _too_deep(part) from None

    def _template(self, part: str, source: str) -> Template:
        """The compiled template, from a bounded per-renderer cache."""
        self._check_source_size(part, source)
        with self._templates_lock:
            template = self._templates.get(source)
            if template is not None:
                self._templates.move_to_end(source)
                return template
        try:
            template = self._environment.from_string(source)
        except jinja_errors.TemplateSyntaxError as exc:
            raise _syntax_error(part, exc) from None
        except (RecursionError, SyntaxError):  # Python's own limits on nesting, met by the compiled code
            raise _too_deep(part) from None
        with self._templates_lock:
            self._templates[source] = template
            if len(self._templates) > _TEMPLATE_CACHE_SIZE:
                self._templates.popitem(last=False)
        return template

    def _check_source_size(self, part: str, source: str) -> None:
        if len(source) > self.max_source_chars:
            raise TemplateError(
                f"the {part} template is longer than the limit of {self.max_source_chars} characters",
                field=part,
            )

    def _variables_too_large(self) -> InvalidInputError:
        return InvalidInputError(
            f"the variables are larger than the limit of {self.max_variables_chars} characters (as JSON)",
            field="variables",
        )


def _syntax_error(part: str, exc: jinja_errors.TemplateSyntaxError) -> TemplateError:
    return TemplateError(
        f"the {part} template has a syntax error on line {exc.lineno}: {exc.message}", field=part
    )


def _too_deep(part: str) -> TemplateError:
    return TemplateError(f"the {part} template is nested too deeply", field=part)


def _result_of(worker: RenderThread[RenderedPrompt]) -> RenderedPrompt:
    """The worker's rendered prompt; a render it stopped at the deadline is a `TemplateError` too."""
    try:
        return worker.result()
    except DeadlineError as exc:
        raise TemplateError(str(exc)) from None
