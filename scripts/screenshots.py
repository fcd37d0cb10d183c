"""`make screenshots`: every admin page, on generated demo data, as PNGs in `docs/screenshots/`.

Starts the server on a throw-away data directory, fills it through the services (applications,
tokens, budgets, users, 30 days of usage over several providers, and live calls through the demo
configurations), signs in with Debian's Chromium and photographs each full-page HTML route under
`/admin` at 1280x800 — and the dashboard and console at phone width as well.

Pages are found from the app's routes, so a new page is photographed without editing this file;
routes with path parameters are filled from the generated data (`{slug}` → `demo`, ...).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from llm_manager.manager import LLMManager
from llm_manager.server.app import create_app
from llm_manager.services.accounting import UsageRecord
from llm_manager.services.activity import Actor
from llm_manager.services.budgets import BudgetSpec
from llm_manager.services.calls import CallContext
from llm_manager.services.configuration_specs import ConfigurationCreate
from llm_manager.services.conversations import ConversationOwner, Viewer
from llm_manager.services.seed import seed_defaults
from llm_manager.services.templates import TemplateDraft
from llm_manager.settings import load_settings
from llm_manager.testing.live_server import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_EMAIL = "admin@example.com"
PASSWORD = "screenshots-only-password"
LAPTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
PHONE_PAGES = ("dashboard", "console")
DAYS = 30
SEED = 4


@dataclass(frozen=True)
class Model:
    """A configuration the generated history is spread over, with its list prices per million tokens."""

    slug: str
    name: str
    provider: str
    model: str
    input_price: Decimal
    output_price: Decimal
    weight: int
    """How often it is called, relative to the others."""


MODELS = (
    Model("gpt-4o-mini", "OpenAI · GPT-4o mini", "openai", "gpt-4o-mini", Decimal("0.15"), Decimal("0.6"), 8),
    Model("gpt-4o", "OpenAI · GPT-4o", "openai", "gpt-4o", Decimal("2.5"), Decimal("10"), 2),
    Model(
        "claude-haiku",
        "Anthropic · Claude 3.5 Haiku",
        "anthropic",
        "claude-3-5-haiku-latest",
        Decimal("0.8"),
        Decimal("4"),
        4,
    ),
    Model(
        "openrouter-llama",
        "OpenRouter · Llama 3.1 70B",
        "openrouter",
        "meta-llama/llama-3.1-70b-instruct",
        Decimal("0.12"),
        Decimal("0.3"),
        2,
    ),
)
APPLICATIONS = (
    ("support-bot", "Answers customer tickets in the help desk."),
    ("docs-search", "Semantic search and summaries for the documentation site."),
    ("internal-tools", "Scripts and notebooks of the data team."),
)
PEOPLE = (
    ("olga@example.com", "Olga Operator", "operator"),
    ("victor@example.com", "Victor Viewer", "viewer"),
)
PARAMETER_VALUES = {"slug": "demo", "name": "support-bot", "application": "support-bot"}
"""Path parameters filled from the generated data; `log_id`, `user_id`... are looked up."""
_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")


# --- demo data ------------------------------------------------------------------------------------


async def populate(llm: LLMManager) -> dict[str, str]:
    """A month in the life of a small team; returns values for path parameters found on the way."""
    services = llm.services
    await seed_defaults(llm.configurations)
    admin = await services.accounts.create_user(
        ADMIN_EMAIL, PASSWORD, name="Ada Admin", roles=["super-admin"]
    )
    for email, name, role in PEOPLE:
        await services.accounts.create_user(email, PASSWORD, name=name, roles=[role])
    ids: dict[str, int] = {}
    for name, description in APPLICATIONS:
        ids[name] = (await llm.applications.create(name, description)).id
        await llm.tokens.create(name, name="production")
    await llm.tokens.create("support-bot", name="staging")
    for model in MODELS:
        await llm.configurations.create(
            ConfigurationCreate(
                slug=model.slug,
                name=model.name,
                provider=model.provider,
                model=model.model,
                api_key=f"sk-demo-{model.slug}-not-a-real-key",
                input_price=model.input_price,
                output_price=model.output_price,
            )
        )
    await llm.configurations.create(
        ConfigurationCreate(
            slug="demo-fast",
            name="Demo · no delay",
            provider="demo",
            model="demo-chat",
            options={"delay_ms": 0},
        )
    )
    await services.budgets.set(BudgetSpec(application="support-bot", period="month", limit_usd=Decimal("40")))
    await services.budgets.set(
        BudgetSpec(application="docs-search", period="day", limit_tokens=400_000, hard=False)
    )
    await services.budgets.set(
        BudgetSpec(
            application="internal-tools", configuration="gpt-4o", period="month", limit_usd=Decimal("5")
        )
    )
    await _history(llm, ids)
    await _live_calls(llm, ids)
    await _activity(llm, admin.id)
    conversation_id = await _conversation(llm, admin.id)
    await _templates(llm)
    await services.writer.flush()
    first = (await services.usage.list_page(limit=1)).rows[0]
    return {"log_id": first.id, "user_id": str(admin.id), "conversation_id": conversation_id}


async def _conversation(llm: LLMManager, admin_id: int) -> str:
    """A chat of the admin's on the demo model, with a pinned message."""
    conversation = await llm.conversation(
        "demo-fast",
        title="Planning the support bot rollout",
        system="You help the support team plan. Answer briefly.",
        owner=ConversationOwner(user_id=admin_id),
        viewer=Viewer(user_id=admin_id),
    )
    first = await conversation.send("We launch the support bot on **Monday**. What should we check first?")
    await llm.services.conversations.pin(conversation.id, Viewer(user_id=admin_id), first.message.id)
    await conversation.send("Which budget would you set for the first month?")
    await conversation.send("Draft a short announcement for the team:\n\n- launch date\n- who to ask")
    return conversation.id


