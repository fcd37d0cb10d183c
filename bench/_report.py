"""The gateway benchmark's tables: the goals, met or missed, then the ramps level by level."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

DIRECT, OURS, LITELLM = "direct", "llm-manager", "litellm"


@dataclass(frozen=True)
class Row:
    label: str
    values: dict[str, float]
    """By target name; missing or NaN when not measured."""
    unit: str
    goal: str = ""
    met: bool | None = None
    ours_vs_litellm: str = ""
    ours_vs_direct: str = ""
    text: dict[str, str] | None = None
    """Cells to show instead of the numbers."""


def summary_rows(report: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    b1, ttft = report["b1"], report["b3_ttft"]
    for percent, limit in (("p50", 1.0), ("p99", 2.0)):
        key = f"{percent}_ms"
        rows.append(
            Row(
                f"B1 latency {percent}",
                {name: figures[key] for name, figures in b1.items()},
                "ms",
                ours_vs_litellm=_ratio(b1, OURS, LITELLM, key),
                ours_vs_direct=_ratio(b1, OURS, DIRECT, key),
            )
        )
        added = _added(b1, key)
        rows.append(
            Row(
                f"B1 added {percent}",
                added,
                "ms",
                goal=f"≤ {limit:g} ms, ≥ 4× lower than LiteLLM",
                met=_met(added.get(OURS), limit, added.get(LITELLM), 4.0),
                ours_vs_litellm=_lower(added),
            )
        )
    after_switch = {name: figures["after_switch_p50_ms"] for name, figures in b1.items()}
    rows.append(
        Row(
            "B1 first call after a switch p50",
            after_switch,
            "ms",
            ours_vs_litellm=_ratio(b1, OURS, LITELLM, "after_switch_p50_ms"),
            ours_vs_direct=_ratio(b1, OURS, DIRECT, "after_switch_p50_ms"),
        )
    )
    rows.append(
        Row(
            "B1 gateway CPU per call",
            {name: figures["gateway_cpu_ms_per_call"] for name, figures in b1.items() if name != DIRECT},
            "ms",
            ours_vs_litellm=_lower(
                {name: figures["gateway_cpu_ms_per_call"] for name, figures in b1.items()}
            ),
        )
    )
    best = {name: _best_rate(levels) for name, levels in report["b2"].items()}
    rates = {name: rate for name, (rate, _) in best.items()}
    ours, litellm = rates.get(OURS, math.nan), rates.get(LITELLM, math.nan)
    rows.append(
        Row(
            "B2 max req/s, 100 % ok",
            rates,
            "req/s",
            goal="≥ 1000 /core, ≥ 4× LiteLLM",
            met=ours >= 1000 and (math.isnan(litellm) or ours >= 4 * litellm),
            ours_vs_litellm=f"{ours / litellm:.2f}×" if litellm else "",
            ours_vs_direct=f"{ours / rates[DIRECT]:.2f}×" if rates.get(DIRECT) else "",
        )
    )
    rows.append(
        Row("B2 … at clients", {name: level["concurrency"] for name, (_, level) in best.items() if level}, "")
    )
    cpu = {
        name: level["gateway_cpu_ms_per_call"]
        for name, (_, level) in best.items()
        if level and name != DIRECT
    }
    rows.append(Row("B2 gateway CPU per call", cpu, "ms", ours_vs_litellm=_lower(cpu)))
    for percent in ("p50", "p99"):
        key = f"{percent}_ms"
        added = _added(ttft, key)
        rows.append(Row(f"B3 TTFT {percent}", {name: figures[key] for name, figures in ttft.items()}, "ms"))
        rows.append(
            Row(
                f"B3 added TTFT {percent}",
                added,
                "ms",
                goal="≤ 1 ms" if percent == "p50" else "",
                met=_met(added.get(OURS), 1.0, None, 0) if percent == "p50" else None,
                ours_vs_litellm=_lower(added),
            )
        )
    streams = {name: float(_max_streams(levels)) for name, levels in report["b3_streams"].items()}
    first = report["run"]["plan"]["b3_levels"][0]
    rows.append(
        Row(
            "B3 streams before a stall",
            streams,
            "streams",
            goal="≥ 200 /core",
            met=streams.get(OURS, 0) >= 200,
            ours_vs_litellm=_ratio_of(streams, OURS, LITELLM),
            text={name: f"< {first}" for name, value in streams.items() if value == 0},
        )
    )
    for key, label in (("gap_p99_ms", "chunk gap"), ("ttft_p99_ms", "TTFT")):
        at = {name: _at(levels, 200, key) for name, levels in report["b3_streams"].items()}
        rows.append(Row(f"B3 {label} p99, 200 streams", at, "ms"))
    starts = {name: statistics.median(figures["seconds"]) for name, figures in report["b8"].items()}
    rss = {name: statistics.median(figures["idle_rss_mb"]) for name, figures in report["b8"].items()}
    rows.append(
        Row(
            "B8 cold start",
            starts,
            "s",
            goal="≤ 2 s",
            met=starts.get(OURS, math.inf) <= 2.0,
            ours_vs_litellm=_lower(starts),
        )
    )
    rows.append(
        Row(
            "B8 idle RSS",
            rss,
            "MB",
            goal="≤ 120 MB",
            met=rss.get(OURS, math.inf) <= 120,
            ours_vs_litellm=_lower(rss),
        )
    )
    return rows


def _added(figures: dict[str, dict[str, Any]], key: str) -> dict[str, float]:
    direct = figures[DIRECT][key]
    return {name: values[key] - direct for name, values in figures.items() if name != DIRECT}


def _ratio(figures: dict[str, dict[str, Any]], top: str, bottom: str, key: str) -> str:
    if top not in figures or bottom not in figures or not figures[bottom][key]:
        return ""
    return f"{figures[top][key] / figures[bottom][key]:.2f}×"


def _ratio_of(values: dict[str, float], top: str, bottom: str) -> str:
    if bottom not in values or not values[bottom] or not values.get(top):
        return ""
    return f"{values[top] / values[bottom]:.2f}×"


def _lower(values: dict[str, float]) -> str:
    """How many times lower (or higher) ours is than LiteLLM's."""
    ours, litellm = values.get(OURS), values.get(LITELLM)
    if ours is None or litellm is None or math.isnan(ours) or math.isnan(litellm):
        return ""
    if ours <= 0 or litellm <= 0:
        return f"{ours:+.3g} vs {litellm:+.3g}"
    return f"{litellm / ours:.1f}× lower" if ours <= litellm else f"{ours / litellm:.1f}× higher"


