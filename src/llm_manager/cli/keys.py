"""`llm-manager keys ...`: encryption key status, rotation and generation."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from llm_manager.cli._runtime import consoles, print_json, run
from llm_manager.services.secrets import generate_key

app = typer.Typer(help="Encryption keys that protect provider API keys at rest.", no_args_is_help=True)


@app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """How many secrets each key still protects; a key at 0 that is not primary can be removed."""
    keys = run(lambda llm: llm.secrets.status())
    if as_json:
        print_json([asdict(key) for key in keys])
        return
    table = Table(header_style="bold")
    for column in ("key id", "role", "secrets", "in ring", "note"):
        table.add_column(column)
    for key in keys:
        note = ""
        if not key.primary and key.secrets == 0 and key.in_ring:
            note = "nothing encrypted under it: can be removed"
        elif not key.in_ring and key.secrets:
            note = "[red]missing from the ring: its secrets cannot be decrypted[/]"
        table.add_row(
            key.key_id,
            "primary" if key.primary else "old",
            str(key.secrets),
            "yes" if key.in_ring else "no",
            note,
        )
    consoles()[0].print(table)


@app.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored secret under the newest (first) key."""
    moved = run(lambda llm: llm.secrets.rotate())
    consoles()[0].print(f"Re-encrypted {moved} secret(s) under the primary key.")


@app.command("generate")
def generate() -> None:
    """Print a new key: put it first in LLM_MANAGER_SECRET_KEYS (or the key file), then rotate."""
    typer.echo(generate_key())