async def _templates(llm: LLMManager) -> None:
    """A template with two versions, a production label and calls on both, for the version stats."""
    variables = [{"name": "customer", "required": True}, {"name": "tone", "default": "friendly"}]
    await llm.templates.save(
        "support-bot",
        TemplateDraft(
            system="You answer support tickets in a {{ tone }} tone.",
            user="Reply to {{ customer }} about their ticket.",
            variables=variables,
            configuration="demo-fast",
            note="First draft",
        ),
        created_by=ADMIN_EMAIL,
        description="The reply the support bot sends to a new ticket.",
    )
    await llm.templates.save(
        "support-bot",
        TemplateDraft(
            system="You answer support tickets in a {{ tone }} tone. Keep it under 80 words.",
            user="Reply to {{ customer }} about their ticket, and thank them for waiting.",
            variables=variables,
            configuration="demo-fast",
            note="Shorter replies",
        ),
        created_by=ADMIN_EMAIL,
    )
    await llm.templates.set_label("support-bot", "production", 1)
    for index in range(12):
        await llm.chat(None, template=f"support-bot@{1 + index % 2}", variables={"customer": f"user-{index}"})


async def _history(llm: LLMManager, applications: dict[str, int]) -> None:
    """Past days' calls, written as the accounting writer writes them (the rollups follow)."""
    rng = random.Random(SEED)
    views = {view.slug: view for view in await llm.configurations.list_all()}
    now = datetime.now(UTC)
    weights = [model.weight for model in MODELS]
    for days_ago in range(DAYS - 1, -1, -1):
        day = now - timedelta(days=days_ago)
        busy = 1.6 if day.weekday() < 5 else 0.5
        for _ in range(int(rng.randint(25, 45) * busy)):
            created_at = day - timedelta(minutes=rng.randint(1, 600))  # never in the future
            model = rng.choices(MODELS, weights)[0]
            application = rng.choice(list(applications))
            prompt = rng.randint(200, 3000)
            completion = rng.randint(50, 900)
            failed = rng.random() < 0.04
            cost = (prompt * model.input_price + completion * model.output_price) / 1_000_000
            latency = int(rng.lognormvariate(6.8, 0.45))
            await llm.services.writer.put(
                UsageRecord(
                    created_at=created_at,
                    operation="chat",
                    configuration_id=views[model.slug].id,
                    configuration_slug=model.slug,
                    requested_configuration=model.slug,
                    application_id=applications[application],
                    provider=model.provider,
                    model=model.model,
                    prompt_tokens=prompt,
                    completion_tokens=0 if failed else completion,
                    cost=Decimal(0) if failed else cost,
                    latency_ms=latency,
                    ttft_ms=None if failed else int(latency * rng.uniform(0.15, 0.4)),
                    status="error" if failed else "ok",
                    error_class="RateLimitError" if failed else None,
                    error_message="429 from upstream: rate limit reached" if failed else None,
                    finish_reason=None if failed else "stop",
                    attempts=3 if failed else 1,
                    response_chars=0 if failed else completion * 4,
                    user_id=f"user-{rng.randint(1, 40)}",
                )
            )


async def _live_calls(llm: LLMManager, applications: dict[str, int]) -> None:
    """Today's calls through the real pipeline, on the offline demo configurations."""
    questions = (
        "How do I reset my password?",
        "Summarise the release notes for version 2.4.",
        "Which plan includes single sign-on?",
        "Write a haiku about rate limits.",
    )
    for index in range(36):
        application = list(applications)[index % len(applications)]
        await llm.chat(
            "demo-fast" if index % 6 else "demo",
            questions[index % len(questions)],
            context=CallContext(application_id=applications[application], user_id=f"user-{index % 7}"),
            max_tokens=10 + index,
        )


