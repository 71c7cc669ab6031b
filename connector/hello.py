"""The built-in `hello_world` service: a test page showing the request as the origin would receive it, like
cloudflared's hello world. HTML by default, JSON when the request's Accept asks for application/json."""

from __future__ import annotations

import html
import json

from . import __version__

_STYLE = (
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f4f6f8;color:#1d2127}"
    "main{max-width:56rem;margin:3rem auto;padding:2rem 2.5rem;background:#fff;border-radius:8px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.12)}h1{margin-top:0;font-size:1.6rem}"
    "table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;padding:.35rem .6rem;"
    "border-bottom:1px solid #e3e6ea;vertical-align:top;word-break:break-all}th{width:14rem;color:#4b5563}"
    "code{background:#eef1f4;padding:.1rem .3rem;border-radius:3px}.ok{color:#15803d}"
)


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def wants_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"accept" and b"application/json" in value.lower():
            return True
    return False


def render(
    method: str, target: str, authority: str, headers: list[tuple[bytes, bytes]], connector_id: str = ""
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, response headers, body) of the hello-world page for one request."""
    path, _, query = target.partition("?")
    pairs = [(_text(name), _text(value)) for name, value in headers]
    if wants_json(headers):
        body = json.dumps(
            {
                "message": "Congrats! You created a tunnel!",
                "method": method,
                "host": authority,
                "path": path,
                "query": query,
                "headers": pairs,
                "connector": {"version": __version__, "id": connector_id},
            },
            indent=2,
        ).encode("utf-8")
        content_type = b"application/json"
    else:
        rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>" for name, value in pairs)
        page = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            "<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>Hello from your tunnel</title><style>{_STYLE}</style></head><body><main>"
            "<h1 class=ok>Congrats! You created a tunnel!</h1>"
            "<p>This page is served by the connector's built-in <code>hello_world</code> service: requests to this "
            "hostname reach the connector. Point the ingress rule at your own service when you are ready.</p>"
            "<h2>Request</h2><table>"
            f"<tr><th>Method</th><td>{html.escape(method)}</td></tr>"
            f"<tr><th>Host</th><td>{html.escape(authority)}</td></tr>"
            f"<tr><th>Path</th><td>{html.escape(path)}</td></tr>"
            f"<tr><th>Query</th><td>{html.escape(query)}</td></tr></table>"
            f"<h2>Headers</h2><table>{rows}</table>"
            f"<p><small>zt-connector {html.escape(__version__)} {html.escape(connector_id)}</small></p>"
            "</main></body></html>"
        )
        body = page.encode("utf-8")
        content_type = b"text/html; charset=utf-8"
    response_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    return 200, response_headers, body
