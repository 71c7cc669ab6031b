"""Celery tasks in embedded mode (no broker): run off the caller's thread, on a small bounded pool.

Celery's eager mode runs a task inside `.delay()`: on the request that queued it, or on the hub's database
threads (health alerts), and its retries run there too, back to back. One tenant's hanging webhook (7 tries of a
10 s timeout) then held its own request for 70 s and kept another tenant's connector from registering for a minute
(issue 14, item 5). Here `.delay()` only enqueues: a few worker threads run the tasks, each outbound call has its
own timeout, and a retry is scheduled after Celery's backoff instead of slept through. With a broker (REDIS_URL),
tasks are published to the Celery workers as usual and none of this runs.

A task whose work is local in this configuration can declare `embedded_inline_setting="<SETTING>"`: while that
setting is true it runs inline as before (mail kept in the outbox is a database row, not an outbound call).
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import logging
import queue
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

from celery import Task as CeleryTask
from celery.result import AsyncResult
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

EXIT_GRACE_SECONDS = 30.0
# A worker keeps its database connections from one job to the next, as a request thread or a Celery worker does (each
# closed after a job when unusable or older than CONN_MAX_AGE), and hands them back once idle this long. Opening a
# connection for every job cost more than the job: a tunnel created and deleted queued two notification jobs whose
# fresh SQLite connections (schema read, PRAGMAs) were a third of the pair's instructions (issue 13).
IDLE_CLOSE_SECONDS = 2.0


class Task(CeleryTask):
    """The app's task class: in embedded mode `.delay()` / `.apply_async()` hand the task to the embedded runner."""

    embedded_inline_setting: str | None = None

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None, **options: Any) -> Any:
        if not self.app.conf.task_always_eager or self._runs_inline():
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        task_id = task_id or str(uuid.uuid4())
        countdown = float(options.get("countdown") or 0)
        if countdown > 0:
            runner().submit_later(countdown, self, tuple(args or ()), dict(kwargs or {}))
        else:
            runner().submit(self, tuple(args or ()), dict(kwargs or {}))
        return AsyncResult(task_id, app=self.app)

    def _runs_inline(self) -> bool:
        name = self.embedded_inline_setting
        return bool(name and getattr(settings, name, False))


@dataclass(order=True)
class _Job:
    due: float
    sequence: int
    task: Task = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    kwargs: dict[str, Any] = field(compare=False)
    attempt: int = field(default=0, compare=False)


