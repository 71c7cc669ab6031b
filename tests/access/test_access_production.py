"""Access in the production topology: the PIN mailed by a Celery worker on Redis through a real SMTP server
(aiosmtpd), read from that server and typed into the form; the mail server down then up (the retry delivers), down
for good (the failure on the code and in the Access log); and an application's tokens revoked through the API on
one server instance, refused within seconds by another instance (PostgreSQL + Redis).

They need Redis (TEST_REDIS_URL) and, for the two instances, the suite on PostgreSQL (DATABASE_URL); without them they
skip, unless REQUIRE_SERVICES=1, where a missing service is a failure."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from django.conf import settings
from django.db import connection

from access.keys import identity_claims, sign
from access.models import AccessRequest, LoginCode
from access.services.applications import application_save
from access.services.policies import policy_save
from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.access.test_access_e2e import Visitor, form_token
from tests.live_server import free_port, run_daphne
from tests.test_production_topology import (
    Worker,
    database_url_of_test_database,
    missing_service,
    redis_url,  # noqa: F401 (the fixture)
)
from tunnels.services import tunnel_config_update, tunnel_create

pytestmark = [pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

EMAIL = "ana@example.com"
APP_HOST = "portainer.example.com"
TARGET = "https%3A%2F%2Fportainer.example.com%2Fdashboard%3Ftab%3D2"  # where the visitor was going, form-encoded


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        with self.arrived:
            self.messages.append(message_from_bytes(envelope.content))
            self.arrived.notify_all()
        return "250 OK"

    def wait(self, count: int, timeout: float) -> Message:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} message(s) arrived within {timeout} s, not {count}")
            return self.messages[count - 1]


@contextlib.contextmanager
def smtp_server(port: int) -> Iterator[Mailbox]:
    from aiosmtpd.controller import Controller

    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


def text_of(message: Message) -> str:
    parts = message.walk() if message.is_multipart() else [message]
    return "".join(part.get_payload(decode=True).decode() for part in parts if part.get_content_type() == "text/plain")


@pytest.fixture
def portainer(org_a):
    actor = Actor.cli()
    zone_mark_verified(zone=zone_create(organisation=org_a, name="example.com", actor=actor), actor=actor)
    policy = policy_save(
        organisation=org_a,
        actor=actor,
        data={"name": "Me", "decision": "allow", "include": [{"email": {"email": EMAIL}}]},
    )
    return application_save(
        organisation=org_a,
        actor=actor,
        data={"name": "Portainer", "domain": APP_HOST, "session_duration": "168h", "policies": [str(policy.pk)]},
    )


@contextlib.contextmanager
def topology(redis_url: str, smtp_port: int) -> Iterator[tuple[object, Worker]]:  # noqa: F811
    """daphne and a Celery worker, both on Redis, mailing through smtp://127.0.0.1:<smtp_port>; one retry of a
    failed PIN email after 0.3 s, a second after 0.6 s (ACCESS_EMAIL_RETRIES, ACCESS_EMAIL_RETRY_MS)."""
    common = {
        "REDIS_URL": redis_url,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}?timeout=5",
        "ACCESS_EMAIL_RETRIES": "2",
        "ACCESS_EMAIL_RETRY_MS": "300",
    }
    env = {k: v for k, v in os.environ.items() if k not in {"EMAIL_URL", "CELERY_BROKER_URL", "DATABASE_URL"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "DATA_DIR": str(settings.DATA_DIR),
            "SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": database_url_of_test_database(),
            "PYTHONUNBUFFERED": "1",
            **common,
        }
    )
    worker = Worker(env)
    try:
        worker.wait_for(" ready.", timeout=60)
        with run_daphne(env={**common, "PUBLIC_URL": "http://127.0.0.1:8000"}) as server:
            yield server, worker
    finally:
        worker.stop()  # before transactional_db empties the tables under it


def sent_code(organisation) -> LoginCode:
    """The one login code, once the worker has marked it sent (just after the SMTP server has the message)."""
    deadline = time.monotonic() + 10
    code = LoginCode.objects.for_org(organisation).get()
    while code.sent_at is None and time.monotonic() < deadline:
        time.sleep(0.1)
        code.refresh_from_db()
    return code


def ask_for_code(server, visitor: Visitor) -> tuple[str, str]:
    """(login URL, the code form page) after submitting the email on the team domain's login page."""
    login = f"http://alpha.access.localhost:{server.port}/cdn-cgi/access/login/{APP_HOST}"
    status, _, page = visitor.request("GET", login)
    assert status == 200 and "Send me a code" in page, status
    status, _, page = visitor.request(
        "POST",
        login,
        {"csrfmiddlewaretoken": form_token(page), "email": "ana%40example.com", "redirect_url": TARGET},
    )
    assert status == 200 and "A code has been emailed" in page, (status, page[:300])
    return login, page


