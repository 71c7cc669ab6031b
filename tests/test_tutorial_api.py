"""The seed tutorial (docs/tutorial.md), steps 2–11, through the API with the official `cloudflare` SDK, against real
processes: daphne, the real connector, small origins on loopback. Twice: in embedded mode (SQLite, the PIN in the
outbox), and in the production topology (PostgreSQL, the Redis channel layer and broker, a Celery worker mailing the
PIN to an SMTP server this test runs). The walk itself is tests/tutorial_walk.py; run with `-s` to see each step's
time.

The production walk needs PostgreSQL (DATABASE_URL, with a TEST_DB_NAME of its own) and Redis (TEST_REDIS_URL, a
database number of its own, flushed); without them it skips, unless REQUIRE_SERVICES=1 (CI), where it fails."""

from __future__ import annotations

import email
import email.policy
import os
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from controlplane.models import OutboxMessage
from tests.conftest import make_token
from tests.factories import OrganisationFactory
from tests.live_server import free_port, run_daphne
from tests.test_production_topology import Worker, database_url_of_test_database, missing_service, redis_url  # noqa: F401
from tests.tutorial_walk import Walk, pin_from_text, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def outbox_pin(organisation):
    def read(address: str) -> str:
        def newest() -> str:
            for message in OutboxMessage.objects.for_org(organisation).order_by("-created_at"):
                if message.to == [address] and "login code" in message.subject:
                    return message.body
            return ""

        return pin_from_text(str(wait_until(f"a PIN mail to {address} in the outbox", newest, timeout=10)))

    return read


def server_env(port: int, **extra: str) -> dict[str, str]:
    return {"PUBLIC_URL": f"http://127.0.0.1:{port}", "EMAIL_URL": "", "REDIS_URL": "", **extra}


def test_the_tutorial_through_the_api_in_embedded_mode(tmp_path: Path) -> None:
    organisation = OrganisationFactory(team_name="walk", display_name="Walk")
    port = free_port()
    with run_daphne(env=server_env(port), port=port, log_dir=str(tmp_path)) as server:
        walk = Walk(
            server=server, team="walk", token=make_token(organisation), read_pin=outbox_pin(organisation), tmp=tmp_path
        )
        try:
            walk.run()
        finally:
            print(walk.timings.summary("the tutorial through the API, embedded mode"))


class SmtpSink:
    """An aiosmtpd server on loopback keeping every message it is handed."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                sink.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def pin_for(self, address: str) -> str:
        def newest() -> str:
            for message in reversed(self.messages):
                if message["To"] == address and "login code" in str(message["Subject"]):
                    return message.get_body(preferencelist=("plain",)).get_content()
            return ""

        return pin_from_text(str(wait_until(f"a PIN mail to {address} over SMTP", newest, timeout=30)))


def test_the_tutorial_through_the_api_in_the_production_topology(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    if connection.vendor != "postgresql":
        missing_service(f"the suite runs on {connection.vendor}; set DATABASE_URL (and TEST_DB_NAME) for PostgreSQL")
    organisation = OrganisationFactory(team_name="walk", display_name="Walk")
    smtp = SmtpSink()
    smtp.controller.start()
    port = free_port()
    env = server_env(port, REDIS_URL=redis_url, EMAIL_URL=f"smtp://127.0.0.1:{smtp.port}?timeout=10")
    worker_env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL"}}
    worker_env.update(
        {
            **env,
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "DATA_DIR": str(settings.DATA_DIR),
            "SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": database_url_of_test_database(),
            "PYTHONUNBUFFERED": "1",
        }
    )
    worker = Worker(worker_env)
    started = time.monotonic()
    try:
        worker.wait_for(" ready.", timeout=60)
        with run_daphne(env=env, port=port, log_dir=str(tmp_path)) as server:
            walk = Walk(server=server, team="walk", token=make_token(organisation), read_pin=smtp.pin_for, tmp=tmp_path)
            try:
                walk.run()
            finally:
                print(walk.timings.summary("the tutorial through the API, production topology"))
        assert "access.tasks.send_login_code" in worker.log and "succeeded" in worker.log, worker.log
        assert len(smtp.messages) >= 2
    finally:
        worker.stop()
        smtp.controller.stop()
        print(f"--- worker log ({time.monotonic() - started:.0f} s) ---\n{worker.log[-6000:]}")
