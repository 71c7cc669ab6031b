"""The seed tutorial (docs/tutorial.md) walked through the API, shared by the embedded and the production-topology
tests in tests/test_tutorial_api.py: the official `cloudflare` SDK against a live server wherever the SDK has the
call, a plain HTTP visitor through the edge (Host header on loopback), the real connector, and small origins on
loopback (the "Ghost blog", the "Portainer" tool over HTTP and then HTTPS)."""

from __future__ import annotations

import contextlib
import http.server
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import cloudflare
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import call_command

from certificates.logic import pki
from tests.access.test_access_e2e import Visitor, form_token
from tests.certificates.test_origin_tls_e2e import self_signed
from tests.live_server import LiveServer, free_port, serve_in_thread, start_connector


@dataclass
class Timings:
    """Each step's wall time, printed as a table at the end (pytest -s, or the report of a failure)."""

    steps: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps.append((name, time.monotonic() - started))

    def summary(self, title: str) -> str:
        width = max(len(name) for name, _ in self.steps)
        lines = [f"{name:<{width}}  {seconds:6.2f} s" for name, seconds in self.steps]
        total = sum(seconds for _, seconds in self.steps)
        return "\n".join([f"--- {title} ---", *lines, f"{'total':<{width}}  {total:6.2f} s"])


