"""Prompt templates: declarations, values, and sandboxed rendering under size and time limits."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from llm_manager.errors import InvalidInputError
from llm_manager.services.prompt_rendering import (
    RenderedPrompt,
    TemplateError,
    TemplateRenderer,
    VariableSpec,
    parse_variable_specs,
)

TIMEOUT = 0.2
SPECS = parse_variable_specs(
    [
        {"name": "topic", "required": True, "description": "what to write about"},
        {"name": "tone", "default": "friendly"},
        {"name": "words", "type": "integer", "default": 100},
        {"name": "temperature", "type": "number"},
        {"name": "formal", "type": "boolean", "default": False},
        {"name": "points", "type": "list", "default": []},
        {"name": "meta", "type": "object"},
    ]
)


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer(timeout=TIMEOUT)


def render(
    renderer: TemplateRenderer, user: str, *, system: str | None = None, **values: Any
) -> RenderedPrompt:
    return renderer.render_sync(system=system, user=user, specs=SPECS, values=values)


def field_of(excinfo: pytest.ExceptionInfo[InvalidInputError]) -> str | None:
    return excinfo.value.field


# Declarations


def test_declarations_are_parsed_with_defaults_coerced_and_round_trip() -> None:
    specs = parse_variable_specs(
        [
            {"name": "n", "type": "integer", "default": "3"},
            {"name": "tags", "type": "list", "default": '["a"]'},
        ]
    )
    assert specs == (
        VariableSpec(name="n", type="integer", default=3),
        VariableSpec(name="tags", type="list", default=["a"]),
    )
    assert parse_variable_specs([spec.as_dict() for spec in SPECS]) == SPECS
    assert SPECS[0].as_dict() == {
        "name": "topic",
        "type": "string",
        "default": None,
        "required": True,
        "description": "what to write about",
    }
    assert parse_variable_specs(None) == ()


@pytest.mark.parametrize(
    ("declaration", "field", "message"),
    [
        ({"name": "2fast"}, "variables[1].name", "identifier"),
        ({"name": "has space"}, "variables[1].name", "identifier"),
        ({"name": 7}, "variables[1].name", "identifier"),
        ({}, "variables[1].name", "identifier"),
        ({"name": "ok"}, "variables[1].name", "declared twice"),
        ({"name": "loop"}, "variables[1].name", "meaning in templates"),
        ({"name": "True"}, "variables[1].name", "meaning in templates"),
        ({"name": "b", "type": "date"}, "variables[1].type", "unknown type 'date'"),
        ({"name": "b", "type": "integer", "default": "many"}, "variables[1].default", "must be an integer"),
        ({"name": "b", "type": "list", "default": "a,b"}, "variables[1].default", "must be a list"),
        ({"name": "b", "required": True, "default": "x"}, "variables[1].default", "cannot have a default"),
        ({"name": "b", "required": "yes"}, "variables[1].required", "true or false"),
        ({"name": "b", "description": "x" * 1001}, "variables[1].description", "at most 1000"),
        ({"name": "b", "colour": "red"}, "variables[1].colour", "unknown key 'colour'"),
        ("b", "variables[1]", "must be an object"),
    ],
)
def test_bad_declarations_name_the_entry_and_field(declaration: Any, field: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as excinfo:
        parse_variable_specs([{"name": "ok"}, declaration])
    assert field_of(excinfo) == field


def test_too_many_declarations_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="at most 50") as excinfo:
        parse_variable_specs([{"name": f"v{index}"} for index in range(51)])
    assert field_of(excinfo) == "variables"
    with pytest.raises(InvalidInputError, match="list of declarations"):
        parse_variable_specs("name")  # type: ignore[arg-type]


# Values


def test_values_get_defaults_and_are_coerced_from_text(renderer: TemplateRenderer) -> None:
    values = renderer.resolve_values(
        SPECS,
        {
            "topic": "owls",
            "words": "3",
            "temperature": "2.5",
            "formal": "yes",
            "points": '["a", 1]',
            "meta": '{"k": 2}',
        },
    )
    assert values == {
        "topic": "owls",
        "tone": "friendly",
        "words": 3,
        "temperature": 2.5,
        "formal": True,
        "points": ["a", 1],
        "meta": {"k": 2},
    }
    for text, expected in [("true", True), ("FALSE", False), ("1", True), ("0", False), ("no", False)]:
        assert renderer.resolve_values(SPECS, {"topic": "t", "formal": text})["formal"] is expected
    numbers = renderer.resolve_values(SPECS, {"topic": "t", "temperature": "7", "words": 4.0})
    assert (numbers["temperature"], numbers["words"]) == (7, 4)
    assert isinstance(numbers["words"], int)
    assert renderer.resolve_values(SPECS, {"topic": "t", "tone": None})["tone"] == "friendly"


def test_a_missing_required_variable_is_named(renderer: TemplateRenderer) -> None:
    with pytest.raises(InvalidInputError, match="variable 'topic' is required") as excinfo:
        renderer.resolve_values(SPECS, {"tone": "dry"})
    assert field_of(excinfo) == "variables.topic"
    with pytest.raises(InvalidInputError, match="variable 'topic' is required"):
        render(renderer, "{{ topic }}")


def test_an_unknown_variable_is_named_with_the_declared_ones(renderer: TemplateRenderer) -> None:
    with pytest.raises(
        InvalidInputError, match="unknown variable 'topci'; the template declares: topic, tone"
    ) as excinfo:
        renderer.resolve_values(SPECS, {"topci": "owls"})
    assert field_of(excinfo) == "variables.topci"
    with pytest.raises(InvalidInputError, match="declares: none"):
        renderer.resolve_values((), {"x": 1})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("topic", 3, "must be a string"),
        ("words", "3.5", "must be an integer"),
        ("words", True, "must be an integer"),
        ("temperature", "warm", "must be a number"),
        ("temperature", "nan", "must be a number"),
        ("formal", "maybe", "must be a boolean"),
        ("points", "a,b", "must be a list"),
        ("points", '{"a": 1}', "must be a list"),
        ("points", [object()], "must be a list"),
        ("meta", "[1]", "must be an object"),
        pytest.param("words", 10**3000, "must be an integer", id="huge integer"),
        pytest.param("points", "[" * 50000, "must be a list", id="deeply nested list"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(
    renderer: TemplateRenderer, name: str, value: Any, expected: str
) -> None:
    values = {"topic": "owls", name: value}
    with pytest.raises(InvalidInputError, match=f"variable '{name}' {expected}") as excinfo:
        renderer.resolve_values(SPECS, values)
    assert field_of(excinfo) == f"variables.{name}"


def test_variables_are_limited_in_size() -> None:
    renderer = TemplateRenderer(max_variables_chars=100, timeout=TIMEOUT)
    renderer.resolve_values(SPECS, {"topic": "x" * 50})
    for values in ({"topic": "x" * 101}, {"topic": "x" * 60, "points": ["y" * 60]}):
        with pytest.raises(InvalidInputError, match="larger than the limit of 100 characters") as excinfo:
            renderer.resolve_values(SPECS, values)
        assert field_of(excinfo) == "variables"


# Rendering


async def test_render_applies_defaults_and_coerced_values(renderer: TemplateRenderer) -> None:
    rendered = await renderer.render(
        system="You write in a {{ tone }} tone{% if formal %}, formally{% endif %}.",
        user="Write {{ words + 1 }} words on {{ topic|upper }}:{% for p in points %} {{ loop.index }}.{{ p }}{% endfor %}"
        "{{ meta }}\n",
        specs=SPECS,
        values={"topic": "owls", "words": "9", "formal": "true", "points": '["eyes", "wings"]'},
    )
    assert rendered.system == "You write in a friendly tone, formally."
    assert rendered.user == "Write 10 words on OWLS: 1.eyes 2.wings\n"
    assert rendered.variables["words"] == 9
    assert rendered.variables["meta"] is None


def test_a_blank_system_part_is_none_and_an_empty_user_part_is_refused(renderer: TemplateRenderer) -> None:
    assert render(renderer, "hi", system="  {{ '' }}\n", topic="t").system is None
    assert render(renderer, "hi", system="", topic="t").system is None
    with pytest.raises(InvalidInputError, match="user part rendered empty") as excinfo:
        render(renderer, "{% if formal %}x{% endif %} ", topic="t")
    assert field_of(excinfo) == "user"


def test_an_undefined_name_at_render_is_named(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="'other' is undefined") as excinfo:
        render(renderer, "{{ other }}", topic="t")
    assert field_of(excinfo) == "user"
    with pytest.raises(TemplateError, match="has no attribute 'k'"):
        render(renderer, "{{ meta.k }}", topic="t", meta={})


def test_runtime_failures_are_template_errors(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="system template failed to render: division by zero") as excinfo:
        render(renderer, "x", system="{{ 1 / 0 }}", topic="t")
    assert field_of(excinfo) == "system"
    assert excinfo.value.code == "template_error"


# Checking at save time


def test_check_accepts_a_good_template_with_jinja_globals(renderer: TemplateRenderer) -> None:
    renderer.check(
        system="{% set ns = namespace(n=0) %}{% for i in range(3) %}{{ loop.index }}{% endfor %}",
        user="{{ topic }}{{ dict(a=1) }}{{ lipsum(1) }}{{ cycler('a').next() }}{{ joiner(',')() }}",
        specs=SPECS,
    )


def test_check_names_the_part_and_line_of_a_syntax_error(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="the user template has a syntax error on line 3") as excinfo:
        renderer.check(system="fine", user="one\ntwo\n{% for x in %}", specs=SPECS)
    assert field_of(excinfo) == "user"
    with pytest.raises(
        TemplateError, match=r"system template has a syntax error on line 1: .*filter"
    ) as excinfo:
        renderer.check(system="{{ topic|nosuchfilter }}", user="x", specs=SPECS)
    assert field_of(excinfo) == "system"


def test_check_names_the_first_undeclared_variable(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="uses variable 'audience', which is not declared") as excinfo:
        renderer.check(system=None, user="{{ topic }} for {{ audience }} and {{ zebra }}", specs=SPECS)
    assert field_of(excinfo) == "user"


def test_check_refuses_includes_oversized_sources_and_an_empty_user_part() -> None:
    renderer = TemplateRenderer(max_source_chars=50, timeout=TIMEOUT)
    with pytest.raises(TemplateError, match="refers to other templates"):
        renderer.check(system=None, user="{% include 'secrets.txt' %}", specs=SPECS)
    with pytest.raises(TemplateError, match="longer than the limit of 50 characters") as excinfo:
        renderer.check(system="x" * 51, user="x", specs=SPECS)
    assert field_of(excinfo) == "system"
    with pytest.raises(TemplateError, match="user part of the template is empty"):
        renderer.check(system=None, user=" \n", specs=SPECS)
    with pytest.raises(TemplateError, match="nested too deeply"):
        TemplateRenderer().check(system=None, user="{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", specs=SPECS)


# The sandbox


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ self._TemplateReference__context }}",
        '{{ "{0.__class__}".format(topic) }}',
        "{{ '{t.__class__.__mro__}'.format_map({'t': topic}) }}",
        "{{ points.append(1) }}",
        "{{ meta.update(a=1) }}",
        "{{ namespace.__init__ }}",
        "{{ topic.translate({}) }}",
        "{{ topic.encode() }}",
    ],
)
def test_sandbox_escapes_are_refused(renderer: TemplateRenderer, template: str) -> None:
    with pytest.raises(TemplateError, match="the template tried something the sandbox forbids") as excinfo:
        render(renderer, template, topic="owls", points=[], meta={})
    assert field_of(excinfo) == "user"


def test_attributes_that_do_not_exist_on_plain_data_are_refused(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="__dict__"):
        render(renderer, "{{ topic.__dict__ }}", topic="owls")
    with pytest.raises(TemplateError, match=r"sandbox forbids.*__dict__"):
        render(renderer, "{{ cycler.__dict__ }}", topic="owls")


def test_output_is_limited_while_it_is_produced() -> None:
    renderer = TemplateRenderer(max_output_chars=1000, timeout=TIMEOUT)
    assert len(render(renderer, "{% for i in range(99) %}xxxxxxxxxx{% endfor %}", topic="t").user) == 990
    started = time.monotonic()
    with pytest.raises(TemplateError, match="rendered to more than the limit of 1000 characters") as excinfo:
        render(renderer, "{% for i in range(100000) %}xxxxxxxxxx{% endfor %}", topic="t")
    assert field_of(excinfo) == "user"
    assert time.monotonic() - started < TIMEOUT
    with pytest.raises(TemplateError, match="user template rendered to more than"):
        render(renderer, "{{ topic }}", system="{{ topic }}", topic="x" * 600)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 10**10 }}",
        "{{ [topic] * 10**9 }}",
        "{{ topic|center(10**9) }}",
        "{{ topic.rjust(10**9) }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:.{p}f}'.format(1.5, p=10**9) }}",
        "{{ '%999999999s' % 1 }}",
        "{{ '%*d' % (10**9, 1) }}",
        "{{ '%999999999s'|format(1) }}",
        "{{ range(100000)|join(topic * 100) }}",
        "{{ (topic * 1000).join(range(1000)|map('string')) }}",
        "{{ (topic * 100000).replace('x', topic * 100000) }}",
        "{{ (topic * 100000)|replace('', topic) }}",
        "{{ (topic * 1000)|indent(10**6) }}",
        "{{ points|tojson(indent=10**6) }}",
        "{{ points|batch(10**9, 'x')|list }}",
        "{{ topic|wordwrap(1, wrapstring=topic * 100000) }}",
        "{% set a = topic * 100000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c|length }}",
        "{% set a %}{{ topic * 100000 }}{% endset %}{% set b %}{{ a }}{{ a }}{{ a }}{% endset %}{{ b|length }}",
        "{% set a = topic * 100000 %}{{ [a, a, a] }}",
        "{% set a = topic * 100000 %}{{ [a, a, a]|join }}",
        "{% macro m(s) %}{{ s }}{{ s }}{{ s }}{% endmacro %}{{ m(topic * 100000)|length }}",
        "{{ range(10000)|map('center', 100)|list|length }}",
        "{{ 2 ** 100000000 }}",
        "{% set ns = namespace(v=3) %}{% for i in range(100) %}{% set ns.v = ns.v * ns.v %}{% endfor %}",
        "{{ lipsum(10**6) }}",
    ],
)
def test_values_too_large_to_build_are_refused_before_they_are_built(template: str) -> None:
    renderer = TemplateRenderer(timeout=5.0)  # the size checks must refuse these, not the deadline
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"the user template (would|uses|asks)") as excinfo:
        render(renderer, template, topic="x", points=[1, 2])
    assert field_of(excinfo) == "user"
    assert time.monotonic() - started < 1.0


def test_ordinary_string_work_still_renders(renderer: TemplateRenderer) -> None:
    rendered = render(
        renderer,
        "{{ topic|center(9) }}|{{ '%5d'|format(words) }}|{{ '%(a)s-%(a)s' % {'a': tone} }}|{{ '{:>4}'.format(words) }}"
        "|{{ '{a}'.format_map({'a': 1}) }}|{{ points|join(',') }}|{{ '-'.join(points) }}|{{ topic ~ words }}"
        "|{{ topic.replace('w', 'v') }}|{{ points|tojson }}|{{ 2 ** 10 }}|{{ [topic] * 2 }}|{{ topic + '!' }}"
        "|{{ range(3)|map('string')|join('-') }}|{{ meta['k'] }}|{{ (topic|safe) ~ '<' }}|{{ lipsum(1)|length > 9 }}",
        topic="owl",
        words=7,
        points=["a", "b"],
        meta={"k": "v"},
    )
    assert rendered.user == (
        "   owl   |    7|friendly-friendly|   7|1|a,b|a-b|owl7|ovl|[\"a\", \"b\"]|1024|['owl', 'owl']|owl!"
        "|0-1-2|v|owl<|True"
    )
    with pytest.raises(TemplateError, match="format_map"):
        render(renderer, "{{ '{a}'.format_map({'a': 1}, {}) }}", topic="owl")


# The time limit


def assert_timed_out(excinfo: pytest.ExceptionInfo[TemplateError], started: float) -> None:
    assert str(excinfo.value) == f"the template took longer than {TIMEOUT:g}s to render"
    assert time.monotonic() - started < 2.5 * TIMEOUT  # about twice the timeout, on a loaded machine too


def render_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "prompt-render"]


async def assert_render_threads_end() -> None:
    """Render threads end just after they report; allow them a moment on a loaded machine."""
    for _ in range(100):
        if not render_threads():
            return
        await asyncio.sleep(0.01)
    assert render_threads() == []


NESTED_EMPTY_LOOPS = (
    "{% for a in points %}{% for b in points %}{% for c in points %}{% endfor %}{% endfor %}{% endfor %}x"
)


async def test_a_loop_over_ranges_is_stopped_at_the_deadline(renderer: TemplateRenderer) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as excinfo:
        await renderer.render(
            system=None,
            user="{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
            specs=SPECS,
            values={"topic": "t"},
        )
    assert_timed_out(excinfo, started)


async def test_nested_empty_loops_are_interrupted_and_the_renderer_still_works(
    renderer: TemplateRenderer,
) -> None:
    values = {"topic": "t", "points": list(range(3000))}
    started = time.monotonic()
    with pytest.raises(TemplateError) as excinfo:
        await renderer.render(system=None, user=NESTED_EMPTY_LOOPS, specs=SPECS, values=values)
    assert_timed_out(excinfo, started)
    rendered = await renderer.render(
        system=None, user="{{ topic }} {{ points|length }}", specs=SPECS, values=values
    )
    assert rendered.user == "t 3000"
    await assert_render_threads_end()


def test_render_sync_interrupts_nested_empty_loops_too(renderer: TemplateRenderer) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as excinfo:
        render(renderer, NESTED_EMPTY_LOOPS, topic="t", points=list(range(3000)))
    assert_timed_out(excinfo, started)
    assert render(renderer, "still {{ topic }}", topic="here").user == "still here"


async def test_the_event_loop_keeps_running_during_a_slow_render(renderer: TemplateRenderer) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    with pytest.raises(TemplateError):
        await renderer.render(
            system=None,
            user=NESTED_EMPTY_LOOPS,
            specs=SPECS,
            values={"topic": "t", "points": list(range(3000))},
        )
    ticker.cancel()
    assert ticks >= 2  # a blocked loop would not tick at all


async def test_cancelling_a_render_stops_its_thread(renderer: TemplateRenderer) -> None:
    task = asyncio.create_task(
        renderer.render(
            system=None,
            user=NESTED_EMPTY_LOOPS,
            specs=SPECS,
            values={"topic": "t", "points": list(range(3000))},
        )
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_render_threads_end()


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TemplateRenderer(timeout=0)