def _met(ours: float | None, limit: float, litellm: float | None, factor: float) -> bool:
    if ours is None or not ours <= limit:
        return False
    return litellm is None or factor == 0 or ours <= 0 or litellm >= factor * ours


def _best_rate(levels: list[dict[str, Any]]) -> tuple[float, dict[str, Any] | None]:
    clean = [level for level in levels if level["errors"] == 0]
    if not clean:
        return 0.0, None
    best = max(clean, key=lambda level: level["per_second"])
    return best["per_second"], best


def _max_streams(levels: list[dict[str, Any]]) -> int:
    passed = [level["concurrency"] for level in levels if not level["stalled"]]
    return max(passed, default=0)


def _at(levels: list[dict[str, Any]], concurrency: int, key: str) -> float:
    for level in levels:
        if level["concurrency"] == concurrency:
            return float(level[key])
    return math.nan


def _number(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "—"
    if unit == "MB":
        return f"{value:.1f}"
    if unit in ("req/s", "streams", "") or abs(value) >= 100:
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.2f}"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"


def summary_table(report: dict[str, Any]) -> Table:
    run = report["run"]
    table = Table(
        title="LLM Manager gateway vs LiteLLM proxy vs direct (one core per gateway)",
        caption=(
            f"{run['date']} · Python {run['python']} · uvloop {run['uvloop']} · LiteLLM {run['litellm']} · "
            f"pinned: {run['pinned']} · load average {run['load_average_before']:.2f} → "
            f"{run['load_average_after']:.2f} · {run['elapsed_s']} s"
        ),
    )
    for column in ("", "unit"):
        table.add_column(column)
    for column in ("direct", "llm-manager", "LiteLLM", "ours vs LiteLLM", "ours vs direct"):
        table.add_column(column, justify="right")
    for column in ("goal", ""):
        table.add_column(column)
    for row in summary_rows(report):
        verdict = "" if row.met is None else ("[green]met[/]" if row.met else "[red]missed[/]")
        table.add_row(
            row.label,
            row.unit,
            *(
                (row.text or {}).get(name) or _number(row.values.get(name), row.unit)
                for name in (DIRECT, OURS, LITELLM)
            ),
            row.ours_vs_litellm,
            row.ours_vs_direct,
            row.goal,
            verdict,
        )
    return table


