"""`/api/templates`: versions, labels, rendering (sandboxed), stats — and templates in `/api/stream`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from llm_manager.manager import LLMManager
from llm_manager.services.usage import UsageRow
from tests.server.api.conftest import Api

GREETING = {
    "name": "greeting",
    "system": "You greet {{ audience }} politely.",
    "user": "Say hello to {{ name }}{% if excited %}!{% endif %}",
    "variables": [
        {"name": "name", "required": True},
        {"name": "audience", "default": "customers"},
        {"name": "excited", "type": "boolean", "default": False},
    ],
    "configuration": "demo",
    "params": {"max_tokens": 6},
    "note": "first draft",
    "description": "Greets someone",
}


@pytest.fixture
def templates(api: Api) -> Api:
    api.create_configuration("demo")
    created = api.client.post("/api/templates", headers=api.alpha, json=GREETING)
    assert created.status_code == 201, created.text
    return api


def _new_version(api: Api, user: str, **fields: Any) -> dict[str, Any]:
    body = {"user": user, "variables": GREETING["variables"], **fields}
    response = api.client.post("/api/templates/greeting/versions", headers=api.alpha, json=body)
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()
    return version


def test_create_version_and_read_back(templates: Api) -> None:
    api = templates
    first = api.client.get("/api/templates/greeting/versions/1", headers=api.alpha).json()
    assert first["version"] == 1
    assert first["configuration"] == "demo"
    assert first["params"] == {"max_tokens": 6}
    assert first["note"] == "first draft"
    assert first["labels"] == ["latest"]
    assert first["created_by"].startswith("token llmm_")
    assert [variable["name"] for variable in first["variables"]] == ["name", "audience", "excited"]
    assert first["variables"][0]["required"] is True

    second = _new_version(api, "Hi {{ name }}", note="shorter")
    assert second["version"] == 2
    assert second["labels"] == ["latest"]

    template = api.client.get("/api/templates/greeting", headers=api.alpha).json()
    assert template["latest_version"] == 2
    assert template["description"] == "Greets someone"
    assert template["labels"] == {"latest": 2}
    versions = api.client.get("/api/templates/greeting/versions", headers=api.alpha).json()["data"]
    assert [version["version"] for version in versions] == [2, 1]
    listed = api.client.get("/api/templates", headers=api.beta).json()["data"]
    assert [item["name"] for item in listed] == ["greeting"]

    again = api.client.post("/api/templates", headers=api.alpha, json=GREETING)
    assert again.status_code == 409
    assert api.client.get("/api/templates/greeting/versions/9", headers=api.alpha).status_code == 404
    assert api.client.get("/api/templates/missing", headers=api.alpha).status_code == 404


def test_labels_choose_what_a_bare_name_renders(templates: Api) -> None:
    api = templates
    _new_version(api, "Version two for {{ name }}")

    def rendered(version_or_label: Any = None) -> str:
        body: dict[str, Any] = {"variables": {"name": "Ada"}}
        if version_or_label is not None:
            body["version_or_label"] = version_or_label
        response = api.client.post("/api/templates/greeting/render", headers=api.alpha, json=body)
        assert response.status_code == 200, response.text
        text: str = response.json()["user"]
        return text

    assert rendered() == "Version two for Ada"  # no production label: the newest
    labelled = api.client.put(
        "/api/templates/greeting/labels/production", headers=api.alpha, json={"version": 1}
    )
    assert labelled.status_code == 200
    assert labelled.json()["labels"] == {"latest": 2, "production": 1}
    assert rendered() == "Say hello to Ada"
    assert rendered("latest") == "Version two for Ada"
    assert rendered(2) == "Version two for Ada"
    assert rendered("1") == "Say hello to Ada"
    assert api.client.get("/api/templates/greeting/versions/1", headers=api.alpha).json()["labels"] == [
        "production"
    ]

    moved = api.client.put("/api/templates/greeting/labels/latest", headers=api.alpha, json={"version": 1})
    assert moved.status_code == 409
    bad = api.client.put("/api/templates/greeting/labels/Bad Label", headers=api.alpha, json={"version": 1})
    assert bad.json()["error"]["param"] == "label"
    missing = api.client.put("/api/templates/greeting/labels/canary", headers=api.alpha, json={"version": 7})
    assert missing.status_code == 404
    unknown_label = api.client.post(
        "/api/templates/greeting/render",
        headers=api.alpha,
        json={"version_or_label": "canary", "variables": {}},
    )
    assert unknown_label.status_code == 404

    removed = api.client.delete("/api/templates/greeting/labels/production", headers=api.alpha)
    assert removed.json()["labels"] == {"latest": 2}
    assert rendered() == "Version two for Ada"


def test_render_fills_defaults_and_names_a_missing_variable(templates: Api) -> None:
    api = templates
    path = "/api/templates/greeting/render"
    full = api.client.post(
        path, headers=api.alpha, json={"variables": {"name": "Bo", "excited": "yes"}}
    ).json()
    assert full["system"] == "You greet customers politely."
    assert full["user"] == "Say hello to Bo!"
    assert full["variables"] == {"name": "Bo", "audience": "customers", "excited": True}
    assert (full["name"], full["version"], full["configuration"]) == ("greeting", 1, "demo")

    missing = api.client.post(path, headers=api.alpha, json={"variables": {}})
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "variables.name"
    assert "'name' is required" in missing.json()["error"]["message"]
    unknown = api.client.post(path, headers=api.alpha, json={"variables": {"name": "x", "colour": "red"}})
    assert unknown.json()["error"]["param"] == "variables.colour"


def test_sandbox_escapes_and_bad_templates_are_refused(templates: Api) -> None:
    api = templates
    escape = _new_version(api, "{{ ''.__class__.__mro__[1].__subclasses__() }} {{ name }}")
    rendered = api.client.post(
        "/api/templates/greeting/render",
        headers=api.alpha,
        json={"version_or_label": escape["version"], "variables": {"name": "x"}},
    )
    assert rendered.status_code == 400
    error = rendered.json()["error"]
    assert error["code"] == "template_error"
    assert "__class__" in error["message"]
    assert "object" not in rendered.text.split("__class__")[0]  # nothing of Python's internals leaked

    broken = api.client.post(
        "/api/templates/greeting/versions", headers=api.alpha, json={"user": "{% if %}", "variables": []}
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "template_error"
    undeclared = api.client.post(
        "/api/templates/greeting/versions", headers=api.alpha, json={"user": "Hi {{ who }}"}
    )
    assert undeclared.status_code == 400
    assert "'who'" in undeclared.json()["error"]["message"]
    bad_name = api.client.post("/api/templates", headers=api.alpha, json={**GREETING, "name": "Not Valid"})
    assert bad_name.json()["error"]["param"] == "name"
    bad_variable = api.client.post(
        "/api/templates",
        headers=api.alpha,
        json={**GREETING, "name": "other", "variables": [{"type": "string"}]},
    )
    assert bad_variable.status_code == 400
    assert bad_variable.json()["error"]["param"].startswith("variables[0]")


def test_a_version_may_not_default_to_another_applications_configuration(templates: Api) -> None:
    api = templates
    api.create_configuration("beta-only", application="beta")
    refused = api.client.post(
        "/api/templates/greeting/versions",
        headers=api.alpha,
        json={"user": "Hi {{ name }}", "variables": GREETING["variables"], "configuration": "beta-only"},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "configuration"


def test_only_management_tokens_manage_templates(templates: Api) -> None:
    inference = templates.token("alpha", groups=("inference",))
    for method, path in (
        ("GET", "/api/templates"),
        ("GET", "/api/templates/greeting"),
        ("POST", "/api/templates/greeting/render"),
        ("DELETE", "/api/templates/greeting"),
    ):
        response = templates.client.request(method, path, headers=inference, json={})
        assert response.status_code == 403, (method, path)
    assert templates.client.get("/api/templates").status_code == 401


def test_streaming_with_a_template_records_its_version_and_stats_compare_versions(templates: Api) -> None:
    api = templates
    _new_version(api, "Second: {{ name }}", params={"max_tokens": 3}, configuration="demo")
    inference = api.token("alpha", groups=("inference",))

    def stream(body: dict[str, Any]) -> dict[str, Any]:
        with api.client.stream("POST", "/api/stream", headers=inference, json=body) as response:
            assert response.status_code == 200, response.read()
            events = [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
        done: dict[str, Any] = events[-1]
        assert done["type"] == "done", events
        return done["stats"]

    # no configuration: the version's default; its params are defaults the request overrides
    latest = stream({"template": "greeting", "variables": {"name": "Ada"}})
    assert latest["configuration"] == "demo"
    assert latest["completion_tokens"] == 3
    first = stream({"template": "greeting@1", "variables": {"name": "Bo"}, "params": {"max_tokens": 2}})
    assert first["completion_tokens"] == 2
    stream({"template": "greeting@1", "variables": {"name": "Cy"}, "configuration": "priced"})

    async def rows(llm: LLMManager) -> list[UsageRow]:
        await llm.services.writer.flush()
        return [row for row in [await llm.usage.get(stats["log_id"]) for stats in (latest, first)] if row]

    recorded = api.gateway.run(rows)
    assert [(row.template_name, row.template_version) for row in recorded] == [
        ("greeting", 2),
        ("greeting", 1),
    ]

    stats = api.client.get("/api/templates/greeting/stats", headers=api.alpha).json()["data"]
    assert [(entry["version"], entry["requests"]) for entry in stats] == [(2, 1), (1, 2)]
    assert all(entry["avg_latency_ms"] is not None for entry in stats)

    missing = api.client.post(
        "/api/stream", headers=inference, json={"template": "greeting", "variables": {}}
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["param"] == "variables.name"
    both = api.client.post(
        "/api/stream",
        headers=inference,
        json={"template": "greeting", "prompt": "hi", "configuration": "demo"},
    )
    assert both.status_code == 400
    no_configuration = api.client.post("/api/stream", headers=inference, json={"prompt": "hi"})
    assert no_configuration.json()["error"]["param"] == "configuration"
    _new_version(api, "Third: {{ name }}")  # names no configuration
    unnamed = api.client.post(
        "/api/stream", headers=inference, json={"template": "greeting", "variables": {"name": "x"}}
    )
    assert unnamed.status_code == 400
    assert unnamed.json()["error"]["param"] == "configuration"
    created = api.client.post(
        "/api/streams",
        headers=inference,
        json={"template": "greeting@1", "variables": {"name": "Di"}, "params": {"max_tokens": 100}},
    )
    assert created.status_code == 201
    with api.client.stream("GET", created.json()["events_url"]) as response:
        events = [orjson.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    assert "Say hello to Di" in events[-1]["stats"]["response"]


def test_stats_sum_the_cost_of_each_versions_calls_exactly(templates: Api) -> None:
    api = templates
    inference = api.token("alpha", groups=("inference",))
    log_ids = []
    for name in ("Ann", "Bob"):
        body = {"template": "greeting@1", "variables": {"name": name}, "configuration": "priced"}
        with api.client.stream("POST", "/api/stream", headers=inference, json=body) as response:
            log_ids.append(response.headers["x-llm-manager-log-id"])
            response.read()

    async def costs(llm: LLMManager) -> list[Decimal]:
        await llm.services.writer.flush()
        rows = [await llm.usage.get(log_id) for log_id in log_ids]
        return [row.cost for row in rows if row is not None and row.cost is not None]

    spent = api.gateway.run(costs)
    assert len(spent) == 2
    assert all(cost > 0 for cost in spent)
    [entry] = api.client.get("/api/templates/greeting/stats", headers=api.alpha).json()["data"]
    assert Decimal(entry["cost"]) == sum(spent)
    assert Decimal(entry["avg_cost"]) == sum(spent) / 2


def test_delete_a_template(templates: Api) -> None:
    api = templates
    assert api.client.delete("/api/templates/greeting", headers=api.alpha).status_code == 204
    assert api.client.get("/api/templates/greeting", headers=api.alpha).status_code == 404
    assert api.client.delete("/api/templates/greeting", headers=api.alpha).status_code == 404
