"""Prompt templates: immutable numbered versions, labels, sandboxed rendering, and usage by version."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from llm_manager import TextDelta
from llm_manager.errors import ConflictError, InvalidInputError, NotFoundError
from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.prompt_rendering import TemplateError, TemplateRenderer, parse_variable_specs
from llm_manager.services.templates import TemplateDraft
from llm_manager.services.usage import UsageFilter, UsageRow

PRICED = {"input_price": Decimal(1), "output_price": Decimal(1)}
GREETING = TemplateDraft(
    system="You greet {{ name }} {{ 'formally' if formal else 'warmly' }}.",
    user="Say hello to {{ name }} {{ times }} times.",
    variables=[
        {"name": "name", "type": "string", "required": True},
        {"name": "times", "type": "integer", "default": 2},
        {"name": "formal", "type": "boolean", "default": False},
    ],
)


async def _demo(llm: LLMManager, slug: str = "demo", **fields: Any) -> None:
    await llm.configurations.create(
        ConfigurationCreate(
            slug=slug, provider="demo", model="demo-chat", options={"delay_ms": 0}, **PRICED, **fields
        )
    )


async def _rows(llm: LLMManager, template: str) -> list[UsageRow]:
    return (await llm.usage.list_page(filters=UsageFilter(template=template))).rows


def _draft(user: str, **fields: Any) -> TemplateDraft:
    return TemplateDraft(user=user, **fields)


# -- versions and labels ---------------------------------------------------------------------


async def test_saving_adds_numbered_versions_and_never_changes_one(llm: LLMManager) -> None:
    first = await llm.templates.save("greet", _draft("Hello v1"), created_by="ada", description="Greets")
    second = await llm.templates.save("greet", _draft("Hello v2", note="friendlier"))

    assert (first.version, second.version) == (1, 2)
    assert (first.labels, second.labels) == (("latest",), ("latest",))
    one = await llm.templates.version("greet@1")
    assert (one.user, one.created_by, one.labels) == ("Hello v1", "ada", ())
    assert one.created_at == first.created_at
    assert [v.version for v in await llm.templates.versions("greet")] == [2, 1]
    assert (await llm.templates.version("greet@2")).note == "friendlier"
    template = await llm.templates.get("greet")
    assert (template.latest_version, template.labels, template.description) == (2, {"latest": 2}, "Greets")


async def test_labels_point_at_versions_and_a_bare_name_prefers_production(llm: LLMManager) -> None:
    for count in (1, 2, 3):
        await llm.templates.save("greet", _draft(f"Hello v{count}"))

    assert (await llm.templates.version("greet")).version == 3, "no production label: the newest"
    await llm.templates.set_label("greet", "production", 1)
    await llm.templates.set_label("greet", "canary", 2)

    async def number(reference: str) -> int:
        return (await llm.templates.version(reference)).version

    assert await number("greet") == 1
    assert await number("greet@production") == 1
    assert await number("greet@canary") == 2
    assert await number("greet@latest") == 3
    assert await number("greet@3") == 3
    assert (await llm.templates.get("greet")).labels == {"latest": 3, "production": 1, "canary": 2}
    assert (await llm.templates.version("greet@2")).labels == ("canary",)

    await llm.templates.set_label("greet", "production", 3)  # a label moves
    assert await number("greet") == 3
    assert (await llm.templates.version("greet@3")).labels == ("latest", "production")
    await llm.templates.remove_label("greet", "production")
    await llm.templates.save("greet", _draft("Hello v4"))
    assert await number("greet") == 4
    assert await number("greet@canary") == 2


async def test_labels_and_references_are_checked(llm: LLMManager) -> None:
    await llm.templates.save("greet", _draft("Hello"))

    with pytest.raises(ConflictError):
        await llm.templates.set_label("greet", "latest", 1)
    with pytest.raises(NotFoundError):
        await llm.templates.set_label("greet", "production", 2)
    with pytest.raises(InvalidInputError):
        await llm.templates.set_label("greet", "Not A Label!", 1)
    with pytest.raises(NotFoundError):
        await llm.templates.set_label("missing", "production", 1)
    with pytest.raises(NotFoundError):
        await llm.templates.version("greet@production")
    with pytest.raises(NotFoundError):
        await llm.templates.version("greet@7")
    with pytest.raises(NotFoundError):
        await llm.templates.version("missing")
    for reference in ("@1", "greet@", ""):
        with pytest.raises(InvalidInputError):
            await llm.templates.version(reference)


async def test_names_drafts_and_configurations_are_validated(llm: LLMManager) -> None:
    with pytest.raises(InvalidInputError):
        await llm.templates.save("Bad Name", _draft("Hello"))
    with pytest.raises(InvalidInputError):
        await llm.templates.save("greet", _draft("   "))
    with pytest.raises(NotFoundError):
        await llm.templates.save("greet", _draft("Hello", configuration="missing"))
    with pytest.raises(InvalidInputError):
        await llm.templates.save("greet", _draft("Hello", params={"temperature": "hot"}))
    with pytest.raises(InvalidInputError):
        await llm.templates.save("greet", _draft("Hello", variables=[{"name": "x", "type": "colour"}]))
    with pytest.raises(NotFoundError):
        await llm.templates.get("greet")
    assert await llm.templates.list() == []


async def test_save_refuses_undeclared_variables_and_bad_syntax(llm: LLMManager) -> None:
    with pytest.raises(TemplateError, match="customer"):
        await llm.templates.save("greet", _draft("Hello {{ customer }}"))
    with pytest.raises(TemplateError, match="customer"):
        await llm.templates.save("greet", _draft("Hello", system="For {{ customer }}"))
    with pytest.raises(TemplateError):
        await llm.templates.save("greet", _draft("Hello {{ name"))
    with pytest.raises(TemplateError):
        await llm.templates.save("greet", _draft("{% include 'secrets.txt' %}"))
    with pytest.raises(NotFoundError):
        await llm.templates.get("greet")


async def test_list_search_and_delete(llm: LLMManager) -> None:
    await llm.templates.save("support-reply", _draft("Hi"))
    await llm.templates.save("sales_pitch", _draft("Buy"))
    await llm.templates.save("salesxpitch", _draft("Buy"))

    assert [t.name for t in await llm.templates.list()] == ["sales_pitch", "salesxpitch", "support-reply"]
    assert [t.name for t in await llm.templates.list(search="SUPPORT")] == ["support-reply"]
    assert [t.name for t in await llm.templates.list(search="s_p")] == ["sales_pitch"]

    await llm.templates.delete("support-reply")
    with pytest.raises(NotFoundError):
        await llm.templates.version("support-reply@1")
    await llm.templates.save("support-reply", _draft("Again"))
    assert (await llm.templates.get("support-reply")).latest_version == 1


async def test_concurrent_saves_get_distinct_versions(llm: LLMManager) -> None:
    saved = await asyncio.gather(*(llm.templates.save("busy", _draft(f"Edit {n}")) for n in range(5)))

    assert sorted(version.version for version in saved) == [1, 2, 3, 4, 5]
    assert (await llm.templates.get("busy")).latest_version == 5
    for version in saved:
        assert (await llm.templates.version(f"busy@{version.version}")).user == version.user


# -- rendering -------------------------------------------------------------------------------


async def test_render_applies_defaults_and_coerces_values(llm: LLMManager) -> None:
    await llm.templates.save("greet", GREETING)

    rendered = await llm.templates.render("greet", {"name": "Ada", "formal": "yes"})

    assert (rendered.name, rendered.version) == ("greet", 1)
    assert rendered.system == "You greet Ada formally."
    assert rendered.user == "Say hello to Ada 2 times."
    assert rendered.variables == {"name": "Ada", "times": 2, "formal": True}
    coerced = await llm.templates.render("greet@1", {"name": "Bo", "times": "5", "formal": False})
    assert coerced.user == "Say hello to Bo 5 times."
    assert coerced.system == "You greet Bo warmly."


async def test_variables_are_checked_by_name(llm: LLMManager) -> None:
    await llm.templates.save("greet", GREETING)

    with pytest.raises(InvalidInputError, match="'name'") as missing:
        await llm.templates.render("greet", {"times": 1})
    assert missing.value.field == "variables.name"
    with pytest.raises(InvalidInputError, match="'times'"):
        await llm.templates.render("greet", {"name": "Ada", "times": "many"})
    with pytest.raises(InvalidInputError, match="'nickname'"):
        await llm.templates.render("greet", {"name": "Ada", "nickname": "A"})


async def test_a_blank_system_part_renders_as_none() -> None:
    renderer = TemplateRenderer()
    specs = parse_variable_specs([{"name": "strict", "type": "boolean", "default": False}])
    system = "{% if strict %}Be strict.{% endif %}"

    assert (await renderer.render(system=system, user="Hi", specs=specs, values={})).system is None
    strict = await renderer.render(system=system, user="Hi", specs=specs, values={"strict": True})
    assert strict.system == "Be strict."


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ text.__class__.__base__.__subclasses__() }}",
    "{{ text|attr('__class__') }}",
    "{{ '{0.__class__}'.format(text) }}",
    "{{ self.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__['__builtins__'] }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ range.__self__ }}",
    "{{ text.upper.__globals__ }}",
    "{{ items.append(1) }}",
    "{{ {}.update(a=1) }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{{ config }}",
    "{{ 'a' * 100000000 }}",
    "{% for i in range(100000000) %}{% endfor %}",
]


async def test_sandbox_escapes_are_refused(llm: LLMManager) -> None:
    variables = [
        {"name": "text", "type": "string", "default": "x"},
        {"name": "items", "type": "list", "default": ["a"]},
    ]
    for number, source in enumerate(ESCAPES):
        # Refused when saved, or else when rendered: never rendered into a prompt.
        with pytest.raises(TemplateError):
            await llm.templates.save(f"attack-{number}", _draft(source, variables=variables))
            await llm.templates.render(f"attack-{number}")
        with pytest.raises(TemplateError):
            await llm.templates.save(
                f"attack-system-{number}", _draft("Hi", system=source, variables=variables)
            )
            await llm.templates.render(f"attack-system-{number}")


async def test_a_slow_template_is_stopped() -> None:
    source = (
        "{% for a in items %}{% for b in items %}{% for c in items %}{% endfor %}{% endfor %}{% endfor %}"
    )
    renderer = TemplateRenderer(timeout=0.2)
    specs = parse_variable_specs([{"name": "items", "type": "list"}])

    with pytest.raises(TemplateError, match="longer than"):
        await renderer.render(
            system=None, user=source + "done", specs=specs, values={"items": list(range(2000))}
        )


# -- templates in calls ----------------------------------------------------------------------


async def test_chat_with_a_template_records_its_name_and_version(llm: LLMManager) -> None:
    await _demo(llm, is_default=True)
    await llm.templates.save("greet", GREETING)
    await llm.templates.save("greet", _draft("Just say hi to {{ name }}.", variables=[{"name": "name"}]))

    result = await llm.chat(None, template="greet@1", variables={"name": "Ada"})

    assert "Say hello to Ada 2 times." in result.text  # the demo model quotes the prompt
    row = (await llm.usage.list_page()).rows[0]
    assert (row.id, row.template_name, row.template_version) == (result.log_id, "greet", 1)
    assert row.operation == "chat"
    latest = await llm.chat("demo", template="greet", variables={"name": "Bo"})
    assert "Just say hi to Bo." in latest.text
    assert {(r.id, r.template_version) for r in await _rows(llm, "greet")} == {
        (result.log_id, 1),
        (latest.log_id, 2),
    }


async def test_a_rendered_template_can_be_the_prompt_of_chat_and_stream(llm: LLMManager) -> None:
    await _demo(llm)
    await llm.templates.save("greet", GREETING)
    rendered = await llm.templates.render("greet", {"name": "Ada"})

    chatted = await llm.chat("demo", rendered)
    stream = llm.stream("demo", rendered)
    async with stream:
        text = "".join([event.text async for event in stream if isinstance(event, TextDelta)])

    assert "Say hello to Ada 2 times." in chatted.text
    assert "Say hello to Ada 2 times." in text
    rows = await _rows(llm, "greet")
    assert {(row.operation, row.template_version) for row in rows} == {("chat", 1), ("stream", 1)}
    plain = await llm.chat("demo", "no template")
    assert (await llm.usage.get(plain.log_id)) is not None
    assert len(await _rows(llm, "greet")) == 2


async def test_a_template_and_a_prompt_together_are_refused(llm: LLMManager) -> None:
    await _demo(llm)
    await llm.templates.save("greet", GREETING)

    with pytest.raises(InvalidInputError):
        await llm.chat("demo", "hello", template="greet", variables={"name": "Ada"})
    with pytest.raises(InvalidInputError):
        await llm.chat("demo")
    with pytest.raises(InvalidInputError, match="'name'"):
        await llm.chat("demo", template="greet")
    assert (await llm.usage.list_page()).rows == []


async def test_the_templates_configuration_and_params_are_defaults(llm: LLMManager) -> None:
    await _demo(llm, "small")
    await _demo(llm, "big")
    await llm.templates.save(
        "short", _draft("Tell me a story", configuration="small", params={"max_tokens": 3})
    )

    by_template = await llm.chat(None, template="short")
    overridden = await llm.chat("big", template="short", max_tokens=5)
    same_configuration = await llm.chat(None, template="short", max_tokens=4)

    rows = {row.id: row for row in await _rows(llm, "short")}
    assert (rows[by_template.log_id].configuration, by_template.usage.completion_tokens) == ("small", 3)
    assert (rows[overridden.log_id].configuration, overridden.usage.completion_tokens) == ("big", 5)
    assert (rows[same_configuration.log_id].configuration, same_configuration.usage.completion_tokens) == (
        "small",
        4,
    )
    assert (await llm.templates.version("short")).configuration == "small"


async def _two_versions_used(llm: LLMManager) -> list[UsageRow]:
    """Version 1 called twice, version 2 once, and a call from no template; their usage rows."""
    await _demo(llm)
    await llm.templates.save("greet", GREETING)
    await llm.templates.save(
        "greet", _draft("Hi {{ name }}, in many many more words than before.", variables=[{"name": "name"}])
    )
    for name in ("Ada", "Bo"):
        await llm.chat("demo", template="greet@1", variables={"name": name})
    await llm.chat("demo", template="greet@2", variables={"name": "Cy"})
    await llm.chat("demo", "not from a template")
    await llm.services.writer.flush()  # usage rows are written off the call's path
    return await _rows(llm, "greet")


async def test_stats_compare_versions_by_requests_tokens_and_latency(llm: LLMManager) -> None:
    rows = await _two_versions_used(llm)

    stats = await llm.templates.stats("greet")

    assert [s.version for s in stats] == [2, 1]
    by_version = {s.version: s for s in stats}
    for version, requests in ((1, 2), (2, 1)):
        mine = [row for row in rows if row.template_version == version]
        summary = by_version[version]
        assert (summary.requests, summary.errors) == (requests, 0)
        assert summary.prompt_tokens == sum(row.prompt_tokens for row in mine)
        assert summary.completion_tokens == sum(row.completion_tokens for row in mine)
        assert summary.avg_latency_ms is not None
        assert summary.avg_latency_ms == pytest.approx(sum(row.latency_ms for row in mine) / requests)
    with pytest.raises(NotFoundError):
        await llm.templates.stats("missing")


async def test_stats_compare_versions_by_cost(llm: LLMManager) -> None:
    rows = await _two_versions_used(llm)

    stats = await llm.templates.stats("greet")

    for summary in stats:
        mine = [row for row in rows if row.template_version == summary.version]
        assert summary.cost == sum((row.cost or Decimal(0)) for row in mine)
        assert summary.cost > 0
        assert summary.avg_cost == summary.cost / summary.requests


async def test_usage_rows_keep_the_version_after_the_template_is_deleted(llm: LLMManager) -> None:
    await _demo(llm)
    await llm.templates.save("greet", GREETING)
    result = await llm.chat("demo", template="greet", variables={"name": "Ada"})

    await llm.templates.delete("greet")

    row = await llm.usage.get(result.log_id)
    assert row is not None
    assert (row.template_name, row.template_version) == ("greet", 1)