def levels_table(title: str, by_gateway: dict[str, list[dict[str, Any]]], columns: dict[str, str]) -> Table:
    table = Table(title=title)
    table.add_column("target")
    for label in columns.values():
        table.add_column(label, justify="right")
    for name, levels in by_gateway.items():
        for index, level in enumerate(levels):
            cells = [_cell(level[key]) for key in columns]
            table.add_row(name if index == 0 else "", *cells, end_section=index == len(levels) - 1)
    return table


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "[red]STALL[/]" if value else "ok"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    return str(value)


def print_report(report: dict[str, Any], *, stderr: bool) -> None:
    console = Console(stderr=stderr, width=160)
    print_: Callable[..., None] = console.print
    print_(summary_table(report))
    print_(
        levels_table(
            "B2: closed-loop clients, 50 ms upstream",
            report["b2"],
            {
                "concurrency": "clients",
                "per_second": "req/s",
                "errors": "errors",
                "p50_ms": "p50 ms",
                "p99_ms": "p99 ms",
                "gateway_cpu_percent": "gateway CPU %",
                "gateway_cpu_ms_per_call": "CPU ms/call",
            },
        )
    )
    print_(
        levels_table(
            f"B3: concurrent streams of {report['run']['mock_chunks']} chunks, one every "
            f"{report['run']['mock_gap_ms']} ms (stall: p99 chunk gap or TTFT > "
            f"{report['run']['stall_threshold_ms']} ms, or an error)",
            report["b3_streams"],
            {
                "concurrency": "streams",
                "errors": "errors",
                "gap_p50_ms": "gap p50",
                "gap_p99_ms": "gap p99",
                "gap_max_ms": "gap max",
                "ttft_p50_ms": "TTFT p50",
                "ttft_p99_ms": "TTFT p99",
                "chunks_per_second": "chunks/s",
                "open_streams": "open (mean)",
                "gateway_cpu_percent": "gateway CPU %",
                "stalled": "",
            },
        )
    )
    for name, figures in report["b8"].items():
        starts = ", ".join(f"{seconds:.2f}" for seconds in figures["seconds"])
        rss = ", ".join(f"{mb:.1f}" for mb in figures["idle_rss_mb"])
        print_(
            f"B8 {name}: started in {starts} s; idle RSS {rss} MB over {figures['processes']} process(es); "
            f"{figures.get('after_load_rss_mb', math.nan):.0f} MB after the load"
        )
    for name, figures in report["accounting"].items():
        verdict = (
            "[green]none missing[/]" if figures["missing"] == 0 else f"[red]{figures['missing']} MISSING[/]"
        )
        extra = f", budget spent ${figures['budget_spent_usd']:.6f}" if "budget_spent_usd" in figures else ""
        print_(
            f"{name}: {figures['answered']} calls answered 200, logged {figures['logged']}: {verdict}{extra}"
        )
    for phase in ("b1", "b3_ttft"):
        for name, figures in report[phase].items():
            if figures["errors"]:
                print_(f"[red]{phase} {name}: {figures['errors']} errors, e.g. {figures['first_error']}[/]")
