"""The tutorial's Access walk through real processes: daphne (embedded mode), the real connector, and an origin that
validates the assertion exactly as an origin written for Cloudflare Access does (PyJWT's PyJWKClient against the
team domain's JWKS). The visitor is a plain HTTP client following the redirects by hand, as a browser would."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import time
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

import jwt
import pytest
import websockets.sync.client

from access.services.applications import application_save
from access.services.policies import policy_save
from controlplane.actors import Actor
from controlplane.models import OutboxMessage
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.live_server import run_daphne, serve_in_thread, start_connector
from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Visitor:
    """A browser's cookie jar and redirects, over http.client to the one server on loopback."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.jar: dict[str, dict[str, str]] = {}

    def request(self, method: str, url: str, body: dict[str, str] | None = None, headers=None):
        parts = urlsplit(url)
        host = parts.hostname or ""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        cookies = "; ".join(f"{k}={v}" for k, v in self.jar.get(host, {}).items())
        sent = {"Host": parts.netloc, **({"Cookie": cookies} if cookies else {}), **(headers or {})}
        data = None
        if body is not None:
            data = "&".join(f"{k}={v}" for k, v in body.items())
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=data, headers=sent)
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
        for header in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0":
                    self.jar.get(host, {}).pop(name, None)
                else:
                    self.jar.setdefault(host, {})[name] = morsel.value
        connection.close()
        return response.status, response.headers, text


def origin_handler(certs_url: str, team_host: str, aud: str, seen: list):
    jwks = jwt.PyJWKClient(certs_url, headers={"Host": team_host})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            assertion = self.headers.get("Cf-Access-Jwt-Assertion")
            seen.append({name.lower(): value for name, value in self.headers.items()})
            try:
                key = jwks.get_signing_key_from_jwt(assertion)
                claims = jwt.decode(assertion, key.key, algorithms=["RS256"], audience=aud)
                status, body = 200, json.dumps({"tool": "portainer", "email": claims["email"], "path": self.path})
            except Exception as exc:  # an origin refuses what it cannot verify
                status, body = 403, json.dumps({"refused": str(exc)})
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def latest_pin(org) -> str:
    for _ in range(100):
        messages = [m for m in OutboxMessage.objects.for_org(org).order_by("-created_at") if "login code" in m.subject]
        if messages:
            return re.search(r"\b(\d{6})\b", messages[0].body).group(1)
        time.sleep(0.1)
    raise AssertionError("no PIN email in the outbox")


def form_token(page: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_portainer_behind_access_end_to_end(org_a, tmp_path, settings):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    actor = Actor.cli()
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=actor), actor=actor)
    policy = policy_save(
        organisation=org_a,
        actor=actor,
        data={"name": "Me", "decision": "allow", "include": [{"email": {"email": "ana@example.com"}}]},
    )
    app = application_save(
        organisation=org_a,
        actor=actor,
        data={
            "name": "Portainer",
            "domain": "portainer.example.com",
            "session_duration": "168h",
            "policies": [str(policy.pk)],
        },
    )
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=actor)
    seen: list = []
    with run_daphne(env={"EMAIL_URL": "", "PUBLIC_URL": "http://127.0.0.1:8000"}) as server:
        team_host = f"alpha.access.localhost:{server.port}"
        handler = origin_handler(f"{server.url}/cdn-cgi/access/certs", team_host, app.aud, seen)
        with serve_in_thread(handler) as origin_port:
            # Both hostnames also ask the connector to check the token itself (originRequest.access): portainer is an
            # Access application, so the edge adds the assertion; "bare" is not, as if the edge had been bypassed.
            protect = {"access": {"required": True, "teamName": "alpha", "audTag": [app.aud]}}
            service = f"http://127.0.0.1:{origin_port}"
            tunnel_config_update(
                tunnel=tunnel,
                config={
                    "ingress": [
                        {"hostname": "portainer.example.com", "service": service, "originRequest": protect},
                        {"hostname": "bare.example.com", "service": service, "originRequest": protect},
                        {"service": "http_status:404"},
                    ]
                },
                actor=actor,
            )
            connector = start_connector(tunnel_token(tunnel), server.url, tmp_path / "connector.log")
            try:
                run_walk(server, org_a, team_host, seen)
            finally:
                connector.terminate()
                connector.wait(10)