def test_the_pin_mailed_by_a_celery_worker_through_smtp_signs_in(portainer, redis_url):  # noqa: F811
    port = free_port()
    with smtp_server(port) as mailbox, topology(redis_url, port) as (server, worker):
        visitor = Visitor(server.port)
        login, page = ask_for_code(server, visitor)
        message = mailbox.wait(1, timeout=30)
        assert message["To"] == EMAIL and "login code for Portainer" in message["Subject"]
        assert message.is_multipart()  # text and HTML
        pin = re.search(r"\b(\d{6})\b", text_of(message)).group(1)
        status, headers, _ = visitor.request(
            "POST",
            login,
            {
                "csrfmiddlewaretoken": form_token(page),
                "email": "ana%40example.com",
                "code": pin,
                "redirect_url": TARGET,
            },
        )
        assert status == 302, status
        location = headers["Location"]
        assert location.startswith(f"https://{APP_HOST}/cdn-cgi/access/authorized?code="), location
        assert location.endswith("&redirect_url=https%3A%2F%2Fportainer.example.com%2Fdashboard%3Ftab%3D2"), location
        assert "CF_Authorization" in visitor.jar.get("alpha.access.localhost", {})
        code = sent_code(portainer.organisation)
        assert code.sent_at is not None and code.used_at is not None and not code.send_error


def test_a_mail_server_down_then_up_gets_the_pin_on_a_retry(portainer, redis_url):  # noqa: F811
    port = free_port()  # nothing listens there yet: the first try is refused
    with topology(redis_url, port) as (server, worker):
        ask_for_code(server, Visitor(server.port))
        worker.wait_for("Retry in", timeout=30)
        with smtp_server(port) as mailbox:
            message = mailbox.wait(1, timeout=30)
        assert message["To"] == EMAIL and re.search(r"\b\d{6}\b", text_of(message))
        code = sent_code(portainer.organisation)
        assert code.sent_at is not None and not code.send_error


def test_a_mail_server_down_for_good_is_shown_to_the_admin(portainer, redis_url):  # noqa: F811
    port = free_port()  # nothing ever listens there
    with topology(redis_url, port) as (server, worker):
        ask_for_code(server, Visitor(server.port))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            failed = AccessRequest.objects.for_org(portainer.organisation).filter(action="email_failed").first()
            if failed is not None:
                break
            time.sleep(0.2)
        assert failed is not None, f"no email_failed entry in the Access log:\n{worker.log}"
        assert worker.log.count("Retry in") == 2  # ACCESS_EMAIL_RETRIES
        assert (
            failed.user_email == EMAIL
            and failed.app_uid == str(portainer.pk)
            and not failed.allowed
            and "could not be sent" in failed.reason
        )
        code = LoginCode.objects.for_org(portainer.organisation).get()
        assert code.sent_at is None and EMAIL in code.send_error


# -- two instances ----------------------------------------------------------------------------------------------


def get_status(port: int, cookie: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/dashboard", headers={"Host": APP_HOST, "Cookie": f"CF_Authorization={cookie}"})
        return conn.getresponse().status
    finally:
        conn.close()


def api(port: int, token: str, method: str, path: str, body: dict | None = None) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
    finally:
        conn.close()


def seconds_until(port: int, cookie: str, status: int, what: str) -> float:
    """How long until the instance on `port` answers `status` to the cookie (at most 5 s: "within seconds")."""
    started = time.monotonic()
    while (got := get_status(port, cookie)) != status:
        assert time.monotonic() - started < 5, f"{what}: still {got} after 5 s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_change_on_one_instance_is_enforced_by_another_within_seconds(
    portainer,
    org_a,
    token_a,
    redis_url,  # noqa: F811
):
    """The policy narrowed, then the application's tokens revoked, through the API on instance A: instance B, which
    had admitted the cookie (its view loaded, the token verified and cached), refuses it within seconds, through the
    `access` event on the Redis channel layer."""
    if connection.vendor != "postgresql":
        missing_service(f"the suite runs on {connection.vendor}; set DATABASE_URL to run it on PostgreSQL")
    actor = Actor.cli()
    tunnel = tunnel_create(organisation=org_a, name="lab", actor=actor)
    ingress = [{"hostname": APP_HOST, "service": "http://127.0.0.1:9"}, {"service": "http_status:404"}]
    tunnel_config_update(tunnel=tunnel, config={"ingress": ingress}, actor=actor)
    cookie = sign(org_a, identity_claims(org_a, kind="app", audience=[portainer.aud], email=EMAIL, seconds=3600))
    policy = portainer.policy_links.get().policy
    base = f"/client/v4/accounts/{org_a.account_id}/access"
    port_a, port_b = free_port(), free_port()

    def env(port: int) -> dict[str, str]:
        return {"REDIS_URL": redis_url, "EDGE_PEER_URL": f"ws://127.0.0.1:{port}", "PUBLIC_URL": settings.PUBLIC_URL}

    with run_daphne(env=env(port_a), port=port_a) as a, run_daphne(env=env(port_b), port=port_b) as b:
        # Admitted at B: no connector, so 530 after the admission; without the cookie, the login page.
        assert get_status(b.port, cookie) == 530
        assert get_status(b.port, "") == 302
        narrowed = {"name": "Me", "decision": "allow", "include": [{"email": {"email": "bo@example.com"}}]}
        api(a.port, token_a, "PUT", f"{base}/policies/{policy.pk}", narrowed)
        denied_after = seconds_until(b.port, cookie, 403, "the policy no longer admits the identity")
        api(a.port, token_a, "POST", f"{base}/apps/{portainer.pk}/revoke_tokens")
        revoked_after = seconds_until(b.port, cookie, 302, "the application's tokens are revoked")
        print(
            f"instance B: 403 {denied_after * 1000:.0f} ms after the policy changed on A, "
            f"302 {revoked_after * 1000:.0f} ms after the tokens were revoked on A"
        )
        assert get_status(a.port, cookie) == 302
