"""`llm-manager tokens ...`: a secret shown once, scopes and expiry stored, revocation, refusals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer

from llm_manager.cli.tokens import parse_expiry
from tests.cli.conftest import FAST, Cli, json_output

SECRET = re.compile(r"^llmm_[0-9a-f]{8}_[A-Za-z0-9_-]{43}$")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.usefixtures("portal")
def test_create_prints_the_secret_alone_once_and_lists_never_show_it(cli: Cli) -> None:
    created = cli("tokens", "create", "--app", "portal", "--name", "web")

    secret = created.stdout.strip()
    assert SECRET.match(secret)
    assert created.stdout == secret + "\n"
    prefix = secret[: len("llmm_12345678")]
    assert prefix in created.stderr
    assert "cannot be shown again" in created.stderr
    listings = [
        cli("tokens", "list"),
        cli("tokens", "list", "--all"),
        cli("tokens", "list", "--json"),
        cli("tokens", "list", "--app", "portal", "--json"),
    ]
    for listing in listings:
        assert prefix in listing.stdout
        assert secret not in listing.stdout + listing.stderr
        assert secret[len(prefix) + 1 :] not in listing.stdout + listing.stderr
    [listed] = json_output(listings[2])
    assert not {key for key in listed if "hash" in key or "secret" in key}
    assert (listed["prefix"], listed["name"], listed["status"]) == (prefix, "web", "active")


@pytest.mark.usefixtures("portal")
def test_create_json_has_the_secret_and_what_was_stored(cli: Cli) -> None:
    created = json_output(
        cli(
            "tokens",
            "create",
            "--app",
            "portal",
            "--name",
            "ops",
            "--scope",
            "management",
            "--scope",
            "inference",
            "--config",
            FAST,
            "--rpm",
            "5",
            "--tpm",
            "1000",
            "--json",
        )
    )

    assert SECRET.match(created["token"])
    [listed] = json_output(cli("tokens", "list", "--json"))
    assert listed == {key: value for key, value in created.items() if key != "token"}
    assert listed["application"] == "portal"
    assert listed["groups"] == ["inference", "management"]
    assert listed["configurations"] == [FAST]
    assert (listed["rpm_limit"], listed["tpm_limit"]) == (5, 1000)
    assert (listed["expires_at"], listed["revoked_at"], listed["last_used_at"]) == (None, None, None)
    table = cli("tokens", "list").stdout
    assert "inference, management" in table
    assert FAST in table


@pytest.mark.usefixtures("portal")
def test_defaults_are_inference_every_configuration_and_no_expiry(cli: Cli) -> None:
    created = json_output(cli("tokens", "create", "--app", "portal", "--json"))

    assert created["groups"] == ["inference"]
    assert created["configurations"] is None
    assert created["expires_at"] is None
    assert "all" in cli("tokens", "list").stdout


@pytest.mark.usefixtures("portal")
def test_expiry_is_stored_from_a_lifetime_or_a_time(cli: Cli) -> None:
    before = datetime.now(UTC)
    relative = json_output(cli("tokens", "create", "--app", "portal", "--expires", "12h", "--json"))
    absolute = json_output(
        cli("tokens", "create", "--app", "portal", "--expires", "2099-01-01T02:00+02:00", "--json")
    )

    expires_at = datetime.fromisoformat(relative["expires_at"])
    assert before + timedelta(hours=12) <= expires_at <= datetime.now(UTC) + timedelta(hours=12)
    assert datetime.fromisoformat(absolute["expires_at"]) == datetime(2099, 1, 1, tzinfo=UTC)
    assert "2099-01-01 00:00" in cli("tokens", "list").stdout


@pytest.mark.parametrize("expires", ["2020-01-01T00:00Z", "0h", "5m", "soon", "999999w"])
def test_an_expiry_in_the_past_or_unreadable_is_refused_naming_the_option(
    cli: Cli, data_dir: Path, expires: str
) -> None:
    cli("apps", "create", "portal")

    result = cli("tokens", "create", "--app", "portal", "--expires", expires, exit_code=2)

    assert "--expires" in result.stderr
    assert json_output(cli("tokens", "list", "--json")) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90min", NOW + timedelta(minutes=90)),
        ("12h", NOW + timedelta(hours=12)),
        ("30d", NOW + timedelta(days=30)),
        ("2w", NOW + timedelta(weeks=2)),
        ("2027-01-01T00:00Z", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T09:30", datetime(2027, 1, 1, 9, 30, tzinfo=UTC)),
        ("2027-01-01T09:30-05:00", datetime(2027, 1, 1, 14, 30, tzinfo=UTC)),
    ],
)
def test_parse_expiry(text: str, expected: datetime) -> None:
    assert parse_expiry(text, now=NOW) == expected


def test_parse_expiry_refuses_now_and_the_past() -> None:
    with pytest.raises(typer.BadParameter, match="not in the future"):
        parse_expiry("2026-03-01T12:00Z", now=NOW)
    with pytest.raises(typer.BadParameter, match="not in the future"):
        parse_expiry("0d", now=NOW)


@pytest.mark.usefixtures("portal")
def test_revoke_changes_the_status_and_hides_the_token_from_the_default_list(cli: Cli) -> None:
    kept = json_output(cli("tokens", "create", "--app", "portal", "--name", "kept", "--json"))
    revoked = json_output(cli("tokens", "create", "--app", "portal", "--name", "gone", "--json"))

    result = cli("tokens", "revoke", revoked["prefix"])

    assert revoked["prefix"] in result.stdout
    assert [token["prefix"] for token in json_output(cli("tokens", "list", "--json"))] == [kept["prefix"]]
    statuses = {
        token["prefix"]: token["status"] for token in json_output(cli("tokens", "list", "--all", "--json"))
    }
    assert statuses == {kept["prefix"]: "active", revoked["prefix"]: "revoked"}
    assert "revoked" in cli("tokens", "list", "--all").stdout
    cli("tokens", "revoke", revoked["prefix"])
    assert "not found" in cli("tokens", "revoke", "llmm_00000000", exit_code=1).stderr


@pytest.mark.usefixtures("portal")
def test_list_filters_by_application(cli: Cli) -> None:
    cli("apps", "create", "batch")
    portal = json_output(cli("tokens", "create", "--app", "portal", "--json"))
    json_output(cli("tokens", "create", "--app", "batch", "--json"))

    listed = json_output(cli("tokens", "list", "--app", "portal", "--json"))

    assert [token["prefix"] for token in listed] == [portal["prefix"]]
    assert "ghost" in cli("tokens", "list", "--app", "ghost", exit_code=1).stderr
    cli("tokens", "revoke", portal["prefix"])
    assert "No tokens" in cli("tokens", "list", "--app", "portal").stderr


@pytest.mark.usefixtures("portal")
def test_refusals_name_what_was_wrong(cli: Cli) -> None:
    assert "ghost" in cli("tokens", "create", "--app", "ghost", exit_code=1).stderr
    assert "nope" in cli("tokens", "create", "--app", "portal", "--config", "nope", exit_code=1).stderr
    assert "--scope" in cli("tokens", "create", "--app", "portal", "--scope", "root", exit_code=2).stderr
    assert "--rpm" in cli("tokens", "create", "--app", "portal", "--rpm", "0", exit_code=2).stderr
    assert "--app" in cli("tokens", "create", exit_code=2).stderr
    assert json_output(cli("tokens", "list", "--all", "--json")) == []