def run_walk(server, org, team_host, seen):
    visitor = Visitor(server.port)
    app_url = f"http://portainer.example.com:{server.port}"
    # The connector is up when the edge stops answering 530 for the hostname without an Access application (the
    # protected one is answered by the edge's admission before any connector is needed).
    for _ in range(200):
        if visitor.request("GET", f"http://bare.example.com:{server.port}/")[0] != 530:
            break
        time.sleep(0.1)
    status, headers, _ = visitor.request("GET", f"{app_url}/dashboard?tab=2")
    # 1. Not signed in: the login page of the team domain, carrying where we were going.
    assert status == 302, status
    login = headers["Location"]
    assert login.startswith("http://alpha.access.localhost:8000/cdn-cgi/access/login/portainer.example.com?kid=")
    login = login.replace("alpha.access.localhost:8000", team_host)
    # An XHR gets 401, a websocket is refused, and a forged assertion header never reaches the origin.
    assert visitor.request("GET", f"{app_url}/api", headers={"X-Requested-With": "XMLHttpRequest"})[0] == 401
    assert visitor.request("GET", f"{app_url}/", headers={"Cf-Access-Jwt-Assertion": "forged"})[0] == 302
    assert not seen
    with pytest.raises(websockets.exceptions.InvalidStatus):
        websockets.sync.client.connect(
            f"ws://127.0.0.1:{server.port}/ws", additional_headers={"Host": "portainer.example.com"}, open_timeout=10
        )

    # 2. The email, then the PIN from the mail.
    status, _, page = visitor.request("GET", login)
    assert status == 200 and "Send me a code" in page
    status, _, page = visitor.request(
        "POST",
        login,
        {
            "csrfmiddlewaretoken": form_token(page),
            "email": "ana%40example.com",
            "redirect_url": f"http%3A%2F%2Fportainer.example.com%3A{server.port}%2Fdashboard%3Ftab%3D2",
        },
    )
    assert status == 200 and "A code has been emailed" in page
    pin = latest_pin(org)
    status, headers, _ = visitor.request(
        "POST",
        login,
        {
            "csrfmiddlewaretoken": form_token(page),
            "email": "ana%40example.com",
            "code": pin,
            "redirect_url": f"http%3A%2F%2Fportainer.example.com%3A{server.port}%2Fdashboard%3Ftab%3D2",
        },
    )
    assert status == 302, status
    authorized = headers["Location"]
    assert authorized.startswith(f"{app_url}/cdn-cgi/access/authorized?code=")
    # 3. The application's host sets its own cookie and sends us where we first asked to go.
    status, headers, _ = visitor.request("GET", authorized)
    assert status == 302 and headers["Location"] == "/dashboard?tab=2"
    assert "HttpOnly" in headers["Set-Cookie"] and "Max-Age=604800" in headers["Set-Cookie"]
    # Identity headers sent by the visitor alongside a valid session are replaced by the edge's own.
    spoofed = {"Cf-Access-Authenticated-User-Email": "ceo@example.com", "Cf-Access-Jwt-Assertion": "forged"}
    status, _, body = visitor.request("GET", f"{app_url}/dashboard?tab=2", headers=spoofed)
    assert status == 200, body
    assert json.loads(body) == {"tool": "portainer", "email": "ana@example.com", "path": "/dashboard?tab=2"}
    assert seen[-1]["cf-access-authenticated-user-email"] == "ana@example.com"
    assert seen[-1]["cf-access-jwt-assertion"] != "forged"
    # The connector verified that assertion itself (it fetched the team's keys through the control plane), and it
    # refuses a protected hostname reached without one, even with a forged header.
    bare = f"http://bare.example.com:{server.port}"
    status, _, body = visitor.request("GET", f"{bare}/", headers={"Cf-Access-Jwt-Assertion": "forged"})
    assert status == 403 and "requires a valid Cloudflare Access token" in body, (status, body)
    assert len(seen) == 1
    # The handoff code cannot be replayed.
    assert Visitor(server.port).request("GET", authorized)[0] == 400

    # 4. Logout on the application's host ends the session; the old cookie is refused from then on.
    old_cookie = dict(visitor.jar["portainer.example.com"])
    assert visitor.request("GET", f"{app_url}/cdn-cgi/access/logout")[0] == 200
    replay = Visitor(server.port)
    replay.jar["portainer.example.com"] = old_cookie
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and replay.request("GET", f"{app_url}/")[0] != 302:
        time.sleep(0.1)
    assert replay.request("GET", f"{app_url}/")[0] == 302
