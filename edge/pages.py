"""Error answers of the edge: a branded page for browsers, JSON for API clients. Each names the request id,
which is also logged on both sides, so a person can quote it.

What a visitor is told is what Cloudflare tells one: the status, a plain sentence and the request id. The reason
of a 502/504/530 (the origin's address, its certificate problem, our setting names) is for the people who run the
tunnel: the edge records it (edge/errors.py) for the tunnel's page, and the connector logs it with the same id.
Only a 400 (the visitor's own request) and a 404 (the host name the visitor typed) say more."""

from __future__ import annotations

import html
import json

TITLES = {
    404: "This hostname is not routed here",
    502: "Bad gateway: the origin could not be reached",
    503: "The tunnel has no configuration yet",
    504: "Gateway timeout: the origin did not answer in time",
    530: "The tunnel has no active connector",
}

# Statuses whose detail describes the visitor's own request, not the origin or the tunnel: shown as it is.
PUBLIC_DETAIL = frozenset({400, 404})

HINTS = {
    404: "No public hostname of any tunnel matches this host name. Check the hostname in the tunnel's Public "
    "hostnames, and that its DNS record points to the tunnel.",
    502: "The web server behind this site could not be reached, or did not give a valid answer. Please try again "
    "in a few minutes.",
    503: "The site is being set up. Please try again in a few minutes.",
    504: "The web server behind this site did not answer in time. Please try again in a few minutes.",
    530: "Cloudflare calls this error 1033: the site's tunnel is not connected right now. Please try again in a few "
    "minutes.",
}
OWNER_HINT = (
    "If you run this site: the tunnel's page in the dashboard lists this request ID under Recent origin errors, "
    "with the cause."
)


def wants_json(headers: dict[bytes, bytes]) -> bool:
    accept = headers.get(b"accept", b"").decode("latin-1").lower()
    return "application/json" in accept and "text/html" not in accept


def error_body(status: int, request_id: str, detail: str, *, as_json: bool, host: str = "") -> tuple[bytes, bytes]:
    title = TITLES.get(status, "Error")
    hint = HINTS.get(status, "")
    owner_hint = OWNER_HINT if status >= 500 else ""
    if status not in PUBLIC_DETAIL:
        detail = ""
    if as_json:
        body = {
            "success": False,
            "errors": [
                {"code": 1033 if status == 530 else status, "message": f"{title}: {detail}" if detail else title}
            ],
            "request_id": request_id,
        }
        return json.dumps(body).encode(), b"application/json"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} · {html.escape(title)}</title>
<style>
body{{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2433}}
main{{max-width:640px;margin:12vh auto;padding:32px;background:#fff;border:1px solid #e3e6eb;border-radius:12px}}
h1{{font-size:22px;margin:0 0 8px}} .code{{color:#b42318;font-weight:600;letter-spacing:.02em}}
p{{margin:12px 0}} .detail{{background:#fef3f2;border:1px solid #fecdca;border-radius:8px;padding:10px 12px}}
footer{{margin-top:24px;font-size:13px;color:#5b6478}} code{{font-family:ui-monospace,monospace}}
.owner{{font-size:14px;color:#5b6478}}
</style></head><body><main>
<div class="code">Error {status}</div>
<h1>{html.escape(title)}</h1>
{f'<p class="detail">{html.escape(detail)}</p>' if detail else ""}
{f"<p>{html.escape(hint)}</p>" if hint else ""}
{f'<p class="owner">{html.escape(owner_hint)}</p>' if owner_hint else ""}
<footer>Host <code>{html.escape(host)}</code> · Request ID <code>{html.escape(request_id)}</code></footer>
</main></body></html>
"""
    return page.encode(), b"text/html; charset=utf-8"
