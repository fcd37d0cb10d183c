from __future__ import annotations

import gc

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


def test_a_serving_app_hides_its_start_up_heap_from_the_garbage_collector(settings: Settings) -> None:
    """A full collection over the start-up heap pauses every open stream for tens of milliseconds."""
    gc.unfreeze()
    try:
        with TestClient(create_app(settings)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() == 0  # a library or test app leaves the collector alone

        with TestClient(create_app(settings, freeze_heap=True)) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() > 100_000
    finally:
        gc.unfreeze()
