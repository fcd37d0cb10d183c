"""`llm-manager templates`: add versions, list, show, render, labels, statistics, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.conftest import FAST, Cli, json_output

GREETING = ("--user", "Hello {{ name }}, {{ age + 1 }} next year{% if loud %}!{% endif %}")
GREETING_VARIABLES = ("--var", "name!", "--var", "age:integer:1", "--var", "loud:boolean:no")


def _add(cli: Cli, name: str, *args: str, input: str | None = None) -> dict[str, Any]:
    saved: dict[str, Any] = json_output(cli("templates", "add", name, *args, "--json", input=input))
    return saved


def test_add_saves_numbered_versions_and_list_shows_them(cli: Cli, database: None) -> None:
    first = cli(
        "templates",
        "add",
        "greet",
        *GREETING,
        "--system",
        "Be {{ tone }}.",
        *GREETING_VARIABLES,
        "--var",
        "tone::kind",
        "--config",
        FAST,
        "--param",
        "temperature=0.3",
        "--note",
        "first try",
        "--description",
        "Greets people",
    )
    second = _add(cli, "greet", "--user", "Hi {{ name }}", "--var", "name!")

    assert "greet version 1" in first.stdout
    assert (second["version"], second["labels"]) == (2, ["latest"])
    [listed] = json_output(cli("templates", "list", "--json"))
    assert (listed["name"], listed["latest_version"], listed["description"]) == ("greet", 2, "Greets people")
    assert listed["labels"] == {"latest": 2}
    table = cli("templates", "list").stdout
    assert "greet" in table
    assert "latest→2" in table


def test_show_gives_versions_labels_and_the_chosen_version(cli: Cli, database: None) -> None:
    _add(cli, "greet", *GREETING, *GREETING_VARIABLES, "--config", FAST, "--param", "temperature=0.3")
    _add(cli, "greet", "--user", "Hi {{ name }}", "--var", "name!", "--note", "shorter")
    cli("templates", "label", "greet", "production", "1")

    shown = json_output(cli("templates", "show", "greet", "--json"))
    pinned = json_output(cli("templates", "show", "greet@2", "--json"))
    text = cli("templates", "show", "greet").stdout

    assert shown["labels"] == {"latest": 2, "production": 1}
    assert [(v["version"], v["labels"]) for v in shown["versions"]] == [(2, ["latest"]), (1, ["production"])]
    selected = shown["selected"]
    assert (selected["version"], selected["configuration"], selected["params"]) == (
        1,
        FAST,
        {"temperature": 0.3},
    )
    assert [(v["name"], v["type"], v["default"], v["required"]) for v in selected["variables"]] == [
        ("name", "string", None, True),
        ("age", "integer", 1, False),
        ("loud", "boolean", False, False),
    ]
    assert pinned["selected"]["user"] == "Hi {{ name }}"
    for fragment in ("version 1 (production)", "shorter", "integer", "Hello {{ name }}", "temperature"):
        assert fragment in text


def test_add_reads_parts_and_declarations_from_files(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "system.txt").write_text("You review {{ language }} code.", encoding="utf-8")
    (tmp_path / "variables.json").write_text(
        json.dumps(
            [
                {"name": "language", "required": True, "description": "the code's language"},
                {"name": "code", "required": True},
            ]
        ),
        encoding="utf-8",
    )

    saved = _add(
        cli,
        "review",
        "--user-file",
        "-",
        "--system-file",
        str(tmp_path / "system.txt"),
        "--variables-file",
        str(tmp_path / "variables.json"),
        input="Review this:\n{{ code }}\n",
    )

    assert saved["system"] == "You review {{ language }} code."
    assert saved["user"] == "Review this:\n{{ code }}\n"
    assert saved["variables"][0]["description"] == "the code's language"


def test_add_refuses_what_cannot_work(cli: Cli, data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "object.json").write_text('{"name": "x"}', encoding="utf-8")

    undeclared = cli("templates", "add", "t", "--user", "Hi {{ who }}", exit_code=1)
    bad_type = cli("templates", "add", "t", "--user", "{{ n }}", "--var", "n:float", exit_code=1)
    bad_default = cli("templates", "add", "t", "--user", "{{ n }}", "--var", "n:integer:many", exit_code=1)
    bad_syntax = cli("templates", "add", "t", "--user", "{% if %}", exit_code=1)
    not_json = cli(
        "templates", "add", "t", "--user", "x", "--variables-file", str(tmp_path / "bad.json"), exit_code=1
    )
    not_list = cli(
        "templates", "add", "t", "--user", "x", "--variables-file", str(tmp_path / "object.json"), exit_code=1
    )
    missing_file = cli("templates", "add", "t", "--user-file", str(tmp_path / "nowhere.txt"), exit_code=1)
    no_user = cli("templates", "add", "t", exit_code=2)
    both = cli("templates", "add", "t", "--user", "x", "--user-file", "-", exit_code=2)
    both_declarations = cli(
        "templates", "add", "t", "--user", "x", "--var", "a", "--variables-file", "v.json", exit_code=2
    )
    both_stdin = cli("templates", "add", "t", "--user-file", "-", "--system-file", "-", exit_code=2)
    unknown_configuration = cli("templates", "add", "t", "--user", "x", "--config", "nope", exit_code=1)

    assert "'who'" in undeclared.stderr
    assert "not declared" in undeclared.stderr
    assert "float" in bad_type.stderr
    assert "integer" in bad_default.stderr
    assert "user" in bad_syntax.stderr
    assert "not JSON" in not_json.stderr
    assert "JSON list" in not_list.stderr
    assert "cannot read" in missing_file.stderr
    assert "--user" in no_user.stderr
    assert "not both" in both.stderr
    assert "not both" in both_declarations.stderr
    assert "standard input" in both_stdin.stderr
    assert "'nope' not found" in unknown_configuration.stderr
    assert json_output(cli("templates", "list", "--json")) == []


def test_render_converts_values_to_their_types_without_calling_a_model(cli: Cli, database: None) -> None:
    _add(cli, "greet", *GREETING, "--system", "Be {{ tone }}.", *GREETING_VARIABLES, "--var", "tone::kind")

    rendered = json_output(cli("templates", "render", "greet", "-v", "name=Ada", "-v", "age=41", "--json"))
    text = cli("templates", "render", "greet", "-v", "name=Bob", "-v", "loud=yes", "-v", "tone=warm")

    assert (rendered["name"], rendered["version"]) == ("greet", 1)
    assert (rendered["system"], rendered["user"]) == ("Be kind.", "Hello Ada, 42 next year")
    assert rendered["variables"] == {"name": "Ada", "age": 41, "loud": False, "tone": "kind"}
    assert "Be warm." in text.stdout
    assert "Hello Bob, 2 next year!" in text.stdout
    assert "greet version 1" in text.stderr
    assert json_output(cli("usage", "--json")) == []


def test_render_without_a_system_part_prints_the_user_part_alone(cli: Cli, data_dir: Path) -> None:
    _add(cli, "plain", "--user", "Just {{ word }}", "--var", "word!")

    result = cli("templates", "render", "plain", "-v", "word=this")

    assert result.stdout == "Just this\n"


def test_render_names_what_is_wrong_with_the_variables(cli: Cli, data_dir: Path) -> None:
    _add(cli, "greet", *GREETING, *GREETING_VARIABLES)

    missing = cli("templates", "render", "greet", exit_code=1)
    unknown = cli("templates", "render", "greet", "-v", "name=A", "-v", "colour=red", exit_code=1)
    wrong_type = cli("templates", "render", "greet", "-v", "name=A", "-v", "age=old", exit_code=1)
    malformed = cli("templates", "render", "greet", "-v", "name", exit_code=2)

    assert "variable 'name' is required" in missing.stderr
    assert "unknown variable 'colour'" in unknown.stderr
    assert "variable 'age' must be an integer" in wrong_type.stderr
    assert "key=value" in malformed.stderr


def test_render_refuses_a_sandbox_escape(cli: Cli, data_dir: Path) -> None:
    _add(cli, "sneaky", "--user", "{{ name.__class__.__mro__[1].__subclasses__() }}", "--var", "name")

    result = cli("templates", "render", "sneaky", "-v", "name=x", exit_code=1)

    assert "error:" in result.stderr
    assert "subclasses" not in result.stdout


def test_labels_choose_what_a_bare_name_means(cli: Cli, database: None) -> None:
    _add(cli, "greet", "--user", "one {{ name }}", "--var", "name!")
    _add(cli, "greet", "--user", "two {{ name }}", "--var", "name!")

    def bare() -> str:
        rendered: dict[str, Any] = json_output(cli("templates", "render", "greet", "-v", "name=x", "--json"))
        return str(rendered["user"])

    assert bare() == "two x"  # no production label: the newest
    assert "greet@production → version 1" in cli("templates", "label", "greet", "production", "1").stdout
    assert bare() == "one x"
    cli("templates", "label", "greet", "canary", "2")
    assert (
        json_output(cli("templates", "render", "greet@canary", "-v", "name=x", "--json"))["user"] == "two x"
    )
    cli("templates", "label", "greet", "production", "--remove")
    assert bare() == "two x"
    assert json_output(cli("templates", "list", "--json"))[0]["labels"] == {"latest": 2, "canary": 2}


def test_label_errors(cli: Cli, data_dir: Path) -> None:
    _add(cli, "greet", "--user", "hi")

    assert "no version 5" in cli("templates", "label", "greet", "production", "5", exit_code=1).stderr
    assert "latest" in cli("templates", "label", "greet", "latest", "1", exit_code=1).stderr
    assert "VERSION" in cli("templates", "label", "greet", "production", exit_code=2).stderr
    assert "--remove" in cli("templates", "label", "greet", "x", "1", "--remove", exit_code=2).stderr
    assert "no label 'beta'" in cli("templates", "render", "greet@beta", exit_code=1).stderr
    assert "'nothing' not found" in cli("templates", "show", "nothing", exit_code=1).stderr


def test_stats_compare_versions_by_calls_tokens_and_latency(cli: Cli, database: None) -> None:
    _add(cli, "greet", "--user", "Hello {{ name }}", "--var", "name!", "--config", FAST)
    quiet = cli("templates", "stats", "greet")
    _add(cli, "greet", "--user", "Hi {{ name }}", "--var", "name!", "--config", FAST)
    for reference in ("greet@1", "greet@1", "greet@2"):
        cli("chat", "--template", reference, "-v", "name=Ada", "--json")

    rows = json_output(cli("templates", "stats", "greet", "--json"))
    table = cli("templates", "stats", "greet").stdout

    assert "No calls" in quiet.stderr
    assert [(row["version"], row["requests"], row["errors"]) for row in rows] == [(2, 1, 0), (1, 2, 0)]
    assert rows[1]["prompt_tokens"] == 2 * 2
    assert rows[1]["cost"] == rows[1]["avg_cost"] == "0"
    assert rows[0]["avg_latency_ms"] is not None
    assert "calls per version" in table


def test_delete_removes_every_version_but_keeps_usage_rows(cli: Cli, data_dir: Path) -> None:
    _add(cli, "greet", "--user", "Hello", "--config", FAST)
    cli("chat", "--template", "greet", "--json")

    refused = cli("templates", "delete", "greet", input="n\n", exit_code=1)
    cli("templates", "delete", "greet", "--yes")

    assert "1 versions" in refused.stdout
    assert json_output(cli("templates", "list", "--json")) == []
    assert "No templates" in cli("templates", "list").stderr
    [row] = json_output(cli("usage", "--json"))
    assert (row["template_name"], row["template_version"]) == ("greet", 1)
    assert "not found" in cli("templates", "stats", "greet", exit_code=1).stderr
