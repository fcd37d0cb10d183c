"""The shared upstream client of `providers/_http.py` against a real socket server."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys

import pytest

from llm_manager.providers._http import UpstreamClient
from llm_manager.testing.fake_upstream import FakeUpstream, Reply
from tests.providers.conftest import CountingUpstream

SLOW_STREAM = Reply.sse([b"data: %d\n\n" % number for number in range(20)], chunk_delay=0.05)


async def test_a_response_reads_whole_and_keeps_the_connection(
    counting_upstream: CountingUpstream, http: UpstreamClient
) -> None:
    counting_upstream.add("POST", "/json", Reply.json({"answer": 42}, headers=(("X-Request-Id", "r1"),)))

    for _ in range(3):
        response = await http.post(f"{counting_upstream.url}/json", content=b'{"q": 1}')
        assert response.status_code == 200
        assert response.is_success
        assert response.content == b'{"answer": 42}'
        assert response.text == '{"answer": 42}'
        assert response.headers["x-request-id"] == response.headers["X-REQUEST-ID"] == "r1"

    assert counting_upstream.requests[0].body == b'{"q": 1}'
    assert counting_upstream.connections == 1


async def test_stopping_early_drops_the_connection_instead_of_pooling_it(
    counting_upstream: CountingUpstream, http: UpstreamClient
) -> None:
    counting_upstream.add("POST", "/sse", SLOW_STREAM)
    counting_upstream.add("GET", "/json", Reply.json({}))

    async with http.stream("POST", f"{counting_upstream.url}/sse", content=b"{}") as response:
        assert await response.read_chunk()

    assert await asyncio.to_thread(counting_upstream.aborted.wait, 5)
    await http.get(f"{counting_upstream.url}/json")
    assert counting_upstream.connections == 2


async def test_an_error_inside_the_stream_drops_the_connection(
    counting_upstream: CountingUpstream, http: UpstreamClient
) -> None:
    counting_upstream.add("POST", "/sse", SLOW_STREAM)

    with pytest.raises(LookupError):
        async with http.stream("POST", f"{counting_upstream.url}/sse", content=b"{}") as response:
            await response.read_chunk()
            raise LookupError

    assert await asyncio.to_thread(counting_upstream.aborted.wait, 5)


async def test_a_stream_read_to_its_end_goes_back_to_the_pool(
    counting_upstream: CountingUpstream, http: UpstreamClient
) -> None:
    counting_upstream.add("POST", "/sse", Reply.sse([b"data: 1\n\n", b"data: 2\n\n"]))

    for _ in range(3):
        async with http.stream("POST", f"{counting_upstream.url}/sse", content=b"{}") as response:
            assert [chunk async for chunk in response.aiter_bytes()]

    assert counting_upstream.connections == 1
    assert not counting_upstream.aborted.is_set()


async def test_lines_split_at_every_line_end(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add(
        "GET", "/lines", Reply.ndjson([b"one\r", b"\ntwo\rthr", "ee\ncaf\xc3".encode("latin-1"), b"\xa9"])
    )

    async with http.stream("GET", f"{upstream.url}/lines") as response:
        lines = [line async for line in response.aiter_lines()]

    assert lines == ["one", "two", "three", "café"]


async def test_gzip_bodies_are_decoded(upstream: FakeUpstream, http: UpstreamClient) -> None:
    body = b'{"text": "' + b"pelican " * 200 + b'"}'
    upstream.add(
        "POST",
        "/gz",
        Reply(
            headers=(("content-type", "application/json"), ("content-encoding", "gzip")),
            chunks=(gzip.compress(body),),
        ),
    )

    response = await http.post(f"{upstream.url}/gz", content=b"{}")

    assert response.content == body
    assert "gzip" in upstream.requests[-1].headers["accept-encoding"]


async def test_the_text_follows_the_charset(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add(
        "GET",
        "/latin",
        Reply.json("café".encode("latin-1"), headers=(("content-type", "text/plain; charset=latin-1"),)),
    )

    response = await http.get(f"{upstream.url}/latin")

    assert response.text == "café"


async def test_redirects_are_not_followed(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add("POST", "/old", Reply(status=308, headers=(("location", f"{upstream.url}/new"),)))

    response = await http.post(f"{upstream.url}/old", content=b"{}", headers={"Authorization": "Bearer sk-x"})

    assert response.status_code == 308
    assert not response.is_success
    assert [request.path for request in upstream.requests] == ["/old"]


async def test_cookies_are_not_kept_between_calls(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add("GET", "/models", Reply.json({}, headers=(("set-cookie", "session=tenant-a; Path=/"),)))

    await http.get(f"{upstream.url}/models")
    await http.get(f"{upstream.url}/models")

    assert "cookie" not in upstream.requests[-1].headers


async def test_proxy_settings_in_the_environment_are_ignored(
    upstream: FakeUpstream, http: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, FakeUpstream.closed_port_url())
    upstream.add("GET", "/models", Reply.json({"data": []}))

    response = await http.get(f"{upstream.url}/models", params={"limit": "5"})

    assert response.is_success
    assert upstream.requests[-1].path == "/models?limit=5"


async def test_content_must_be_read_first(upstream: FakeUpstream, http: UpstreamClient) -> None:
    upstream.add("GET", "/models", Reply.json({}))

    async with http.stream("GET", f"{upstream.url}/models") as response:
        with pytest.raises(RuntimeError, match="aread"):
            _ = response.content
        assert await response.aread() == await response.aread() == b"{}"


async def test_a_closed_client_refuses_requests(upstream: FakeUpstream) -> None:
    client = UpstreamClient()
    upstream.add("GET", "/models", Reply.json({}))
    await client.get(f"{upstream.url}/models")
    await client.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await client.get(f"{upstream.url}/models")
    await client.aclose()  # closing twice is harmless


def test_a_client_can_be_built_and_closed_without_a_loop_having_run_it() -> None:
    # The manager builds its client before the first request; aiohttp needs the loop only then.
    client = UpstreamClient()
    asyncio.run(client.aclose())


def test_the_server_process_does_not_load_httpx() -> None:
    code = (
        "import sys, llm_manager.server.app, llm_manager.cli.app; "
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('httpx', 'httpx_sse')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


async def test_calls_beyond_the_connection_limit_wait_for_a_free_connection(
    counting_upstream: CountingUpstream,
) -> None:
    counting_upstream.add("POST", "/sse", Reply.sse([b"data: 1\n\n", b"data: 2\n\n"], chunk_delay=0.2))
    opened: list[float] = []

    async def call(http: UpstreamClient) -> None:
        async with http.stream("POST", f"{counting_upstream.url}/sse", content=b"{}") as response:
            opened.append(asyncio.get_running_loop().time())
            await response.aread()

    async with UpstreamClient(max_connections=1) as http:
        await asyncio.gather(call(http), call(http))

    assert counting_upstream.connections == 1  # the second call reused the first one's connection
    assert opened[1] - opened[0] >= 0.15  # ...once the first stream had ended
