"""The official Cloudflare SDK pointed at this app, in-process over real HTTP semantics (httpx's WSGI transport)."""

from __future__ import annotations

import cloudflare
import httpx
from django.core.signals import request_finished, request_started
from django.db import close_old_connections


def _app_keeping_test_connection(environ, start_response):
    """Django's WSGI app without closing the test's database connection at the end of each request (what
    django.test.Client does too)."""
    from controlplane.wsgi import application

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def sdk_client(raw_token: str) -> cloudflare.Cloudflare:
    http = httpx.Client(transport=httpx.WSGITransport(app=_app_keeping_test_connection), base_url="http://testserver")
    return cloudflare.Cloudflare(
        api_token=raw_token, base_url="http://testserver/client/v4", http_client=http, max_retries=0
    )