async def _activity(llm: LLMManager, admin_id: int) -> None:
    """What the team did this month, as the activity log shows it."""
    ada = Actor(name=ADMIN_EMAIL, user_id=admin_id, address="10.0.4.12")
    olga = Actor(name="olga@example.com", address="10.0.4.37")
    entries = (
        (ada, "configuration.create", "gpt-4o-mini", "openai gpt-4o-mini"),
        (ada, "configuration.create", "claude-haiku", "anthropic claude-3-5-haiku-latest"),
        (ada, "application.create", "support-bot", ""),
        (ada, "token.create", "support-bot", "production"),
        (olga, "budget.set", "support-bot", "month, $40.00 hard"),
        (olga, "configuration.update", "gpt-4o", "default_params, price_override"),
        (ada, "user.create", "victor@example.com", "viewer"),
    )
    for actor, action, target, detail in entries:
        await llm.services.activity.record(actor, action, target=target, detail=detail)


# --- photographing --------------------------------------------------------------------------------


def page_paths(app: FastAPI, values: dict[str, str]) -> dict[str, str]:
    """`{file name: path}` for each GET page under /admin, path parameters filled in."""
    found: dict[str, str] = {}
    for route in iter_route_contexts(app.routes):  # FastAPI keeps included routers nested
        template = route.path or ""
        if "GET" not in (route.methods or ()) or not template.startswith("/admin"):
            continue
        names = _PARAMETER.findall(template)
        if template.startswith("/admin/static") or any(name not in values for name in names):
            continue
        found[_file_name(template)] = _PARAMETER.sub(lambda match: values[match.group(1)], template)
    return found


def _file_name(route_path: str) -> str:
    """`/admin/configurations/{slug}/edit` → `configurations-detail-edit`; `/admin` → `dashboard`."""
    parts = [part for part in route_path.removeprefix("/admin").split("/") if part]
    named = ["detail" if part.startswith("{") else part for part in parts]
    return "-".join(named) or "dashboard"


def sign_in(page: Page) -> None:
    page.goto("/admin/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/admin(?!/login)"))


def is_full_page(page: Page, path: str) -> bool:
    """Only whole HTML pages: not JSON, downloads, event streams or htmx fragments."""
    response = page.request.get(path, max_redirects=0)
    kind = response.headers.get("content-type", "")
    return (
        response.status == 200 and kind.startswith("text/html") and "<html" in response.text()[:500].lower()
    )


def settle(page: Page) -> None:
    """Let charts finish their animation before the picture."""
    page.wait_for_load_state("load")
    if page.locator("canvas").count():
        page.wait_for_timeout(800)


def run_console(page: Page) -> None:
    """Show the console with a finished run rather than empty."""
    start = page.get_by_role("button", name=re.compile(r"^start", re.IGNORECASE))
    if start.count() != 1 or not start.is_enabled():
        return
    start.click()
    page.wait_for_function(
        "() => !['idle', 'starting', 'streaming'].includes(document.getElementById('stat-status').textContent)"
    )


def shoot(browser: Browser, base_url: str, paths: dict[str, str], only: set[str]) -> list[Path]:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    written = []
    signed_out = browser.new_context(base_url=base_url, viewport=LAPTOP)
    page = signed_out.new_page()
    if not only or "login" in only:
        page.goto("/admin/login")
        settle(page)
        written.append(_save(page, "login"))
    signed_out.close()
    for viewport, suffix in ((LAPTOP, ""), (PHONE, "-phone")):
        context = browser.new_context(base_url=base_url, viewport=viewport)
        page = context.new_page()
        sign_in(page)
        for name, path in paths.items():
            if (only and name not in only) or (suffix and name not in PHONE_PAGES):
                continue
            if name == "login" or not is_full_page(page, path):
                continue
            page.goto(path)
            if name == "console":
                run_console(page)
            settle(page)
            written.append(_save(page, name + suffix))
        context.close()
    return written


def _save(page: Page, name: str) -> Path:
    target = OUTPUT / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    print(f"  {target.relative_to(ROOT)}  ({page.url.split('/', 3)[-1]})")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("pages", nargs="*", help="only these (file names without .png)")
    options = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"screenshots need Debian's Chromium at {CHROMIUM}: apt-get install chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="llmm-screenshots-") as data_dir:
        os.environ["LLM_MANAGER_DATA_DIR"] = data_dir
        app = create_app(load_settings())
        with serve_in_thread(app) as server:
            print("Generating demo data…")
            started = time.monotonic()
            values = PARAMETER_VALUES | server.run(populate)
            print(f"  done in {time.monotonic() - started:.1f} s")
            paths = page_paths(app, values)
            print(f"Photographing {len(paths)} pages into {OUTPUT.relative_to(ROOT)}/")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
                )
                written = shoot(browser, server.base_url, paths, set(options.pages))
                browser.close()
    print(f"Wrote {len(written)} screenshots.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
