"""What every command shares: opening the manager, parsing k=v options, reporting errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

from llm_manager.errors import LLMManagerError
from llm_manager.manager import LLMManager
from llm_manager.settings import load_settings

T = TypeVar("T")


def consoles() -> tuple[Console, Console]:
    """Standard output for results, standard error for progress and messages."""
    return Console(), Console(stderr=True)


def run(action: Callable[[LLMManager], Awaitable[T]]) -> T:
    """Open the manager, run one action, close it (flushing usage); errors become exit code 1."""

    async def main() -> T:
        async with LLMManager.open(load_settings()) as llm:
            return await action(llm)

    try:
        return asyncio.run(main())
    except LLMManagerError as error:
        fail(str(error))


def fail(message: str, code: int = 1) -> NoReturn:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def parse_pairs(pairs: Iterable[str], *, option: str) -> dict[str, Any]:
    """`k=v` options; values are JSON when they parse as JSON (0.2, 5, true, ["a"]) else strings."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, separator, raw = pair.partition("=")
        if not separator or not key:
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=_json_default, ensure_ascii=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def money(value: Decimal | None) -> str:
    if value is None:
        return "unpriced"
    if value == 0:
        return "$0"
    return f"${value:.6f}".rstrip("0").rstrip(".") if value < 1 else f"${value:.2f}"
