"""`llm-manager budgets ...`: spending limits per application, configuration or token, and why a call
would be refused.

Hard budgets refuse a call whose ceiling would overrun them; soft budgets only record events at
50, 80 and 100 %. `explain` answers "will my next call go through, and if not, why" without making
one, so it exits 0 either way: the answer is in its output, not its exit code.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from llm_manager.cli._runtime import consoles, fail, money, print_json, run
from llm_manager.manager import LLMManager
from llm_manager.services.budgets import BudgetCheck, BudgetEventView, BudgetSpec, BudgetView, Explanation

app = typer.Typer(help="Spending limits per application, configuration or token.", no_args_is_help=True)

_OPTIONS = {
    "application": "--app",
    "configuration": "--config",
    "token": "--token",
    "period": "--period",
    "limit_usd": "--usd",
    "limit_tokens": "--tokens",
}
"""Which CLI option each `BudgetSpec` field comes from, so refusals name what the user typed."""
_PERIOD_WORDS = {"day": "per UTC day", "month": "per UTC month", "total": "in total"}
_BAR_WIDTH = 10
_LIST_COLUMNS = (
    "id",
    "scope",
    "period",
    "limit",
    "spent",
    "reserved",
    "remaining",
    "used",
    "resets (UTC)",
    "mode",
)

AppOption = Annotated[str, typer.Option("--app", help="The application the budget limits.")]
AppFilter = Annotated[str | None, typer.Option("--app", help="Only this application.")]
ConfigOption = Annotated[
    str | None, typer.Option("--config", help="Only calls answered by this configuration.")
]
TokenOption = Annotated[str | None, typer.Option("--token", help="Only calls made with this token (prefix).")]
JsonOption = Annotated[bool, typer.Option("--json")]


class PeriodChoice(StrEnum):
    day = "day"
    month = "month"
    total = "total"


@app.command("set")
def set_budget(
    application: AppOption,
    period: Annotated[PeriodChoice, typer.Option(help="A UTC day, a UTC month, or all time.")],
    configuration: ConfigOption = None,
    token: TokenOption = None,
    usd: Annotated[Decimal | None, typer.Option("--usd", help="Limit in US dollars.")] = None,
    tokens: Annotated[
        int | None, typer.Option("--tokens", help="Limit in tokens (prompt + completion).")
    ] = None,
    soft: Annotated[bool, typer.Option("--soft", help="Only record events; never refuse a call.")] = False,
) -> None:
    """Create the budget for this scope and period, or replace its limits (what was spent is kept)."""
    if usd is None and tokens is None:
        raise typer.BadParameter("give --usd and/or --tokens", param_hint="--usd")
    try:
        spec = BudgetSpec(
            application=application,
            configuration=configuration,
            token=token,
            period=period.value,
            limit_usd=usd,
            limit_tokens=tokens,
            hard=not soft,
        )
    except ValidationError as exc:
        fail("; ".join(_spec_error(error) for error in exc.errors()))
    view = run(lambda llm: llm.budgets.set(spec))
    consoles()[0].print(
        f"Budget {view.id}: {_limits(view, ' / ', ' tokens')} {_PERIOD_WORDS[view.period]} "
        f"({'hard' if view.hard else 'soft'}) on {view.scope}.",
        highlight=False,
    )


@app.command("list")
def list_budgets(application: AppFilter = None, as_json: JsonOption = False) -> None:
    """Budgets with what is spent, reserved by calls in flight, and left in the current period."""
    views = run(lambda llm: _list(llm, application))
    if as_json:
        print_json([_budget_json(view) for view in views])
        return
    if not views:
        consoles()[1].print("No budgets. Set one with [bold]llm-manager budgets set[/].")
        return
    table = Table(header_style="bold", caption="Amounts without $ are tokens.")
    for column in _LIST_COLUMNS:
        numeric = column in ("id", "limit", "spent", "reserved", "remaining")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=column != "scope")
    for view in views:
        table.add_row(
            str(view.id),
            _scope(view),
            view.period,
            _limits(view),
            _amounts(view, view.spent_usd, view.spent_tokens),
            _amounts(view, view.reserved_usd, view.reserved_tokens),
            _amounts(view, view.remaining_usd, view.remaining_tokens),
            _bar(view),
            "never" if view.resets_at is None else f"{view.resets_at:%Y-%m-%d}",
            "hard" if view.hard else "[dim]soft[/]",
        )
    consoles()[0].print(table)


@app.command("delete")
def delete(
    budget_id: Annotated[int, typer.Argument(metavar="ID", help="The budget's id (see list).")],
) -> None:
    """Delete a budget and the spend recorded against it."""
    run(lambda llm: llm.budgets.delete(budget_id))
    consoles()[0].print(f"Deleted budget {budget_id}.")


@app.command("explain")
def explain(
    application: Annotated[str, typer.Option("--app", help="The calling application.")],
    configuration: Annotated[
        str | None, typer.Option("--config", help="The configuration the next call would use.")
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", help="The token (prefix) it would call with.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Which budgets apply to a caller, what is left, and what would refuse its next call (exit 0 either way)."""
    explanation = run(lambda llm: _explain(llm, application, configuration, token))
    if as_json:
        print_json(_explanation_json(explanation))
        return
    out = consoles()[0]
    subject = _subject(explanation)
    if not explanation.checks:
        out.print(f"No budgets apply to {subject}: none would refuse the next call.", highlight=False)
        return
    table = Table(
        title=f"Budgets that apply to {subject}", caption="Amounts without $ are tokens.", header_style="bold"
    )
    for column in ("id", "scope", "period", "mode", "remaining", "next call", "why"):
        table.add_column(column, justify="right" if column in ("id", "remaining") else "left")
    for check in explanation.checks:
        view = check.budget
        table.add_row(
            str(view.id),
            _scope(view),
            view.period,
            "hard" if view.hard else "soft",
            _amounts(view, view.remaining_usd, view.remaining_tokens),
            _verdict(check),
            check.reason or "",
        )
    out.print(table)
    out.print(_summary(explanation), highlight=False)


