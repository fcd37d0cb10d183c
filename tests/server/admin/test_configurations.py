"""Admin configurations pages: list and filters, forms with field errors, the write-only key,
actions (activate, default, test connection, delete), model discovery and permissions."""

from __future__ import annotations

import re
from typing import Any

from llm_manager.manager import LLMManager
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.configurations import ConfigurationView
from tests.server.admin.conftest import Admin, Browser

SECRET = "sk-test-SUPERSECRET-key-9f8e7d"
HTMX = {"HX-Request": "true"}


def create(admin: Admin, **fields: Any) -> ConfigurationView:
    spec = ConfigurationCreate.model_validate({"provider": "demo", "model": "demo-chat", **fields})

    async def work(llm: LLMManager) -> ConfigurationView:
        return await llm.configurations.create(spec)

    view: ConfigurationView = admin.gateway.run(work)
    return view


def stored_key(admin: Admin, slug: str) -> str | None:
    async def work(llm: LLMManager) -> str | None:
        return (await llm.configurations.resolve(slug)).api_key

    key: str | None = admin.gateway.run(work)
    return key


def get(admin: Admin, slug: str) -> ConfigurationView:
    async def work(llm: LLMManager) -> ConfigurationView:
        return await llm.configurations.get(slug)

    view: ConfigurationView = admin.gateway.run(work)
    return view


def slugs(admin: Admin) -> list[str]:
    async def work(llm: LLMManager) -> list[str]:
        return [view.slug for view in await llm.configurations.list_all()]

    found: list[str] = admin.gateway.run(work)
    return found


def activity(admin: Admin) -> list[tuple[str, str, str]]:
    async def work(llm: LLMManager) -> list[tuple[str, str, str]]:
        page = await llm.services.activity.page(limit=200, action="configuration.")
        return [(entry.action, entry.target, entry.detail) for entry in page.entries]

    entries: list[tuple[str, str, str]] = admin.gateway.run(work)
    return entries


def form(**overrides: Any) -> dict[str, Any]:
    """A complete create form as a browser posts it (unchecked boxes are simply absent)."""
    base: dict[str, Any] = {
        "slug": "chat",
        "name": "Chat",
        "provider": "demo",
        "model": "demo-chat",
        "base_url": "",
        "api_key": "",
        "application": "",
        "is_active": "1",
        "fallbacks": ["", "", ""],
        "temperature": "0.5",
        "max_tokens": "200",
        "stop": "",
    }
    return {**base, **overrides}


def table_slugs(page: str) -> list[str]:
    return re.findall(r'<td><a href="/admin/configurations/([^"]+)">', page)


def test_list_filters_by_text_provider_scope_and_status(admin: Admin) -> None:
    admin.gateway.run(lambda llm: llm.applications.create("billing"))
    create(admin, slug="demo", name="Demo")
    create(admin, slug="gpt", provider="openai", model="gpt-4o-mini", api_key=SECRET, fallbacks=["demo"])
    create(admin, slug="local", provider="ollama", model="qwen3:4b", is_active=False, application="billing")
    browser = admin.signed_in("viewer")

    page = browser.get("/admin/configurations")
    assert page.status_code == 200
    assert table_slugs(page.text) == ["demo", "gpt", "local"]
    assert "gpt-4o-mini" in page.text
    assert "not set" in page.text  # the ollama configuration has no key
    assert SECRET not in page.text
    assert table_slugs(browser.get("/admin/configurations?q=GPT-4O").text) == ["gpt"]
    assert table_slugs(browser.get("/admin/configurations?q=dem").text) == ["demo"]
    assert table_slugs(browser.get("/admin/configurations?provider=ollama").text) == ["local"]
    assert table_slugs(browser.get("/admin/configurations?status=inactive").text) == ["local"]
    assert table_slugs(browser.get("/admin/configurations?status=active").text) == ["demo", "gpt"]
    assert table_slugs(browser.get("/admin/configurations?application=billing").text) == ["local"]
    assert table_slugs(browser.get("/admin/configurations?application=(global)").text) == ["demo", "gpt"]
    nothing = browser.get("/admin/configurations?q=nothing-like-this")
    assert table_slugs(nothing.text) == []
    assert "No configuration matches these filters" in nothing.text


