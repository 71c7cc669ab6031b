"""Time from "Send me a code" to the PIN email arriving, in the production topology: daphne serving the team
domain's login page, a Celery worker (`celery -A controlplane worker`, as docker-compose runs it) on a Redis broker,
and a real SMTP server (aiosmtpd, in this process) as EMAIL_URL. Each login is a browser's: GET the login page (its
CSRF cookie and token), then POST the email form; the clock runs from the POST until the SMTP server has the
message for that address.

The per-address limit on codes (20 per 10 minutes) is reset between logins: the bench's logins all come from
127.0.0.1, which is a benchmark, not the attack the limit is for."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from bench.common import ROOT

TEAM_DOMAIN = "bench.access.localhost"  # <team>.<AUTH_DOMAIN>, the default auth domain


class Mailbox:
    """An aiosmtpd handler: when each recipient's message arrived (perf_counter), and its text."""

    def __init__(self) -> None:
        self.arrived: dict[str, tuple[float, str]] = {}
        self.changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        now = time.perf_counter()
        text = envelope.content.decode("utf-8", errors="replace")
        with self.changed:
            for recipient in envelope.rcpt_tos:
                self.arrived[recipient.lower()] = (now, text)
            self.changed.notify_all()
        return "250 OK"

    def wait(self, address: str, timeout: float) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while address not in self.arrived:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)
            return self.arrived[address]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def _request(port: int, method: str, path: str, headers: dict[str, str], body: str | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode(errors="replace")
    finally:
        connection.close()


def one_login(port: int, app_host: str, email: str, mailbox: Mailbox, timeout: float) -> tuple[float, float]:
    """(seconds until the POST's answer, seconds until the email arrived) of one login."""
    target = f"https://{app_host}/dashboard"
    path = f"/cdn-cgi/access/login/{app_host}?redirect_url={quote(target, safe='')}"
    host = {"Host": TEAM_DOMAIN}
    status, headers, page = _request(port, "GET", path, host)
    if status != 200 or "Send me a code" not in page:
        raise RuntimeError(f"the login page answered {status}")
    csrf_cookie = re.search(r"csrftoken=([^;]+)", headers.get("Set-Cookie", ""))
    csrf_field = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if not csrf_cookie or not csrf_field:
        raise RuntimeError("the login page has no CSRF cookie or field")
    body = urlencode({"csrfmiddlewaretoken": csrf_field.group(1), "email": email, "redirect_url": target})
    sent = {
        **host,
        "Cookie": f"csrftoken={csrf_cookie.group(1)}",
        "Content-Type": "application/x-www-form-urlencoded",
        "Origin": f"http://{TEAM_DOMAIN}",
        "Referer": f"http://{TEAM_DOMAIN}{path}",
    }
    started = time.perf_counter()
    status, _, page = _request(port, "POST", path, sent, body)
    answered = time.perf_counter() - started
    if status != 200 or "A code has been emailed" not in page:
        raise RuntimeError(f"the email form answered {status}: {page[:200]!r}")
    arrived = mailbox.wait(email, timeout)
    if arrived is None:
        raise RuntimeError(f"no email for {email} within {timeout:.0f} s")
    if not re.search(r"\b\d{6}\b", arrived[1]):
        raise RuntimeError(f"the email to {email} has no PIN")
    return answered, arrived[0] - started


def reset_address_limit(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match="*access-throttle:ip:*"):
            client.delete(key)
    finally:
        client.close()


def wait_port(port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def measure(
    work: Path, env_for: Any, start: Any, free_port: Any, redis_url: str, logins: int, timeout: float
) -> dict[str, Any]:
    """`env_for(data_dir, port)` gives a server environment, `start(name, cmd, env)` starts a process that the caller
    stops, `free_port()` a loopback port. Returns the figures."""
    import redis
    from aiosmtpd.controller import Controller

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    try:
        client.ping()
        client.flushdb()
    finally:
        client.close()
    data_dir = work / "data-login"
    data_dir.mkdir()
    mailbox = Mailbox()
    smtp_port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        port = free_port()
        env = {**env_for(data_dir, port), "REDIS_URL": redis_url, "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}"}
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
        out = subprocess.run(
            [sys.executable, "-m", "bench.access.seed"], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        ).stdout
        seeded = json.loads(out.strip().splitlines()[-1])
        celery = str(Path(sys.executable).parent / "celery")
        worker = start(
            "celery-worker", [celery, "-A", "controlplane", "worker", "-l", "info", "--concurrency", "2"], env
        )
        daphne = str(Path(sys.executable).parent / "daphne")
        server = start(
            "daphne", [daphne, "-v0", "-b", "127.0.0.1", "-p", str(port), "controlplane.asgi:application"], env
        )
        wait_port(port, server, 60, "daphne")
        # The worker is ready when it has delivered a first code (a warm-up login, not counted).
        deadline = time.monotonic() + 60
        while True:
            if worker.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with {worker.returncode}")
            try:
                one_login(port, seeded["app_host"], f"warmup@{seeded['login_domain']}", mailbox, 5)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
        posts, arrivals = [], []
        for n in range(logins):
            if n % 10 == 0:
                reset_address_limit(redis_url)
            answered, arrived = one_login(
                port, seeded["app_host"], f"user{n}@{seeded['login_domain']}", mailbox, timeout
            )
            posts.append(answered)
            arrivals.append(arrived)
    finally:
        controller.stop()
        with contextlib.suppress(Exception):
            client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
            client.flushdb()
            client.close()
    return {
        "logins": logins,
        "post_p50": statistics.median(posts),
        "email_p50": statistics.median(arrivals),
        "email_p95": percentile(arrivals, 0.95),
        "email_max": max(arrivals),
    }
