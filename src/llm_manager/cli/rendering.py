"""Rich renderings shared by commands: usage tables and one-line call summaries."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from llm_manager.cli._runtime import money
from llm_manager.services.usage import UsageRow
from llm_manager.types import ChatResult

_STATUS_STYLE = {"ok": "green", "error": "red", "cancelled": "yellow"}


def result_summary(result: ChatResult) -> Text:
    estimated = " (estimated)" if result.usage.estimated else ""
    ttft = f" · ttft {result.ttft_ms} ms" if result.ttft_ms is not None else ""
    status = "" if result.status == "ok" else f"{result.status} · "
    return Text(
        f"{status}{result.usage.prompt_tokens}+{result.usage.completion_tokens} tokens{estimated} · "
        f"{money(result.cost)} · {result.latency_ms} ms{ttft} · log {result.log_id}",
        style="dim",
    )


def usage_table(rows: Sequence[UsageRow]) -> Table:
    table = Table(title="Recent calls", header_style="bold")
    for column, justify in (
        ("time (UTC)", "left"),
        ("configuration", "left"),
        ("model", "left"),
        ("status", "left"),
        ("tokens in+out", "right"),
        ("cost", "right"),
        ("latency", "right"),
        ("ttft", "right"),
        ("log id", "left"),
    ):
        table.add_column(column, justify=justify, no_wrap=column in ("log id", "time (UTC)"))  # type: ignore[arg-type]
    for row in rows:
        tokens = f"{row.prompt_tokens}+{row.completion_tokens}" + ("*" if row.tokens_estimated else "")
        table.add_row(
            row.created_at.strftime("%m-%d %H:%M:%S"),
            row.configuration,
            row.model,
            Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
            tokens,
            money(row.cost),
            f"{row.latency_ms} ms",
            "-" if row.ttft_ms is None else f"{row.ttft_ms} ms",
            row.id,
        )
    if any(row.tokens_estimated for row in rows):
        table.caption = "* estimated: the provider did not report tokens"
    return table
