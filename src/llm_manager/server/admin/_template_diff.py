"""What changed between two versions of a prompt template, part by part, as lines added and removed.

Each part (system, user, variables, configuration and parameters) is compared as lines with
difflib. Variables and parameters are written one per line first, so a changed default shows as
one removed and one added line rather than as a change somewhere inside a JSON blob. Long runs
of unchanged lines are folded, keeping a few lines of context around each change.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llm_manager.services.prompt_rendering import VariableSpec
from llm_manager.services.templates import TemplateVersionView

CONTEXT_LINES = 3
LineKind = Literal["same", "added", "removed", "folded"]


@dataclass(frozen=True, kw_only=True)
class DiffLine:
    kind: LineKind
    text: str
    """For `folded`: how many unchanged lines were left out, in words."""


@dataclass(frozen=True, kw_only=True)
class PartDiff:
    part: str
    lines: tuple[DiffLine, ...]

    @property
    def changed(self) -> bool:
        return any(line.kind in ("added", "removed") for line in self.lines)

    @property
    def added(self) -> int:
        return sum(line.kind == "added" for line in self.lines)

    @property
    def removed(self) -> int:
        return sum(line.kind == "removed" for line in self.lines)


def version_diff(old: TemplateVersionView, new: TemplateVersionView) -> list[PartDiff]:
    """Every part of `old` → `new`, in the order the editor shows them."""
    return [
        PartDiff(part=part, lines=tuple(diff_lines(before, after)))
        for part, before, after in (
            ("System", _text_lines(old.system), _text_lines(new.system)),
            ("User", _text_lines(old.user), _text_lines(new.user)),
            ("Variables", variable_lines(old.variables), variable_lines(new.variables)),
            (
                "Configuration and parameters",
                settings_lines(old.configuration, old.params),
                settings_lines(new.configuration, new.params),
            ),
        )
    ]


def diff_lines(old: Sequence[str], new: Sequence[str], context: int = CONTEXT_LINES) -> list[DiffLine]:
    """`old` → `new` line by line; unchanged runs longer than twice `context` are folded."""
    lines: list[DiffLine] = []
    opcodes = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    for index, (tag, old_start, old_end, new_start, new_end) in enumerate(opcodes):
        if tag == "equal":
            lines += _unchanged(
                old[old_start:old_end], context, first=index == 0, last=index == len(opcodes) - 1
            )
            continue
        lines += [DiffLine(kind="removed", text=text) for text in old[old_start:old_end]]
        lines += [DiffLine(kind="added", text=text) for text in new[new_start:new_end]]
    return lines


def _unchanged(run: Sequence[str], context: int, *, first: bool, last: bool) -> list[DiffLine]:
    """An unchanged run: whole when short, else the context lines next to the changes around it."""
    keep_before = 0 if first else context
    keep_after = 0 if last else context
    if len(run) <= keep_before + keep_after + 1 or (first and last):
        return [DiffLine(kind="same", text=text) for text in run]
    folded = len(run) - keep_before - keep_after
    return [
        *(DiffLine(kind="same", text=text) for text in run[:keep_before]),
        DiffLine(kind="folded", text=f"{folded} unchanged line{'s' if folded != 1 else ''}"),
        *(DiffLine(kind="same", text=text) for text in run[len(run) - keep_after :]),
    ]


def variable_lines(specs: Sequence[VariableSpec]) -> list[str]:
    """One line per declared variable: `name: type, required, default <json>, "description"`."""
    lines = []
    for spec in specs:
        parts = [spec.type, "required" if spec.required else "optional"]
        if spec.default is not None:
            parts.append(f"default {json.dumps(spec.default, ensure_ascii=False)}")
        if spec.description:
            parts.append(json.dumps(spec.description, ensure_ascii=False))
        lines.append(f"{spec.name}: {', '.join(parts)}")
    return lines


def settings_lines(configuration: str | None, params: dict[str, Any]) -> list[str]:
    return [
        f"configuration: {configuration or '(none: the caller chooses)'}",
        *(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in sorted(params.items())),
    ]


def _text_lines(text: str | None) -> list[str]:
    return (text or "").splitlines()