class EmbeddedRunner:
    """A bounded queue, `workers` threads taking jobs from it, and one timer thread holding retries until due."""

    def __init__(self, *, workers: int, queue_size: int) -> None:
        self.workers = max(1, workers)
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=max(1, queue_size))
        self._later: list[_Job] = []
        self._lock = threading.Condition()
        self._sequence = itertools.count()
        self._busy = 0
        self._started = False
        self._holding: set[int] = set()  # workers that keep database connections open between jobs
        _runners.add(self)

    def submit(self, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], *, attempt: int = 0) -> bool:
        """Queue a run now; False (and an error logged) when the queue is full, as a broker that refuses would."""
        self._start()
        job = _Job(time.monotonic(), next(self._sequence), task, args, kwargs, attempt)
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            logger.error("embedded task queue full (%d): %s dropped", self._jobs.maxsize, task.name)
            return False
        return True

    def submit_later(self, delay: float, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._start()
        self._schedule(_Job(time.monotonic() + delay, next(self._sequence), task, args, kwargs))

    def wait_until_idle(self, timeout: float) -> bool:
        """Tests: True once nothing is queued, running or waiting to be retried."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._busy and not self._later and self._jobs.unfinished_tasks == 0:
                    return True
            time.sleep(0.02)
        return False

    def wait_connections_closed(self, timeout: float) -> bool:
        """Tests: True once every worker has handed its database connections back (idle for IDLE_CLOSE_SECONDS), so
        that the test databases can be dropped."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._holding:
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def discard_pending(self) -> None:
        """Tests: forget queued jobs and scheduled retries (jobs already running finish)."""
        with self._lock:
            self._later.clear()
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                return
            self._jobs.task_done()

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        for number in range(self.workers):
            threading.Thread(target=self._work, name=f"embedded-task-{number}", daemon=True).start()
        threading.Thread(target=self._release_due_retries, name="embedded-task-retries", daemon=True).start()
        atexit.register(self._finish_queued, EXIT_GRACE_SECONDS)

    def _finish_queued(self, timeout: float) -> None:
        """At exit (e.g. a manage.py command that queued an email): let queued and running jobs finish, for a
        while; scheduled retries are given up, as a stopped worker would."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._busy and self._jobs.unfinished_tasks == 0:
                    return
            time.sleep(0.05)
        logger.warning("exiting with embedded tasks unfinished")

    def _work(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_CLOSE_SECONDS)
            except queue.Empty:
                connections.close_all()  # this thread's own connections: idle, handed back
                with self._lock:
                    self._holding.discard(threading.get_ident())
                job = self._jobs.get()
            with self._lock:
                self._busy += 1
            try:
                self._run(job)
            finally:
                with self._lock:
                    self._busy -= 1
                self._jobs.task_done()

    def _run(self, job: _Job) -> None:
        task = job.task
        try:
            task(*job.args, **job.kwargs)
        except Exception as exc:
            retry_on = tuple(getattr(task, "autoretry_for", ()) or ())
            limit = (getattr(task, "retry_kwargs", None) or {}).get("max_retries", task.max_retries)
            if retry_on and isinstance(exc, retry_on) and (limit is None or job.attempt < limit):
                self._retry_later(job, exc)
            else:
                logger.warning("task %s failed after %d tries: %r", task.name, job.attempt + 1, exc)
        finally:
            # This thread's own connections, kept for the next job unless broken, left in a transaction or too old
            # (what Django does after each request).
            kept = False
            for connection in connections.all(initialized_only=True):
                connection.close_if_unusable_or_obsolete()
                kept = kept or connection.connection is not None
            if kept:
                with self._lock:
                    self._holding.add(threading.get_ident())

    def _retry_later(self, job: _Job, exc: BaseException) -> None:
        task = job.task
        backoff = getattr(task, "retry_backoff", False)
        if backoff:
            delay = get_exponential_backoff_interval(
                factor=int(backoff),
                retries=job.attempt,
                maximum=getattr(task, "retry_backoff_max", 600),
                full_jitter=getattr(task, "retry_jitter", True),
            )
        else:
            delay = (getattr(task, "retry_kwargs", None) or {}).get("countdown", task.default_retry_delay or 0)
        logger.info("task %s failed (%r); try %d in %s s", task.name, exc, job.attempt + 2, delay)
        self._schedule(
            _Job(time.monotonic() + delay, next(self._sequence), task, job.args, job.kwargs, job.attempt + 1)
        )

    def _schedule(self, job: _Job) -> None:
        with self._lock:
            heapq.heappush(self._later, job)
            self._lock.notify()

    def _release_due_retries(self) -> None:
        while True:
            with self._lock:
                while not self._later or self._later[0].due > time.monotonic():
                    self._lock.wait(timeout=None if not self._later else self._later[0].due - time.monotonic())
                job = heapq.heappop(self._later)
            self.submit(job.task, job.args, job.kwargs, attempt=job.attempt)


_runner: EmbeddedRunner | None = None
_runners: weakref.WeakSet[EmbeddedRunner] = weakref.WeakSet()


def wait_connections_closed(timeout: float) -> bool:
    """Tests: True once the workers of every runner have handed their database connections back (idle for
    IDLE_CLOSE_SECONDS), so that the test databases can be dropped."""
    deadline = time.monotonic() + timeout
    return all(r.wait_connections_closed(max(0.0, deadline - time.monotonic())) for r in list(_runners))


_runner_lock = threading.Lock()


def runner() -> EmbeddedRunner:
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = EmbeddedRunner(
                workers=settings.EMBEDDED_TASK_WORKERS, queue_size=settings.EMBEDDED_TASK_QUEUE_SIZE
            )
        return _runner