def test_empty_list_says_what_to_do_next(admin: Admin) -> None:
    page = admin.signed_in("operator").get("/admin/configurations")
    assert page.status_code == 200
    assert "Create your first configuration" in page.text
    assert 'href="/admin/configurations/new"' in page.text


def test_more_than_fifty_are_paginated(admin: Admin) -> None:
    for number in range(53):
        create(admin, slug=f"c{number:03d}")
    browser = admin.signed_in("viewer")
    first = browser.get("/admin/configurations")
    assert len(table_slugs(first.text)) == 50
    assert "Page 1 of 2" in first.text
    assert 'href="/admin/configurations?page=2"' in first.text
    second = browser.get("/admin/configurations?page=2")
    assert table_slugs(second.text) == ["c050", "c051", "c052"]


def test_create_with_a_bad_slug_shows_the_error_beside_it_and_writes_nothing(admin: Admin) -> None:
    browser = admin.signed_in("operator")
    response = browser.post("/admin/configurations/new", form(slug="Bad Slug!"))
    assert response.status_code == 422
    assert re.search(r'id="e-slug" class="field-error">use 1-64 lowercase', response.text)
    assert 'value="Bad Slug!"' in response.text  # what was typed comes back
    assert slugs(admin) == []


def test_create_with_temperature_out_of_range_points_at_temperature(admin: Admin) -> None:
    browser = admin.signed_in("operator")
    response = browser.post("/admin/configurations/new", form(temperature="5"))
    assert response.status_code == 422
    assert re.search(r'id="e-temperature" class="field-error">[^<]*less than or equal to 2', response.text)
    assert 'id="f-temperature" name="temperature" type="number" value="5"' in response.text
    assert slugs(admin) == []


def test_create_with_a_taken_slug_or_half_a_price_is_refused_beside_the_field(admin: Admin) -> None:
    create(admin, slug="chat")
    browser = admin.signed_in("operator")
    taken = browser.post("/admin/configurations/new", form())
    assert taken.status_code == 422
    assert re.search(r'id="e-slug" class="field-error">[^<]*already taken', taken.text)
    half = browser.post("/admin/configurations/new", form(slug="priced", input_price="1.5"))
    assert half.status_code == 422
    assert re.search(
        r'id="e-input_price" class="field-error">[^<]*both input_price and output_price', half.text
    )
    assert slugs(admin) == ["chat"]