@app.command("events")
def events(
    application: AppFilter = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="How many events.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Thresholds (50, 80, 100 %) budgets crossed, newest first; each is recorded once per period."""
    found = run(lambda llm: _events(llm, application, limit))
    if as_json:
        print_json([asdict(event) for event in found])
        return
    if not found:
        consoles()[1].print("No budget events yet.")
        return
    table = Table(header_style="bold")
    for column in ("time (UTC)", "budget", "threshold", "period from", "spent", "spent tokens"):
        table.add_column(column)
    for event in found:
        table.add_row(
            f"{event.created_at:%Y-%m-%d %H:%M:%S}",
            str(event.budget_id),
            Text(f"{event.threshold} %", style=_threshold_style(event.threshold)),
            f"{event.window_start:%Y-%m-%d}",
            money(event.spent_usd),
            f"{event.spent_tokens:,}",
        )
    consoles()[0].print(table)


async def _application_id(llm: LLMManager, application: str | None) -> int | None:
    return (await llm.applications.get(application)).id if application else None


async def _list(llm: LLMManager, application: str | None) -> list[BudgetView]:
    return await llm.budgets.list_all(application_id=await _application_id(llm, application))


async def _events(llm: LLMManager, application: str | None, limit: int) -> list[BudgetEventView]:
    return await llm.budgets.events(application_id=await _application_id(llm, application), limit=limit)


async def _explain(
    llm: LLMManager, application: str, configuration: str | None, token: str | None
) -> Explanation:
    """Resolve the configuration as the application would see it, so its ceiling is priced as a call's."""
    resolved = None
    if configuration:
        application_id = (await llm.applications.get(application)).id
        resolved = (await llm.configurations.resolve_chain(configuration, application_id=application_id))[0]
    return await llm.budgets.explain(application, configuration=resolved, token=token)


def _spec_error(error: Any) -> str:
    location = error["loc"]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not location:
        return message
    return f"{_OPTIONS.get(str(location[0]), str(location[0]))}: {message}"


def _budget_json(view: BudgetView) -> dict[str, Any]:
    return {
        **asdict(view),
        "scope": view.scope,
        "remaining_usd": view.remaining_usd,
        "remaining_tokens": view.remaining_tokens,
    }


def _explanation_json(explanation: Explanation) -> dict[str, Any]:
    ceiling = explanation.next_call_ceiling
    return {
        "application": explanation.application,
        "configuration": explanation.configuration,
        "token": explanation.token,
        "allowed": explanation.allowed,
        "next_call_ceiling": None if ceiling is None else asdict(ceiling),
        "checks": [
            {
                "budget": _budget_json(check.budget),
                "blocks_next_call": check.blocks_next_call,
                "reason": check.reason,
            }
            for check in explanation.checks
        ],
    }


def _subject(explanation: Explanation) -> str:
    parts = [f"application {explanation.application}"]
    if explanation.configuration:
        parts.append(f"configuration {explanation.configuration}")
    if explanation.token:
        parts.append(f"token {explanation.token}")
    return ", ".join(parts)


def _summary(explanation: Explanation) -> str:
    """The verdict in words: what the next call may cost, and which budgets refuse it."""
    ceiling = explanation.next_call_ceiling
    if ceiling is None:
        size = "Next call (no --config given, so only budgets already used up are counted)"
    else:
        price = "unpriced" if ceiling.usd is None else f"up to {money(ceiling.usd)}"
        size = f"Next call (up to {ceiling.tokens:,} tokens, {price})"
    blocking = [check for check in explanation.checks if check.blocks_next_call]
    if not blocking:
        over = [str(check.budget.id) for check in explanation.checks if check.reason]
        note = (
            f", though it may go over soft budget {', '.join(over)} (recorded, never refused)" if over else ""
        )
        return f"{size}: [green]allowed[/]{note}."
    reasons = "; ".join(
        f"budget {check.budget.id} ({_PERIOD_WORDS[check.budget.period]} on {check.budget.scope}): {check.reason}"
        for check in blocking
    )
    return f"{size}: [bold red]refused[/] by {reasons}."


def _verdict(check: BudgetCheck) -> Text:
    if check.blocks_next_call:
        return Text("refused", style="bold red")
    if check.reason:
        return Text("may go over (soft)", style="yellow")
    return Text("fits", style="green")


def _scope(view: BudgetView) -> str:
    if view.configuration:
        return f"{view.application}\nconfig {view.configuration}"
    if view.token:
        return f"{view.application}\ntoken {view.token}"
    return view.application


def _limits(view: BudgetView, separator: str = "\n", tokens_unit: str = "") -> str:
    return _amounts(view, view.limit_usd, view.limit_tokens, separator, tokens_unit)


def _amounts(
    view: BudgetView, usd: Decimal | None, tokens: int | None, separator: str = "\n", tokens_unit: str = ""
) -> str:
    """The amounts a budget counts in, USD and/or tokens, whichever limits it has; one per line in tables."""
    parts = []
    if view.limit_usd is not None and usd is not None:
        parts.append(money(usd))
    if view.limit_tokens is not None and tokens is not None:
        parts.append(f"{tokens:,}{tokens_unit}")
    return separator.join(parts)


def _bar(view: BudgetView) -> Text:
    """How much of the tighter limit is spent or reserved, as a bar and a percentage."""
    fractions = []
    if view.limit_usd is not None:
        fractions.append((view.spent_usd + view.reserved_usd) / view.limit_usd)
    if view.limit_tokens is not None:
        fractions.append(Decimal(view.spent_tokens + view.reserved_tokens) / view.limit_tokens)
    used = max(fractions, default=Decimal(0))
    filled = min(int(used * _BAR_WIDTH), _BAR_WIDTH)
    percent = int(used * 100)
    return Text(f"{'█' * filled}{'░' * (_BAR_WIDTH - filled)} {percent:>3}%", style=_threshold_style(percent))


def _threshold_style(percent: int) -> str:
    if percent >= 100:
        return "red"
    if percent >= 80:
        return "yellow"
    return "green"
