"""Security headers: a Content-Security-Policy without inline scripts on every UI page, its own policy on the API
docs, and no template that would need an inline script or handler."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from controlplane.security_headers import API_DOCS_POLICY, UI_POLICY

pytestmark = pytest.mark.django_db

TEMPLATE_DIRS = ["controlplane/templates", "tunnels/templates", "access/templates", "certificates/templates"]


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_the_ui_policy_allows_no_inline_script_and_no_framing():
    policy = directives(UI_POLICY)
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["form-action"] == ["'self'"]
    assert "'unsafe-inline'" not in UI_POLICY and "'unsafe-eval'" not in UI_POLICY


@pytest.mark.parametrize("path", ["/login/", "/password-reset/", "/no-such-page/", "/client/v4/user/tokens/verify"])
def test_every_response_carries_the_policy(client, path):
    response = client.get(path)
    assert response["Content-Security-Policy"] == UI_POLICY


def test_the_api_docs_have_their_own_policy_and_no_inline_script(client):
    response = client.get("/docs/api/")
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == API_DOCS_POLICY
    assert directives(API_DOCS_POLICY)["script-src"] == ["'self'"]
    html = response.content.decode()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    init_script = re.search(r'<script src="([^"]*script=[^"]*)"', html)
    assert init_script, html
    script = client.get(init_script[1].replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_no_template_has_an_inline_script_a_handler_or_a_style_attribute():
    offenders = []
    for directory in TEMPLATE_DIRS:
        for path in (settings.BASE_DIR / directory).rglob("*.html"):
            if "email" in path.parts:
                continue  # mail clients read only inline styles, and an email is never served under our CSP
            text = path.read_text()
            for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\son[a-z]+\s*=", r"\sstyle\s*=", r"javascript:"):
                offenders += [f"{path.relative_to(settings.BASE_DIR)}: {m}" for m in re.findall(pattern, text, re.I)]
    assert offenders == []
