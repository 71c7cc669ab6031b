"""The production topology: a real Celery worker on a Redis broker delivers mail written by this process, the
Redis channel layer carries messages between instances, and the suite's database path works on PostgreSQL.

These tests need Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379/14: a dedicated database number, flushed)
and PostgreSQL for the last one (DATABASE_URL). Without them they skip, unless REQUIRE_SERVICES=1 (as in CI),
where a missing service is a failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.models import OutboxMessage, Zone
from controlplane.settings.channels import redis_channel_layer
from tests.factories import OrganisationFactory

pytestmark = [pytest.mark.slow, pytest.mark.services]

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/14"


def missing_service(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1: the production topology must be tested)")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A flushed Redis database for this test alone."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        missing_service(f"Redis is not reachable at {TEST_REDIS_URL}: {exc}")
    client.flushdb()
    try:
        yield TEST_REDIS_URL
    finally:
        client.flushdb()
        client.close()


def database_url_of_test_database() -> str:
    """A DATABASE_URL for the database pytest-django created, so that other processes use the same one."""
    config = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(config['NAME']).resolve()}"
    if connection.vendor == "postgresql":
        credentials = quote(config["USER"] or "", safe="")
        if config.get("PASSWORD"):
            credentials += ":" + quote(config["PASSWORD"], safe="")
        host = config.get("HOST") or "127.0.0.1"
        port = config.get("PORT") or 5432
        return f"postgres://{credentials}@{host}:{port}/{quote(config['NAME'], safe='')}"
    raise AssertionError(f"unexpected database vendor {connection.vendor}")


class Worker:
    """`celery -A controlplane worker -P solo` in a subprocess, its log collected by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        celery = Path(sys.executable).parent / "celery"
        self.process = subprocess.Popen(
            [str(celery), "-A", "controlplane", "worker", "-P", "solo", "-l", "info", "--without-gossip"]
            + ["--without-mingle", "--without-heartbeat", "-n", f"topology-{uuid.uuid4().hex[:8]}@%h"],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log:
                return
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited with {self.process.returncode}:\n{self.log}")
            time.sleep(0.1)
        raise AssertionError(f"the worker did not log {text!r} within {timeout}s:\n{self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)


@pytest.fixture
def worker(transactional_db, redis_url) -> Iterator[Worker]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"EMAIL_URL", "CELERY_BROKER_URL", "DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "controlplane.settings",
            "DATA_DIR": str(settings.DATA_DIR),
            "SECRET_KEY": settings.SECRET_KEY,
            "DATABASE_URL": database_url_of_test_database(),
            "REDIS_URL": redis_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    process = Worker(env)
    try:
        process.wait_for(" ready.", timeout=60)
        yield process
    finally:
        process.stop()  # before transactional_db empties the tables under it


@contextlib.contextmanager
def celery_on_broker(url: str) -> Iterator[None]:
    """Make this process's Celery app publish to `url` instead of running tasks eagerly (the settings chose
    eager mode because REDIS_URL was unset when they were read). The app's connection and producer pools are
    swapped, not closed: eager calls go through the memory broker's producer pool too, and kombu keeps pools in
    a process-wide registry, so a closed one would break every later test."""
    from controlplane.celery import app

    saved_conf = {"broker_url": app.conf.broker_url, "task_always_eager": app.conf.task_always_eager}
    saved_pools = (app._pool, app.amqp._producer_pool)
    app.conf.update(broker_url=url, task_always_eager=False)
    app._pool, app.amqp._producer_pool = None, None
    try:
        yield
    finally:
        app._pool, app.amqp._producer_pool = saved_pools
        app.conf.update(saved_conf)


def test_a_celery_worker_delivers_mail_queued_by_a_service(worker, settings):
    from controlplane.services.members import invitation_create

    organisation = OrganisationFactory(team_name="topology")
    with celery_on_broker(TEST_REDIS_URL):
        invitation, raw = invitation_create(
            organisation=organisation, email="invitee@corp.test", role=Role.ADMIN, actor=Actor.cli()
        )
    # The worker runs the task with its own settings (outbox mode: no EMAIL_URL) against the same database.
    deadline = time.monotonic() + 30
    kept = None
    while time.monotonic() < deadline:
        kept = OutboxMessage.objects.for_org(organisation).first()
        if kept is not None:
            break
        time.sleep(0.2)
    assert kept is not None, f"the worker did not deliver the invitation within 30s:\n{worker.log}"
    assert kept.to == ["invitee@corp.test"]
    assert f"{settings.PUBLIC_URL}/invitations/{raw}/" in kept.body
    worker.wait_for("controlplane.tasks.send_email", timeout=10)
    worker.wait_for("succeeded", timeout=10)


def test_the_redis_channel_layer_carries_messages_between_instances(redis_url):
    from channels_redis.pubsub import RedisPubSubChannelLayer

    config = redis_channel_layer(redis_url)
    assert config["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"

    async def round_trip() -> None:
        sender = RedisPubSubChannelLayer(**config["CONFIG"])
        receiver = RedisPubSubChannelLayer(**config["CONFIG"])
        try:
            channel = await receiver.new_channel()
            await receiver.group_add("org-status", channel)
            # A subscription is live once Redis has processed it: publish until the first message arrives.
            message = None
            for attempt in range(50):
                await sender.group_send("org-status", {"type": "status.changed", "attempt": attempt})
                try:
                    message = await asyncio.wait_for(receiver.receive(channel), timeout=0.2)
                    break
                except TimeoutError:
                    continue
            assert message is not None and message["type"] == "status.changed"

            await sender.send(channel, {"type": "direct.message", "text": "hello"})
            while (message := await asyncio.wait_for(receiver.receive(channel), timeout=5))["type"] != "direct.message":
                pass  # drop the extra group messages of the warm-up above
            assert message == {"type": "direct.message", "text": "hello"}

            await receiver.group_discard("org-status", channel)
            await sender.group_send("org-status", {"type": "status.changed", "attempt": -1})
            with pytest.raises(TimeoutError):
                while True:
                    message = await asyncio.wait_for(receiver.receive(channel), timeout=0.5)
                    assert message.get("attempt") != -1, "a discarded channel still received the group"
        finally:
            await sender.flush()
            await receiver.flush()

    asyncio.run(round_trip())


def test_the_suite_database_is_postgresql_when_required(db):
    if connection.vendor != "postgresql":
        missing_service(f"the suite runs on {connection.vendor}; set DATABASE_URL to run it on PostgreSQL")
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), version()")
        name, version = cursor.fetchone()
    assert name == connection.settings_dict["NAME"]
    assert "PostgreSQL" in version


def test_overlapping_zones_added_concurrently_by_two_organisations_cannot_both_win(transactional_db, monkeypatch):
    """The overlap check and the insert are serialised across connections (a Postgres advisory lock, SQLite's
    IMMEDIATE transactions): with the insert slowed down, the second writer must see the first one's zone."""
    from controlplane.services import zones

    first, second = OrganisationFactory(team_name="first"), OrganisationFactory(team_name="second")
    original_save = Zone.save

    def slow_save(self, *args, **kwargs):
        time.sleep(0.5)  # widen the window between the overlap check and the insert
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(Zone, "save", slow_save)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def add(organisation, name: str) -> None:
        from django.db import connection as thread_connection

        try:
            barrier.wait(timeout=10)
            results[name] = zones.zone_create(organisation=organisation, name=name, actor=Actor.cli())
        except ValidationError as exc:
            results[name] = exc
        finally:
            thread_connection.close()

    threads = [
        threading.Thread(target=add, args=(first, "example.com")),
        threading.Thread(target=add, args=(second, "app.example.com")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    created = [result for result in results.values() if isinstance(result, Zone)]
    refused = [result for result in results.values() if isinstance(result, ValidationError)]
    assert len(created) == 1 and len(refused) == 1, results
    assert "another organisation" in " ".join(refused[0].messages)
    assert Zone.objects.unscoped("test").count() == 1
