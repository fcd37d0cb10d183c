"""Rich renderings shared by commands: usage tables and one-line call summaries."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
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


_UNBOUNDED = 10_000


def usage_table(rows: Sequence[UsageRow], *, width: int) -> Table:
    """Every column where the terminal is wide enough; otherwise the columns one scans first.

    Squeezed into 80 columns the full table wrapped each row over several lines; a narrow table
    leaves out the model, time to first token and log id, and its caption says where they are.
    """
    full = _usage_table(rows, narrow=False)
    if Console(width=_UNBOUNDED).measure(full).maximum <= width:  # its natural width, not clamped
        return full
    return _usage_table(rows, narrow=True)


def _usage_table(rows: Sequence[UsageRow], *, narrow: bool) -> Table:
    table = Table(title="Recent calls", header_style="bold")
    columns = [
        ("time (UTC)", "left", True),
        ("configuration", "left", True),
        ("model", "left", not narrow),
        ("status", "left", True),
        ("tokens in+out", "right", True),
        ("cost", "right", True),
        ("latency", "right", True),
        ("ttft", "right", not narrow),
        ("log id", "left", not narrow),
    ]
    shown = [shown for _, _, shown in columns]
    for column, justify, visible in columns:
        if visible:
            table.add_column(column, justify=justify, no_wrap=column in ("log id", "time (UTC)"))  # type: ignore[arg-type]
    for row in rows:
        tokens = f"{row.prompt_tokens}+{row.completion_tokens}" + ("*" if row.tokens_estimated else "")
        cells: list[str | Text] = [
            row.created_at.strftime("%m-%d %H:%M" if narrow else "%m-%d %H:%M:%S"),
            row.configuration,
            row.model,
            Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
            tokens,
            money(row.cost),
            f"{row.latency_ms} ms",
            "-" if row.ttft_ms is None else f"{row.ttft_ms} ms",
            row.id,
        ]
        table.add_row(*(cell for cell, visible in zip(cells, shown, strict=True) if visible))
    notes = (
        ["* estimated: the provider did not report tokens."] if any(r.tokens_estimated for r in rows) else []
    )
    if narrow:
        notes.append("Model, TTFT and log id: --json, or a wider terminal.")
    table.caption = " ".join(notes) or None
    return table
