"""The budgets page: set, list, delete, alerts, and the explain view — through the browser's forms."""

from __future__ import annotations

from decimal import Decimal

from llm_manager.manager import LLMManager
from llm_manager.services.budgets import BudgetSpec, BudgetView
from llm_manager.services.configuration_specs import ConfigurationCreate
from tests.server.admin.conftest import Admin, Browser

FORM = {"application": "billing", "period": "month", "limit_usd": "10", "limit_tokens": "", "hard": "1"}


def assert_forms_carry_csrf(browser: Browser, html: str) -> None:
    """Every form on the page posts the session's CSRF token (the test client would add it anyway)."""
    assert f'name="csrf_token" value="{browser.csrf}"' in html
    assert 'name="csrf_token" value=""' not in html


def _setup(admin: Admin) -> None:
    async def create(llm: LLMManager) -> None:
        await llm.applications.create("billing")
        await llm.configurations.create(ConfigurationCreate(slug="demo", provider="demo", model="demo-chat"))

    admin.gateway.run(create)


def _budgets(admin: Admin) -> list[BudgetView]:
    async def budgets(llm: LLMManager) -> list[BudgetView]:
        return await llm.budgets.list_all()

    found: list[BudgetView] = admin.gateway.run(budgets)
    return found


def _activity(admin: Admin, action: str) -> list[str]:
    async def entries(llm: LLMManager) -> list[str]:
        page = await llm.services.activity.page(action=action)
        return [f"{entry.target} | {entry.detail}" for entry in page.entries]

    found: list[str] = admin.gateway.run(entries)
    return found


def test_set_a_budget_lists_it_and_records_the_change(admin: Admin) -> None:
    _setup(admin)
    browser = admin.signed_in("admin")
    empty = browser.get("/admin/budgets").text
    assert "No budgets yet" in empty
    assert_forms_carry_csrf(browser, empty)
    response = browser.post("/admin/budgets", FORM)
    assert response.status_code == 303
    page = browser.get("/admin/budgets")
    assert page.status_code == 200
    assert "Budget set: application billing" in page.text
    assert "application billing" in page.text
    assert "$10.00" in page.text
    [budget] = _budgets(admin)
    assert budget.limit_usd == Decimal(10)
    assert budget.hard
    assert budget.period == "month"
    assert _activity(admin, "budget.set") == ["application billing | $10 per month"]


def test_setting_the_same_scope_again_replaces_its_limits(admin: Admin) -> None:
    _setup(admin)
    browser = admin.signed_in("admin")
    browser.post("/admin/budgets", FORM)
    browser.post("/admin/budgets", {**FORM, "limit_usd": "", "limit_tokens": "5000", "hard": ""})
    [budget] = _budgets(admin)
    assert budget.limit_usd is None
    assert budget.limit_tokens == 5000
    assert not budget.hard


def test_invalid_budget_re_renders_with_field_errors_and_writes_nothing(admin: Admin) -> None:
    _setup(admin)
    browser = admin.signed_in("admin")
    no_limit = browser.post("/admin/budgets", {**FORM, "limit_usd": ""})
    assert no_limit.status_code == 422
    assert 'id="e-limit_usd"' in no_limit.text
    assert "set limit_usd and/or limit_tokens" in no_limit.text
    assert 'value="billing" selected' in no_limit.text, "what was typed is kept"
    not_a_number = browser.post("/admin/budgets", {**FORM, "limit_usd": "ten dollars"})
    assert not_a_number.status_code == 422
    assert 'id="e-limit_usd"' in not_a_number.text
    both = browser.post("/admin/budgets", {**FORM, "configuration": "demo", "token": "llmm_00000000"})
    assert both.status_code == 422
    assert "not both" in both.text
    unknown_token = browser.post("/admin/budgets", {**FORM, "token": "llmm_00000000"})
    assert unknown_token.status_code == 422
    assert 'id="e-token"' in unknown_token.text
    unknown_app = browser.post("/admin/budgets", {**FORM, "application": "nope"})
    assert unknown_app.status_code == 422
    assert "application &#39;nope&#39; not found" in unknown_app.text
    assert _budgets(admin) == []
    assert _activity(admin, "budget.") == []


def test_delete_a_budget(admin: Admin) -> None:
    _setup(admin)
    browser = admin.signed_in("admin")
    browser.post("/admin/budgets", FORM)
    [budget] = _budgets(admin)
    assert f'action="/admin/budgets/{budget.id}/delete"' in browser.get("/admin/budgets").text
    assert browser.post(f"/admin/budgets/{budget.id}/delete").status_code == 303
    assert _budgets(admin) == []
    assert _activity(admin, "budget.delete") == ["application billing | $10 per month"]
    assert browser.post(f"/admin/budgets/{budget.id}/delete").status_code == 404


def test_explain_says_whether_the_next_call_goes_through(admin: Admin) -> None:
    _setup(admin)

    async def tight(llm: LLMManager) -> None:
        await llm.budgets.set(BudgetSpec(application="billing", period="day", limit_tokens=100))

    admin.gateway.run(tight)
    browser = admin.signed_in("admin")
    big = browser.get("/admin/budgets/explain?application=billing&configuration=demo&max_tokens=500")
    assert big.status_code == 200
    assert "The next call would be refused" in big.text
    assert "100 tokens left, the next call may use up to 500" in big.text
    small = browser.get("/admin/budgets/explain?application=billing&configuration=demo&max_tokens=50")
    assert "The next call would go through" in small.text
    assert "50 tokens" in small.text
    bare = browser.get("/admin/budgets/explain?application=billing")
    assert "application billing" in bare.text
    assert "Pick a configuration to price the next call" in bare.text
    assert "Choose an application" in browser.get("/admin/budgets/explain").text


def test_explain_shows_bad_input_beside_the_field(admin: Admin) -> None:
    _setup(admin)
    browser = admin.signed_in("admin")
    missing = browser.get("/admin/budgets/explain?application=nope")
    assert missing.status_code == 422
    assert "application &#39;nope&#39; not found" in missing.text
    bad_max = browser.get("/admin/budgets/explain?application=billing&configuration=demo&max_tokens=0")
    assert bad_max.status_code == 422
    assert 'id="e-max_tokens"' in bad_max.text
    no_config = browser.get("/admin/budgets/explain?application=billing&configuration=nope")
    assert no_config.status_code == 422
    assert "configuration &#39;nope&#39; not found" in no_config.text


def test_budgets_need_the_manage_llm_providers_permission(admin: Admin) -> None:
    _setup(admin)
    operator = admin.signed_in("operator")
    assert operator.get("/admin/budgets").status_code == 403
    assert operator.get("/admin/budgets/explain?application=billing").status_code == 403
    assert operator.post("/admin/budgets", FORM).status_code == 403
    assert _budgets(admin) == []


def test_a_budget_form_without_its_csrf_token_is_refused(admin: Admin) -> None:
    _setup(admin)
    browser = admin.signed_in("admin")
    assert browser.post("/admin/budgets", {**FORM, "csrf_token": ""}).status_code == 403
    assert _budgets(admin) == []