def page_handler(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    """A tiny web app: an HTML page naming itself and the path asked for, and who Access said the visitor is."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            who = self.headers.get("Cf-Access-Authenticated-User-Email") or "anonymous"
            body = f"<html><title>{name}</title><h1>{name}</h1><p>{self.path}</p><p>user: {who}</p></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def https_origin(port: int, cert_file: Path, key_file: Path, name: str) -> Iterator[int]:
    """The tool's HTTPS port (9443 in the tutorial) on a fixed loopback port, so that it can be restarted with
    another certificate on the same address, as a person does after installing the origin certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    class TLSServer(http.server.ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def get_request(self):  # type: ignore[no-untyped-def]
            sock, address = super().get_request()
            sock.settimeout(10)
            return context.wrap_socket(sock, server_side=True), address

        def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
            pass  # a refused handshake (the connector rejecting our self-signed certificate) is expected

    server = TLSServer(("127.0.0.1", port), page_handler(name))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def wait_until(what: str, check: Callable[[], object], timeout: float = 20.0, interval: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@dataclass
class Walk:
    """One walk of the tutorial: the server, the organisation's API token, where the PIN mail is read."""

    server: LiveServer
    team: str
    token: str
    read_pin: Callable[[str], str]  # email -> the PIN of the newest login code mailed to it
    tmp: Path
    zone: str = "example.com"
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        self.cf = cloudflare.Cloudflare(api_token=self.token, base_url=f"{self.server.url}/client/v4", max_retries=0)
        self.connector_log = self.tmp / "connector.log"
        self.connector = None
        self.cf.zero_trust  # noqa: B018 (the SDK imports its models lazily: ~7 s here, not in step 3's time)

    # -- helpers ---------------------------------------------------------------------------------------------

    def url(self, host: str, path: str = "/") -> str:
        return f"http://{host}:{self.server.port}{path}"

    def get(self, visitor: Visitor, host: str, path: str = "/") -> tuple[int, str]:
        status, _, body = visitor.request("GET", self.url(host, path))
        return status, body

    def start_connector(self) -> None:
        token = self.cf.zero_trust.tunnels.cloudflared.token.get(self.tunnel_id, account_id=self.account_id)
        self.connector = start_connector(str(token), self.server.url, self.connector_log, ha_connections=2)

    def stop_connector(self) -> None:
        if self.connector is not None and self.connector.poll() is None:
            self.connector.terminate()
            self.connector.wait(15)

    def tunnel_status(self) -> str:
        return self.cf.zero_trust.tunnels.cloudflared.get(self.tunnel_id, account_id=self.account_id).status or ""

    def connections(self) -> list:
        return list(self.cf.zero_trust.tunnels.cloudflared.connections.get(self.tunnel_id, account_id=self.account_id))

    def put_ingress(self, portainer: dict) -> None:
        """The tunnel's public hostnames: ghost and portainer, then the catch-all."""
        ingress = [{"hostname": f"ghost.{self.zone}", "service": f"http://localhost:{self.ghost_port}"}]
        if portainer:
            ingress.append({"hostname": f"portainer.{self.zone}", **portainer})
        ingress.append({"service": "http_status:404"})
        self.cf.zero_trust.tunnels.cloudflared.configurations.update(
            self.tunnel_id, account_id=self.account_id, config={"ingress": ingress}
        )
        self.config_version = getattr(self, "config_version", 0) + 1

    def sign_in(self, visitor: Visitor, email: str, path: str = "/") -> tuple[int, str]:
        """Open portainer, follow the login page (email, "Send me a code", the PIN), and return the last answer."""
        status, headers, _ = visitor.request("GET", self.url(f"portainer.{self.zone}", path))
        assert status == 302, status
        login = headers["Location"]
        assert login.startswith(f"http://{self.team}.access.localhost:{self.server.port}/cdn-cgi/access/login/")
        status, _, page = visitor.request("GET", login)
        assert status == 200 and "Send me a code" in page, page
        target = quote(self.url(f"portainer.{self.zone}", path), safe="")
        form = {"csrfmiddlewaretoken": form_token(page), "email": quote(email), "redirect_url": target}
        status, _, page = visitor.request("POST", login, form)
        assert status == 200 and "A code has been emailed" in page, (status, page)
        pin = self.read_pin(email)
        status, headers, page = visitor.request(
            "POST", login, {**form, "csrfmiddlewaretoken": form_token(page), "code": pin}
        )
        if status != 302:
            return status, page
        # The application's host sets its own cookie and sends us where we first asked to go.
        status, headers, _ = visitor.request("GET", headers["Location"])
        assert status == 302, status
        return self.get(visitor, f"portainer.{self.zone}", headers["Location"])

    # -- the walk --------------------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            with (
                serve_in_thread(page_handler("Ghost blog")) as self.ghost_port,
                serve_in_thread(page_handler("Portainer")) as self.portainer_port,
            ):
                self._walk()
        finally:
            self.stop_connector()

    def _walk(self) -> None:  # noqa: PLR0915 (the tutorial, step by step)
        t = self.timings
        cf = self.cf
        anyone = Visitor(self.server.port)

        with t.step("1. API token works, organisation found"):
            assert cf.user.tokens.verify().status == "active"
            self.account_id = next(iter(cf.accounts.list())).id

        with t.step("2. add the zone and verify it"):
            zone = cf.zones.create(account={"id": self.account_id}, name=self.zone)
            assert zone.status == "pending"
            call_command("verify_zone", self.zone)  # the operator vouches for it (README, "Commands")
            assert cf.zones.get(zone_id=zone.id).status == "active"

        with t.step("3. create the tunnel, get its token"):
            tunnel = cf.zero_trust.tunnels.cloudflared.create(
                account_id=self.account_id, name="test-tunnel", config_src="cloudflare"
            )
            self.tunnel_id = tunnel.id
            assert self.tunnel_status() == "inactive"

        with t.step("4. run the connector, wait for Connected"):
            self.start_connector()
            wait_until("the tunnel healthy", lambda: self.tunnel_status() == "healthy")
            clients = self.connections()
            assert len(clients) == 1, clients
            client = clients[0]
            assert client.id and client.version and client.arch
            assert len(client.conns) == 2 and all(conn.origin_ip for conn in client.conns), client.conns

        with t.step("5. public hostname ghost → the blog, through the edge"):
            self.put_ingress({})
            status, body = wait_until(
                "ghost answering", lambda: (r := self.get(anyone, f"ghost.{self.zone}", "/welcome"))[0] == 200 and r
            )
            assert "<h1>Ghost blog</h1>" in body and "/welcome" in body

        portainer_http = {"service": f"http://localhost:{self.portainer_port}"}
        with t.step("6. public hostname portainer → the tool (public)"):
            self.put_ingress(portainer_http)
            wait_until("portainer public", lambda: self.get(anyone, f"portainer.{self.zone}")[0] == 200)
            assert "user: anonymous" in self.get(anyone, f"portainer.{self.zone}")[1]

        with t.step("7. Access application (1 week, one-time PIN, one email)"):
            otp = [idp for idp in cf.zero_trust.identity_providers.list(account_id=self.account_id)]
            otp = [idp for idp in otp if idp.type == "onetimepin"]
            assert len(otp) == 1, otp
            policy = cf.zero_trust.access.policies.create(
                account_id=self.account_id,
                name="Me",
                decision="allow",
                include=[{"email": {"email": "ana@corp.test"}}],
            )
            app = cf.zero_trust.access.applications.create(
                account_id=self.account_id,
                name="Portainer",
                domain=f"portainer.{self.zone}",
                type="self_hosted",
                session_duration="168h",
                allowed_idps=[otp[0].id],
                policies=[policy.id],
            )
            assert app.session_duration == "168h"

        ana = Visitor(self.server.port)
        with t.step("8. sign in with the PIN; another email is refused"):
            wait_until("portainer protected", lambda: self.get(anyone, f"portainer.{self.zone}")[0] == 302)
            status, body = self.sign_in(ana, "ana@corp.test", "/#!/home")
            assert status == 200 and "<h1>Portainer</h1>" in body and "user: ana@corp.test" in body, (status, body)
            # bob is admitted by no policy: no code is sent (the page does not say so), and a guessed one fails.
            bob = Visitor(self.server.port)
            status, headers, _ = bob.request("GET", self.url(f"portainer.{self.zone}"))
            assert status == 302
            status, _, page = bob.request("GET", headers["Location"])
            form = {"csrfmiddlewaretoken": form_token(page), "email": "bob%40other.test"}
            status, _, page = bob.request("POST", headers["Location"], form)
            assert status == 200 and "A code has been emailed" in page
            status, _, page = bob.request(
                "POST", headers["Location"], {**form, "csrfmiddlewaretoken": form_token(page), "code": "000000"}
            )
            assert status == 400, status
            assert self.get(bob, f"portainer.{self.zone}")[0] == 302

        with t.step("8b. policy: emails ending in @corp.test"):
            cf.zero_trust.access.policies.update(
                policy.id,
                account_id=self.account_id,
                name="Corp",
                decision="allow",
                include=[{"email_domain": {"domain": "corp.test"}}],
            )
            carl = Visitor(self.server.port)
            status, body = wait_until(
                "carl admitted",
                lambda: (r := self.sign_in(carl, "carl@corp.test"))[0] == 200 and r,
                timeout=10,
                interval=1,
            )
            assert "user: carl@corp.test" in body

        https_port = free_port()
        self_cert, self_key = self_signed(self.tmp, f"portainer.{self.zone}")
        with https_origin(https_port, self_cert, self_key, "Portainer (HTTPS)"):
            with t.step("9. HTTPS origin, self-signed: 502 explained"):
                self.put_ingress({"service": f"https://localhost:{https_port}"})
                status, body = wait_until(
                    "the 502", lambda: (r := self.get(ana, f"portainer.{self.zone}"))[0] == 502 and r
                )
                assert "Bad gateway" in body and "Request ID" in body, body
                assert "certificate" not in body.lower(), "the visitor is told nothing about the origin"
                # The admin's side: the tunnel's recent origin errors (its page, and the API: ours, not in the SDK's
                # types, so a raw call through it) and the connector's log say why.
                path = f"/accounts/{self.account_id}/cfd_tunnel/{self.tunnel_id}/origin_errors"
                errors = wait_until("an origin error", lambda: self.cf.get(path, cast_to=object)["result"])
                assert errors[0]["status"] == 502 and "No TLS verify" in errors[0]["reason"], errors[0]
                log = self.connector_log.read_text(errors="replace")
                assert "certificate signed by unknown authority" in log

            with t.step("9b. noTLSVerify on: 200; off again: 502"):
                self.put_ingress({"service": f"https://localhost:{https_port}", "originRequest": {"noTLSVerify": True}})
                wait_until("noTLSVerify 200", lambda: self.get(ana, f"portainer.{self.zone}")[0] == 200)
                assert "Portainer (HTTPS)" in self.get(ana, f"portainer.{self.zone}")[1]
                self.put_ingress({"service": f"https://localhost:{https_port}"})
                wait_until("502 again", lambda: self.get(ana, f"portainer.{self.zone}")[0] == 502)

        with t.step("10. Origin CA certificate (RSA 2048, 15 years)"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            hostnames = [self.zone, f"portainer.{self.zone}"]
            created = cf.origin_ca_certificates.create(
                csr=pki.build_csr(key, hostnames),
                hostnames=hostnames,
                request_type="origin-rsa",
                requested_validity=5475,
            )
            certificate = wait_until(
                "the certificate issued",
                lambda: cf.origin_ca_certificates.get(created.id).certificate,
                timeout=60,
                interval=0.5,
            )
            assert str(certificate).startswith("-----BEGIN CERTIFICATE-----")
            (self.tmp / "origin.pem").write_text(str(certificate))
            (self.tmp / "origin.key").write_text(pki.key_pem(key))

        with https_origin(https_port, self.tmp / "origin.pem", self.tmp / "origin.key", "Portainer (Origin CA)"):
            with t.step("10b. origin restarted with it + originServerName: 200"):
                self.put_ingress(
                    {
                        "service": f"https://localhost:{https_port}",
                        "originRequest": {"originServerName": f"portainer.{self.zone}"},
                    }
                )
                status, body = wait_until(
                    "verified TLS", lambda: (r := self.get(ana, f"portainer.{self.zone}"))[0] == 200 and r
                )
                assert "Portainer (Origin CA)" in body

            with t.step("11. connector stopped: down, 530"):
                self.stop_connector()
                wait_until("the tunnel down", lambda: self.tunnel_status() == "down", timeout=15)
                assert self.connections() == []
                status, body = self.get(ana, f"portainer.{self.zone}")
                assert status == 530 and "1033" in body, (status, body)

            with t.step("11b. connector started again: healthy, 200"):
                self.start_connector()
                wait_until("the tunnel healthy again", lambda: self.tunnel_status() == "healthy")
                status, body = wait_until(
                    "portainer back", lambda: (r := self.get(ana, f"portainer.{self.zone}"))[0] == 200 and r
                )
                assert "Portainer (Origin CA)" in body
                assert self.get(anyone, f"ghost.{self.zone}")[0] == 200


def pin_from_text(text: str) -> str:
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)
