from __future__ import annotations

from fastapi.testclient import TestClient

from llm_manager.server.app import create_app
from llm_manager.settings import Settings


def test_health_and_readiness(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert client.get("/openapi.json").json()["info"]["title"] == "LLM Manager"
