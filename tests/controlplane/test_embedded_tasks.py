"""The embedded task runner (no broker): `.delay()` only queues, retries are scheduled rather than slept through,
the queue is bounded, and a short-lived process (a manage.py command) still delivers what it queued."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from celery import shared_task

from controlplane.embedded_tasks import EmbeddedRunner
from tests.controlplane.test_mail import smtp_server  # noqa: F401 (fixture)

attempts: list[float] = []
release = threading.Event()


@shared_task(autoretry_for=(OSError,), retry_backoff=True, retry_jitter=False, retry_kwargs={"max_retries": 3})
def flaky(*, failures: int) -> None:
    attempts.append(time.monotonic())
    if len(attempts) <= failures:
        raise ConnectionRefusedError("receiver down")


@shared_task(autoretry_for=(OSError,), retry_kwargs={"max_retries": 1})
def always_failing() -> None:
    attempts.append(time.monotonic())
    raise ValueError("not an OSError: not retried")


@shared_task
def blocking() -> None:
    release.wait(10)


def test_delay_returns_at_once_and_the_task_runs_on_a_worker_thread(settings):
    seen: list[str] = []

    @shared_task
    def where() -> None:
        seen.append(threading.current_thread().name)

    runner = EmbeddedRunner(workers=1, queue_size=10)
    started = time.monotonic()
    assert runner.submit(where, (), {})
    assert time.monotonic() - started < 0.1
    assert runner.wait_until_idle(5)
    assert seen == ["embedded-task-0"]


def test_retries_follow_the_backoff_without_holding_a_worker():
    attempts.clear()
    runner = EmbeddedRunner(workers=1, queue_size=10)
    runner.submit(flaky, (), {"failures": 2})
    # While the first retry waits (1 s), the only worker is free for other work.
    time.sleep(0.3)
    other: list[int] = []

    @shared_task
    def quick() -> None:
        other.append(1)

    runner.submit(quick, (), {})
    time.sleep(0.2)
    assert other == [1] and len(attempts) == 1
    assert runner.wait_until_idle(10)
    assert len(attempts) == 3
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    assert 0.9 < gaps[0] < 1.6 and 1.9 < gaps[1] < 2.6, gaps  # Celery's exponential backoff: 1 s, 2 s


def test_a_countdown_is_honoured_without_holding_a_worker():
    attempts.clear()
    runner = EmbeddedRunner(workers=1, queue_size=10)
    started = time.monotonic()
    runner.submit_later(0.5, flaky, (), {"failures": 0})
    assert runner.wait_until_idle(5)
    assert len(attempts) == 1 and 0.45 < attempts[0] - started < 1.5


def test_other_errors_are_not_retried():
    attempts.clear()
    runner = EmbeddedRunner(workers=1, queue_size=10)
    runner.submit(always_failing, (), {})
    assert runner.wait_until_idle(5)
    assert len(attempts) == 1


def test_the_queue_is_bounded(caplog):
    release.clear()
    runner = EmbeddedRunner(workers=1, queue_size=2)
    assert runner.submit(blocking, (), {})
    time.sleep(0.2)  # the worker holds the first job
    assert runner.submit(blocking, (), {}) and runner.submit(blocking, (), {})
    assert not runner.submit(blocking, (), {})
    assert "queue full" in caplog.text
    release.set()
    assert runner.wait_until_idle(5)


def test_a_command_that_queues_mail_delivers_it_before_exiting(smtp_server, tmp_path):  # noqa: F811
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "CELERY_BROKER_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        EMAIL_URL=f"smtp://127.0.0.1:{smtp_server.port}",
        DATA_DIR=str(tmp_path),
    )
    code = (
        "import django; django.setup()\n"
        "from controlplane.tasks import send_email\n"
        "send_email.delay(to=['ops@corp.test'], subject='Queued at exit', template='controlplane/email/invitation',"
        " context={}, organisation_id=None)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [message["Subject"] for message in smtp_server.messages()] == ["Queued at exit"]
