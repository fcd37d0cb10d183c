"""Admin prompt template pages: list and search, the editor (a save is a new version, errors beside
their fields), labels, the diff, the render preview, cost and latency per version, permissions."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from typing import Any

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.templates import TemplateDraft, TemplateVersionView, TemplateView
from tests.server.admin.conftest import Admin

HTMX = {"HX-Request": "true"}
GREETING = "Write a greeting for {{ customer }}.\n{% if urgent %}Keep it short.{% endif %}\nSign it."


def save(admin: Admin, name: str, user: str = GREETING, **fields: Any) -> TemplateVersionView:
    description = fields.pop("description", None)
    variables = fields.pop(
        "variables",
        [{"name": "customer", "required": True}, {"name": "urgent", "type": "boolean", "default": False}],
    )
    draft = TemplateDraft(user=user, variables=variables, **fields)

    async def work(llm: LLMManager) -> TemplateVersionView:
        return await llm.templates.save(name, draft, created_by="script", description=description)

    view: TemplateVersionView = admin.gateway.run(work)
    return view


def version(admin: Admin, reference: str) -> TemplateVersionView:
    async def work(llm: LLMManager) -> TemplateVersionView:
        return await llm.templates.version(reference)

    view: TemplateVersionView = admin.gateway.run(work)
    return view


def template(admin: Admin, name: str) -> TemplateView:
    async def work(llm: LLMManager) -> TemplateView:
        return await llm.templates.get(name)

    view: TemplateView = admin.gateway.run(work)
    return view


def names(admin: Admin) -> list[str]:
    async def work(llm: LLMManager) -> list[str]:
        return [view.name for view in await llm.templates.list()]

    found: list[str] = admin.gateway.run(work)
    return found


def activity(admin: Admin) -> list[tuple[str, str, str]]:
    async def work(llm: LLMManager) -> list[tuple[str, str, str]]:
        page = await llm.services.activity.page(action="template.")
        return [(entry.action, entry.target, entry.detail) for entry in page.entries]

    entries: list[tuple[str, str, str]] = admin.gateway.run(work)
    return entries


def form(**overrides: Any) -> dict[str, Any]:
    """The editor as a browser posts it: two variable rows and the always-present empty one."""
    base: dict[str, Any] = {
        "name": "greeting",
        "description": "Greets a customer",
        "system": "You are polite.",
        "user": GREETING,
        "var-0-name": "customer",
        "var-0-type": "string",
        "var-0-default": "",
        "var-0-required": "1",
        "var-0-description": "Who to greet",
        "var-1-name": "urgent",
        "var-1-type": "boolean",
        "var-1-default": "false",
        "var-1-description": "",
        "var-2-name": "",
        "var-2-type": "string",
        "var-2-default": "",
        "var-2-description": "",
        "configuration": "",
        "temperature": "0.3",
        "max_tokens": "120",
        "note": "first draft",
    }
    return {**base, **overrides}


def field_error(page: str, field: str) -> str:
    found = re.search(rf'<small id="e-{re.escape(field)}" class="field-error">([^<]*)</small>', page)
    assert found is not None, f"no error beside {field}"
    return html.unescape(found.group(1))


def demo_configuration(admin: Admin) -> None:
    spec = ConfigurationCreate(
        slug="demo", name="Demo", provider="demo", model="demo-chat", options={"delay_ms": 0}
    )

    async def work(llm: LLMManager) -> None:
        await llm.configurations.create(spec)

    admin.gateway.run(work)


# --- list -----------------------------------------------------------------------------------------


def test_the_list_shows_each_template_with_its_latest_version_and_labels_and_searches_names(
    admin: Admin,
) -> None:
    save(admin, "greeting", description="Greets a customer")
    save(admin, "greeting", note="second")
    save(admin, "summary", user="Summarise.", variables=[])
    browser = admin.signed_in("viewer")

    page = browser.get("/admin/templates").text
    assert re.findall(r'<td><a href="/admin/templates/([^"]+)">', page) == ["greeting", "summary"]
    row = page[page.index('href="/admin/templates/greeting"') :].split("</tr>")[0]
    assert "Greets a customer" in row
    assert '<td class="num">2</td>' in row
    assert "latest → v2" in row

    searched = browser.get("/admin/templates?q=summ").text
    assert re.findall(r'<td><a href="/admin/templates/([^"]+)">', searched) == ["summary"]
    assert "No template name contains" in browser.get("/admin/templates?q=nothing").text


def test_an_empty_list_invites_an_editor_to_create_the_first_template(admin: Admin) -> None:
    page = admin.signed_in("operator").get("/admin/templates").text
    assert 'href="/admin/templates/new"' in page
    assert "Create your first template" in page


# --- editor ---------------------------------------------------------------------------------------


def test_creating_a_template_saves_version_1_and_a_second_save_adds_version_2(admin: Admin) -> None:
    demo_configuration(admin)
    browser = admin.signed_in("operator")
    assert browser.get("/admin/templates/new").status_code == 200

    created = browser.post("/admin/templates/new", form(configuration="demo"))
    assert created.status_code == 303
    assert created.headers["location"] == "/admin/templates/greeting?version=1"
    shown = browser.get(created.headers["location"])
    assert "Saved as version 1." in shown.text

    first = version(admin, "greeting@1")
    assert (first.system, first.user, first.note, first.configuration) == (
        "You are polite.",
        GREETING,
        "first draft",
        "demo",
    )
    assert first.params == {"temperature": 0.3, "max_tokens": 120}
    assert [(spec.name, spec.type, spec.required, spec.default) for spec in first.variables] == [
        ("customer", "string", True, None),
        ("urgent", "boolean", False, False),
    ]
    assert first.created_by == "operator@example.com"
    assert template(admin, "greeting").description == "Greets a customer"

    editor = browser.get("/admin/templates/greeting/edit").text
    assert "Save as version 2" in editor
    assert 'value="customer"' in editor
    assert "You are polite.</textarea>" in editor

    changed = form(
        user="Greet {{ customer }} warmly.",
        system="",
        **{"var-1-name": "", "var-1-default": "", "var-1-type": "string"},
        temperature="",
        note="warmer",
        base="1",
    )
    del changed["name"]
    second = browser.post("/admin/templates/greeting/edit", changed)
    assert second.status_code == 303
    assert second.headers["location"] == "/admin/templates/greeting?version=2"
    assert "Saved as version 2." in browser.get(second.headers["location"]).text

    latest = version(admin, "greeting@2")
    assert (latest.system, latest.user, latest.note) == (None, "Greet {{ customer }} warmly.", "warmer")
    assert [spec.name for spec in latest.variables] == ["customer"]
    assert latest.params == {"max_tokens": 120}
    assert replace(version(admin, "greeting@1"), labels=first.labels) == first, "version 1 never changes"
    assert activity(admin) == [
        ("template.save", "greeting", "version 2"),
        ("template.save", "greeting", "version 1"),
    ]


def test_a_new_version_keeps_parameters_the_editor_does_not_show(admin: Admin) -> None:
    save(admin, "greeting", params={"top_p": 0.5, "temperature": 1.0})
    browser = admin.signed_in("operator")
    editor = browser.get("/admin/templates/greeting/edit").text
    assert "top_p=0.5" in editor
    posted = form(base="1", temperature="0.2")
    del posted["name"]
    assert browser.post("/admin/templates/greeting/edit", posted).status_code == 303
    assert version(admin, "greeting@2").params == {"top_p": 0.5, "temperature": 0.2, "max_tokens": 120}


def test_validation_errors_are_shown_beside_their_fields_with_what_was_typed(admin: Admin) -> None:
    browser = admin.signed_in("operator")
    cases = [
        ({"user": "Hello {{ customer }\nline two"}, "user", "syntax error on line 1"),
        ({"user": "Hello\n{% for x in %}"}, "user", "syntax error on line 2"),
        ({"user": "Hello {{ customer }} from {{ sender }}"}, "user", "'sender', which is not declared"),
        ({"system": "Be {{ tone }}."}, "system", "'tone', which is not declared"),
        ({"var-1-default": "maybe"}, "var-1-default", "default of 'urgent' must be a boolean"),
        ({"var-1-name": "not a name"}, "var-1-name", "identifier"),
        ({"var-1-name": "customer"}, "var-1-name", "declared twice"),
        ({"var-0-default": "Ada"}, "var-0-default", "required, so it cannot have a default"),
        ({"name": "Not A Name!"}, "name", "lower-case"),
        ({"temperature": "5"}, "temperature", "less than or equal to 2"),
    ]
    for overrides, field, message in cases:
        response = browser.post("/admin/templates/new", form(**overrides))
        assert response.status_code == 422, overrides
        assert message in field_error(response.text, field), (overrides, field_error(response.text, field))
        assert f'id="f-{field}"' in response.text
        typed = overrides.get(field if not field.startswith("var-") else "", None)
        if typed is not None:
            assert html.escape(typed, quote=False) in response.text
    assert names(admin) == []


def test_the_form_keeps_the_variable_rows_as_typed_after_an_error(admin: Admin) -> None:
    browser = admin.signed_in("operator")
    response = browser.post("/admin/templates/new", form(user="{{ oops", **{"var-1-description": "Rush it"}))
    assert response.status_code == 422
    page = response.text
    assert 'id="f-var-0-name" name="var-0-name" type="text" value="customer"' in page
    assert re.search(r'id="f-var-0-required" name="var-0-required" type="checkbox" value="1" checked', page)
    assert 'value="Rush it"' in page
    assert '<option value="boolean" selected>' in page
    assert 'id="f-var-2-name"' in page, "an empty row to add another variable"
    assert "{{ oops</textarea>" in page
    assert 'value="Greets a customer"' in page


def test_new_refuses_a_name_that_exists(admin: Admin) -> None:
    save(admin, "greeting")
    response = admin.signed_in("operator").post("/admin/templates/new", form())
    assert response.status_code == 422
    assert "exists" in field_error(response.text, "name")
    assert template(admin, "greeting").latest_version == 1


def test_unknown_templates_and_versions_are_404(admin: Admin) -> None:
    save(admin, "greeting")
    browser = admin.signed_in("operator")
    assert browser.get("/admin/templates/nope").status_code == 404
    assert browser.get("/admin/templates/greeting?version=9").status_code == 404
    assert browser.get("/admin/templates/nope/edit").status_code == 404
    assert browser.get("/admin/templates/greeting/diff?from=1&to=9").status_code == 404


# --- the template page ----------------------------------------------------------------------------


def test_the_template_page_lists_versions_and_shows_the_chosen_one(admin: Admin) -> None:
    save(admin, "greeting", system="Be kind.", note="first")
    save(admin, "greeting", user="Hi {{ customer }}", note="shorter")
    browser = admin.signed_in("viewer")
    page = browser.get("/admin/templates/greeting").text
    assert re.findall(r'aria-label="Version (\d+)"', page) == ["2", "1"]
    assert "shorter" in page
    assert "first" in page
    assert "script" in page
    assert '<h2 id="version-heading">Version 2</h2>' in page
    assert 'data-part="user">Hi {{ customer }}</pre>' in page

    older = browser.get("/admin/templates/greeting?version=1").text
    assert '<h2 id="version-heading">Version 1</h2>' in older
    assert 'data-part="system">Be kind.</pre>' in older
    assert "<code>customer</code>" in older


def test_labels_are_set_moved_and_removed_and_latest_is_refused(admin: Admin) -> None:
    save(admin, "greeting")
    save(admin, "greeting", note="second")
    browser = admin.signed_in("operator")

    response = browser.post("/admin/templates/greeting/labels", {"label": "production", "version": "1"})
    assert response.status_code == 303
    assert "production now points at version 1." in browser.get(response.headers["location"]).text
    assert template(admin, "greeting").labels == {"latest": 2, "production": 1}
    assert version(admin, "greeting").version == 1, "a bare name now means production"

    assert (
        browser.post("/admin/templates/greeting/labels", {"label": "Staging", "version": "2"}).status_code
        == 303
    )
    assert (
        browser.post("/admin/templates/greeting/labels", {"label": "production", "version": "2"}).status_code
        == 303
    )
    assert template(admin, "greeting").labels == {"latest": 2, "production": 2, "staging": 2}
    assert "production → v2" in browser.get("/admin/templates").text

    refused = browser.post("/admin/templates/greeting/labels", {"label": "latest", "version": "1"})
    assert refused.status_code == 409
    assert "newest version" in field_error(refused.text, "label")
    bad = browser.post("/admin/templates/greeting/labels", {"label": "no spaces", "version": "1"})
    assert bad.status_code == 422
    assert 'value="no spaces"' in bad.text
    missing = browser.post("/admin/templates/greeting/labels", {"label": "beta", "version": "7"})
    assert missing.status_code == 422
    assert "no version 7" in field_error(missing.text, "label_version")

    removed = browser.post("/admin/templates/greeting/labels/production/delete")
    assert removed.status_code == 303
    assert template(admin, "greeting").labels == {"latest": 2, "staging": 2}
    assert browser.post("/admin/templates/greeting/labels/latest/delete").status_code == 409
    assert browser.post("/admin/templates/greeting/labels/production/delete").status_code == 404
    assert template(admin, "greeting").labels == {"latest": 2, "staging": 2}


def test_the_diff_marks_added_and_removed_lines_per_part(admin: Admin) -> None:
    save(admin, "greeting", system="Be kind.", params={"temperature": 0.5})
    save(
        admin,
        "greeting",
        system="Be kind.",
        user=GREETING.replace("Sign it.", "Sign it as {{ sender }}."),
        variables=[
            {"name": "customer", "required": True},
            {"name": "urgent", "type": "boolean"},
            {"name": "sender"},
        ],
        params={"temperature": 0.9},
    )
    browser = admin.signed_in("viewer")
    fragment = browser.get("/admin/templates/greeting/diff?from=1&to=2", headers=HTMX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    text = html.unescape(fragment.text)
    assert '<del class="diff-line diff-removed" title="removed">- Sign it.</del>' in text
    assert '<ins class="diff-line diff-added" title="added">+ Sign it as {{ sender }}.</ins>' in text
    assert '<ins class="diff-line diff-added" title="added">+ sender: string, optional</ins>' in text
    assert "- urgent: boolean, optional, default false" in text
    assert "- temperature: 0.5" in text
    assert "+ temperature: 0.9" in text
    system = text[text.index('aria-label="System"') :].split("</section>")[0]
    assert "unchanged" in system
    assert "diff-line" not in system

    page = browser.get("/admin/templates/greeting/diff?from=1&to=2")
    assert page.status_code == 200
    assert "<html" in page.text
    assert "Version 1 → version 2" in page.text
    default = browser.get("/admin/templates/greeting/diff").text
    assert 'data-from="1" data-to="2"' in default


def test_the_diff_folds_long_unchanged_runs_around_a_change(admin: Admin) -> None:
    lines = [f"Rule {number}." for number in range(1, 21)]
    save(admin, "rules", user="\n".join(lines), variables=[])
    save(admin, "rules", user="\n".join([*lines[:9], "Rule ten, reworded.", *lines[10:]]), variables=[])
    text = html.unescape(admin.signed_in("viewer").get("/admin/templates/rules/diff", headers=HTMX).text)
    user = text[text.index('aria-label="User"') :].split("</section>")[0]
    shown = re.findall(r'class="diff-line(?: [^"]*)?"[^>]*>([^<]*)<', user)
    assert shown == [
        "  … 6 unchanged lines …",
        "  Rule 7.",
        "  Rule 8.",
        "  Rule 9.",
        "- Rule 10.",
        "+ Rule ten, reworded.",
        "  Rule 11.",
        "  Rule 12.",
        "  Rule 13.",
        "  … 7 unchanged lines …",
    ]


def test_the_preview_renders_with_defaults_and_names_a_missing_variable(admin: Admin) -> None:
    save(admin, "greeting", system="You greet {{ customer }}.")
    browser = admin.signed_in("viewer")
    page = browser.get("/admin/templates/greeting").text
    assert 'name="v-customer"' in page
    assert 'name="v-urgent"' in page
    assert re.search(r'<option value="false"\s+selected>', page), "pre-filled with the default"

    rendered = browser.post(
        "/admin/templates/greeting/preview",
        {"version": "1", "v-customer": "Ada", "v-urgent": "true"},
        headers=HTMX,
    )
    assert rendered.status_code == 200
    assert 'data-rendered="system">You greet Ada.</pre>' in rendered.text
    assert 'data-rendered="user">Write a greeting for Ada.\nKeep it short.\nSign it.</pre>' in rendered.text

    missing = browser.post(
        "/admin/templates/greeting/preview", {"version": "1", "v-customer": ""}, headers=HTMX
    )
    assert missing.status_code == 200
    assert "variable &#39;customer&#39; is required" in missing.text

    wrong = browser.post(
        "/admin/templates/greeting/preview",
        {"version": "1", "v-customer": "Ada", "v-urgent": "perhaps"},
        headers=HTMX,
    )
    assert "variable &#39;urgent&#39; must be a boolean" in wrong.text

    plain = browser.post("/admin/templates/greeting/preview", {"version": "1", "v-customer": ""})
    assert plain.status_code == 422
    assert "<html" in plain.text
    assert "is required" in plain.text


def test_the_preview_reports_the_sandbox_refusing_python_internals(admin: Admin) -> None:
    save(
        admin,
        "escape",
        user="{{ customer.__class__.__mro__ }}",
        variables=[{"name": "customer", "default": "x"}],
    )
    response = admin.signed_in("viewer").post(
        "/admin/templates/escape/preview", {"version": "1"}, headers=HTMX
    )
    assert response.status_code == 200
    assert "sandbox forbids" in response.text
    assert "&lt;class" not in response.text


def test_cost_and_latency_are_shown_per_version_after_calls(admin: Admin) -> None:
    demo_configuration(admin)
    save(admin, "greeting")
    save(admin, "greeting", user="Hi {{ customer }}!")

    async def calls(llm: LLMManager) -> None:
        for reference in ("greeting@1", "greeting@1", "greeting@2"):
            await llm.chat("demo", template=reference, variables={"customer": "Ada"})

    admin.gateway.run(calls)
    page = admin.signed_in("viewer").get("/admin/templates/greeting").text
    rows = dict(re.findall(r'<tr data-version="(\d+)">(.*?)</tr>', page, re.DOTALL))
    assert set(rows) == {"1", "2"}
    cells = {key: re.findall(r'<td class="num">([^<]*)</td>', row) for key, row in rows.items()}
    assert cells["1"][0:2] == ["2", "0"]
    assert cells["2"][0:2] == ["1", "0"]
    assert all(int(cell.replace(",", "")) > 0 for cell in cells["1"][2:4])
    assert 'data-chart="chart-template-cost"' in page
    assert 'id="chart-template-latency"' in page
    assert "js/charts.js" in page


def test_a_page_without_calls_says_so_and_loads_no_chart_script(admin: Admin) -> None:
    save(admin, "greeting")
    page = admin.signed_in("viewer").get("/admin/templates/greeting").text
    assert "No calls have used this template yet" in page
    assert "js/charts.js" not in page


def test_deleting_a_template_removes_it_with_every_version(admin: Admin) -> None:
    save(admin, "greeting")
    save(admin, "greeting")
    browser = admin.signed_in("operator")
    response = browser.post("/admin/templates/greeting/delete")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/templates"
    assert "Template greeting deleted." in browser.get("/admin/templates").text
    assert names(admin) == []
    assert browser.post("/admin/templates/greeting/delete").status_code == 404


# --- permissions and CSRF -------------------------------------------------------------------------


def test_a_viewer_reads_and_previews_but_cannot_change_anything(admin: Admin) -> None:
    save(admin, "greeting")
    viewer = admin.signed_in("viewer")
    page = viewer.get("/admin/templates/greeting").text
    assert 'href="/admin/templates/greeting/edit"' not in page
    assert "/labels" not in page
    assert "/delete" not in page
    assert 'href="/admin/templates/new"' not in viewer.get("/admin/templates").text
    assert viewer.get("/admin/templates/greeting/diff", headers=HTMX).status_code == 200

    assert viewer.get("/admin/templates/new").status_code == 403
    assert viewer.get("/admin/templates/greeting/edit").status_code == 403
    assert viewer.post("/admin/templates/new", form(name="other")).status_code == 403
    saved = form(base="1")
    del saved["name"]
    assert viewer.post("/admin/templates/greeting/edit", saved).status_code == 403
    assert (
        viewer.post("/admin/templates/greeting/labels", {"label": "production", "version": "1"}).status_code
        == 403
    )
    assert viewer.post("/admin/templates/greeting/delete").status_code == 403
    assert template(admin, "greeting").latest_version == 1
    assert template(admin, "greeting").labels == {"latest": 1}
    assert names(admin) == ["greeting"]


def test_forms_without_the_session_csrf_token_are_refused(admin: Admin) -> None:
    save(admin, "greeting")
    browser = admin.signed_in("admin")
    for url in ("/admin/templates/new", "/admin/templates/greeting", "/admin/templates/greeting/edit"):
        tokens = re.findall(r'name="csrf_token" value="([^"]*)"', browser.get(url).text)
        assert tokens, url
        assert set(tokens) == {browser.csrf}, url
    assert browser.post("/admin/templates/new", {**form(name="other"), "csrf_token": ""}).status_code == 403
    edit = {**form(base="1"), "csrf_token": "forged"}
    assert browser.post("/admin/templates/greeting/edit", edit).status_code == 403
    assert (
        browser.post(
            "/admin/templates/greeting/labels", {"label": "production", "version": "1", "csrf_token": ""}
        ).status_code
        == 403
    )
    assert browser.post("/admin/templates/greeting/delete", {"csrf_token": ""}).status_code == 403
    assert names(admin) == ["greeting"]
    assert template(admin, "greeting").labels == {"latest": 1}
