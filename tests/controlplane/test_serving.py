"""Django's HTTP requests under ASGI (controlplane/serving.py): one hop to a persistent pool per request, no thread
started per request, database connections kept between requests, streaming bodies and async_to_sync still work."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.db import connections

from controlplane.serving import SyncASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


def request(handler: SyncASGIHandler, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        await handler(scope, receive, send)

    asyncio.run(run())
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body")
    return {"status": sent[0]["status"], "headers": dict(sent[0]["headers"]), "body": body}


@pytest.fixture
def handler():
    handler = SyncASGIHandler(threads=2)
    yield handler
    handler.executor.shutdown(wait=True)


def test_requests_start_no_threads_and_reuse_the_database_connection():
    handler = SyncASGIHandler(threads=1)

    def pool_connection() -> int:
        """The open database connection the pool thread kept after its request (a closed one fails)."""
        kept = handler.executor.submit(lambda: connections["default"].connection).result()
        assert kept is not None, "the request closed its database connection"
        return id(kept)

    for _ in range(3):  # the pool starts its thread
        assert request(handler, "/readyz")["status"] == 200
        pool_connection()
    threads = threading.active_count()
    seen = set()
    for _ in range(30):
        assert request(handler, "/readyz")["status"] == 200
        seen.add(pool_connection())
    assert threading.active_count() == threads
    assert len(handler.executor._threads) == 1
    assert len(seen) == 1  # the same connection, kept between requests (CONN_MAX_AGE)
    handler.executor.shutdown(wait=True)


def test_an_api_error_and_cookies_pass_through(handler):
    answer = request(handler, "/client/v4/accounts", [(b"authorization", b"Bearer nope")])
    assert answer["status"] == 401
    assert b'"success":false' in answer["body"].replace(b" ", b"")
    login = request(handler, "/login/")
    assert login["status"] == 200


def test_a_streamed_static_file_arrives_whole(handler, settings):
    from django.contrib.staticfiles import finders

    expected = open(finders.find("ui/app.css"), "rb").read()  # noqa: SIM115
    answer = request(handler, "/static/ui/app.css")
    assert answer["status"] == 200
    assert answer["body"] == expected


def test_the_benchmark_ceiling_view_is_absent_unless_enabled(client):
    # BENCH_ENDPOINTS=1 (bench/api only; refused in production) adds it when the URLs load.
    assert client.get("/bench/trivial").status_code == 404
