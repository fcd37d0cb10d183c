from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import llm_manager
from llm_manager.server import docs


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = FastAPI(title="LLM Manager", docs_url=None, redoc_url=None)
    app.include_router(docs.router)
    docs.mount_static(app)
    with TestClient(app) as client:
        yield client


def test_docs_page_loads_only_local_assets(client: TestClient) -> None:
    response = client.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'src="/static/docs/swagger-ui-bundle.js"' in page
    assert 'href="/static/docs/swagger-ui.css"' in page
    assert "url: '/openapi.json'" in page
    asset_urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert asset_urls
    assert not [url for url in asset_urls if "//" in url]
    assert '"validatorUrl": null' in page


def test_docs_page_honours_the_root_path() -> None:
    app = FastAPI(docs_url=None, redoc_url=None)
    app.include_router(docs.router)
    with TestClient(app, root_path="/llm") as client:
        page = client.get("/docs").text

    assert 'src="/llm/static/docs/swagger-ui-bundle.js"' in page
    assert "url: '/llm/openapi.json'" in page


@pytest.mark.parametrize(
    ("asset", "content_type"),
    [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ],
)
def test_vendored_assets_are_served(client: TestClient, asset: str, content_type: str) -> None:
    response = client.get(f"/static/docs/{asset}")

    assert response.status_code == 200
    assert content_type in response.headers["content-type"]
    assert len(response.content) > 500


def test_vendored_assets_ship_inside_the_package() -> None:
    names = {path.name for path in docs.STATIC_DIRECTORY.iterdir()}

    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE", "VERSION"} <= names
    assert Path(llm_manager.__file__).parent in docs.STATIC_DIRECTORY.parents