def test_create_saves_every_field_and_logs_the_activity(admin: Admin) -> None:
    admin.gateway.run(lambda llm: llm.applications.create("billing"))
    create(admin, slug="backup")
    browser = admin.signed_in("operator")
    new_form = browser.get("/admin/configurations/new")
    assert new_form.status_code == 200
    assert 'name="api_key" type="password"' in new_form.text
    assert 'data-provider-field="base_url"' in new_form.text
    response = browser.post(
        "/admin/configurations/new",
        form(
            slug="chat",
            application="billing",
            is_default="1",
            fallbacks=["backup", "", ""],
            top_p="0.9",
            stop="END\nSTOP",
            input_price="0.5",
            output_price="1.5",
            rpm_limit="60",
        ),
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/configurations/chat"
    view = get(admin, "chat")
    assert view.application == "billing"
    assert view.is_default
    assert view.is_active
    assert view.fallbacks == ("backup",)
    assert view.default_params == {
        "temperature": 0.5,
        "max_tokens": 200,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
    }
    assert view.price_override is not None
    assert str(view.price_override.output) == "1.5"
    assert view.rpm_limit == 60
    assert view.base_url is None  # the demo provider takes none
    detail = browser.get("/admin/configurations/chat")
    assert "Configuration chat created." in detail.text
    assert "backup" in detail.text
    assert ("configuration.create", "chat", "demo demo-chat for billing") in activity(admin)


def test_the_api_key_is_write_only_kept_when_empty_and_never_rendered(admin: Admin) -> None:
    browser = admin.signed_in("operator")
    created = browser.post(
        "/admin/configurations/new",
        form(slug="gpt", provider="openai", model="gpt-4o-mini", api_key=SECRET, temperature=""),
    )
    assert created.status_code == 303
    assert stored_key(admin, "gpt") == SECRET
    assert get(admin, "gpt").base_url == "https://api.openai.com/v1"

    edit = browser.get("/admin/configurations/gpt/edit")
    assert edit.status_code == 200
    assert "Stored key: <strong>set</strong>" in edit.text
    assert 'name="clear_api_key"' in edit.text
    saved = browser.post(
        "/admin/configurations/gpt/edit",
        form(
            slug="gpt",
            name="GPT mini",
            provider="openai",
            model="gpt-4o",
            base_url="https://api.openai.com/v1",
            api_key="",
            temperature="",
        ),
    )
    assert saved.status_code == 303
    assert stored_key(admin, "gpt") == SECRET
    assert get(admin, "gpt").model == "gpt-4o"

    invalid = browser.post(
        "/admin/configurations/gpt/edit",
        form(
            slug="gpt", provider="openai", model="gpt-4o", api_key="sk-another-secret-value", temperature="9"
        ),
    )
    assert invalid.status_code == 422
    assert "sk-another-secret-value" not in invalid.text  # a re-rendered form never echoes a key
    assert stored_key(admin, "gpt") == SECRET

    pages = [
        browser.get(url).text
        for url in ("/admin/configurations", "/admin/configurations/gpt", "/admin/configurations/gpt/edit")
    ]
    for text in [*pages, created.text, saved.text, edit.text, invalid.text]:
        assert SECRET not in text
        assert SECRET[-4:] not in text  # not even the hint
    assert all(SECRET not in detail and SECRET[-4:] not in detail for _, _, detail in activity(admin))
    assert ("configuration.update", "gpt", "name, model") in activity(admin)


def test_clear_key_removes_the_stored_key(admin: Admin) -> None:
    create(admin, slug="gpt", provider="openai", model="gpt-4o-mini", api_key=SECRET)
    browser = admin.signed_in("operator")
    response = browser.post(
        "/admin/configurations/gpt/edit",
        form(
            slug="gpt",
            name="gpt",
            provider="openai",
            model="gpt-4o-mini",
            base_url="https://api.openai.com/v1",
            clear_api_key="1",
            temperature="",
            max_tokens="",
        ),
    )
    assert response.status_code == 303
    assert stored_key(admin, "gpt") is None
    assert "not set" in browser.get("/admin/configurations/gpt").text
    assert ("configuration.update", "gpt", "api key cleared") in activity(admin)


def test_activate_deactivate_and_set_default(admin: Admin) -> None:
    create(admin, slug="first", is_default=True)
    create(admin, slug="second")
    browser = admin.signed_in("operator")
    assert browser.post("/admin/configurations/second/deactivate").status_code == 303
    assert not get(admin, "second").is_active
    assert "Activate" in browser.get("/admin/configurations/second").text
    assert browser.post("/admin/configurations/second/activate").status_code == 303
    assert get(admin, "second").is_active
    assert browser.post("/admin/configurations/second/default").status_code == 303
    assert get(admin, "second").is_default
    assert not get(admin, "first").is_default
    actions = [(action, target) for action, target, _ in activity(admin)]
    for expected in ("configuration.deactivate", "configuration.activate", "configuration.default"):
        assert (expected, "second") in actions


def test_connection_test_shows_the_result_and_records_a_usage_row(admin: Admin) -> None:
    create(admin, slug="demo")
    browser = admin.signed_in("operator")
    page = browser.post("/admin/configurations/demo/test")
    assert page.status_code == 200
    assert '<span class="badge ok">ok</span>' in page.text
    log_id = re.search(r'href="/admin/usage/([^"]+)"', page.text)
    assert log_id is not None
    assert "Latency" in page.text

    async def usage_row(llm: LLMManager) -> Any:
        return await llm.usage.get(log_id.group(1))

    row = admin.gateway.run(usage_row)
    assert row is not None
    assert row.status == "ok"

    fragment = browser.post("/admin/configurations/demo/test", headers=HTMX)
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert 'class="badge ok"' in fragment.text
    assert ("configuration.test", "demo", "ok") in activity(admin)


def test_connection_test_failure_is_a_readable_result(admin: Admin) -> None:
    create(admin, slug="down", provider="openai-compatible", model="m", base_url="http://127.0.0.1:9")
    browser = admin.signed_in("operator")
    page = browser.post("/admin/configurations/down/test", headers=HTMX)
    assert page.status_code == 200
    assert 'class="badge error"' in page.text


def test_delete_removes_the_configuration_after_confirmation(admin: Admin) -> None:
    create(admin, slug="old")
    browser = admin.signed_in("admin")
    detail = browser.get("/admin/configurations/old")
    assert 'data-confirm="Delete configuration old?' in detail.text
    response = browser.post("/admin/configurations/old/delete")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/configurations"
    assert slugs(admin) == []
    assert browser.get("/admin/configurations/old").status_code == 404
    assert ("configuration.delete", "old", "demo demo-chat") in activity(admin)


def test_model_field_offers_the_discovered_models(admin: Admin) -> None:
    create(admin, slug="demo")
    browser = admin.signed_in("operator")
    before = browser.get("/admin/configurations/demo/edit")
    assert '<input id="f-model" name="model" type="text" value="demo-chat"' in before.text
    assert 'list="models"' in before.text
    assert "No model list yet" in before.text
    fragment = browser.post("/admin/configurations/demo/models/refresh", headers=HTMX)
    assert fragment.status_code == 200
    assert '<datalist id="models">' in fragment.text
    assert '<option value="demo-embed">' in fragment.text
    plain = browser.post("/admin/configurations/demo/models/refresh")
    assert plain.status_code == 303
    assert plain.headers["location"] == "/admin/configurations/demo/edit"
    after = browser.get("/admin/configurations/demo/edit")
    assert "Found 2 models" in after.text  # the flash
    assert '<option value="demo-chat">' in after.text


def test_model_refresh_from_a_provider_that_is_down_is_a_message(admin: Admin) -> None:
    create(admin, slug="down", provider="openai-compatible", model="m", base_url="http://127.0.0.1:9")
    browser = admin.signed_in("operator")
    fragment = browser.post("/admin/configurations/down/models/refresh", headers=HTMX)
    assert fragment.status_code == 200
    assert "Could not list models" in fragment.text
    plain = browser.post("/admin/configurations/down/models/refresh")
    assert plain.status_code == 303
    assert "Could not list models" in browser.get("/admin/configurations/down/edit").text


def refused_changes(browser: Browser) -> dict[str, int]:
    return {
        "new form": browser.get("/admin/configurations/new").status_code,
        "create": browser.post("/admin/configurations/new", form(slug="x")).status_code,
        "edit form": browser.get("/admin/configurations/demo/edit").status_code,
        "edit": browser.post("/admin/configurations/demo/edit", form(slug="demo")).status_code,
        "deactivate": browser.post("/admin/configurations/demo/deactivate").status_code,
        "default": browser.post("/admin/configurations/demo/default").status_code,
        "test": browser.post("/admin/configurations/demo/test").status_code,
        "refresh": browser.post("/admin/configurations/demo/models/refresh").status_code,
        "delete": browser.post("/admin/configurations/demo/delete").status_code,
    }


def test_viewer_sees_but_cannot_change(admin: Admin) -> None:
    create(admin, slug="demo")
    viewer = admin.signed_in("viewer")
    assert viewer.get("/admin/configurations").status_code == 200
    detail = viewer.get("/admin/configurations/demo")
    assert detail.status_code == 200
    assert "/admin/configurations/demo/edit" not in detail.text
    assert "/delete" not in detail.text
    assert "New configuration" not in viewer.get("/admin/configurations").text
    assert set(refused_changes(viewer).values()) == {403}
    assert get(admin, "demo").is_active
    assert slugs(admin) == ["demo"]


def test_operator_changes_but_cannot_delete(admin: Admin) -> None:
    create(admin, slug="demo")
    operator = admin.signed_in("operator")
    assert "/delete" not in operator.get("/admin/configurations/demo").text
    assert operator.post("/admin/configurations/demo/delete").status_code == 403
    assert slugs(admin) == ["demo"]
    assert operator.post("/admin/configurations/demo/deactivate").status_code == 303


def test_unknown_configuration_is_a_404_page(admin: Admin) -> None:
    browser = admin.signed_in("viewer")
    assert browser.get("/admin/configurations/nope").status_code == 404


def test_every_rendered_form_carries_the_session_csrf_token(admin: Admin) -> None:
    """Forms post the token they were rendered with (the test browser otherwise adds it itself)."""
    create(admin, slug="demo")
    browser = admin.signed_in("admin")
    for url in ("/admin/configurations/new", "/admin/configurations/demo/edit", "/admin/configurations/demo"):
        tokens = re.findall(r'name="csrf_token" value="([^"]*)"', browser.get(url).text)
        assert tokens, url
        assert set(tokens) == {browser.csrf}, url
