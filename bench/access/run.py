"""Access benchmark (issue 10), one command on loopback, bounded in time (~1–2 minutes):

1. ``decide``: `access.runtime.decide()` in-process on a realistic organisation (bench/access/seed.py: 20
   applications of 10 policies, a group, lists): µs per decision and decisions per second with a valid session
   cookie (token verified once and cached, as the edge keeps it), the first verification of a token (RS256), a
   signed-in identity that no policy admits (403) and a visitor without a cookie (to the login page).
2. ``login``: time from "Send me a code" to the email in a real SMTP server (aiosmtpd) in the production topology:
   daphne, a Celery worker on Redis (``--redis``, database 10 by default, flushed before and after), p50/p95 over
   ``--logins`` logins (bench/access/login.py). Skipped with a line saying why when Redis does not answer.

The edge with Access on vs off (requests/s ratio, one run) is part of bench/edge: ``python -m bench.edge --access``.
Targets are printed with PASS/FAIL; docs/benchmarks.md ("Access") has a run's figures."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, server_env
from bench.edge.run import Processes, free_port, log

TARGET_DECISION_US = 200.0
TARGET_EMAIL_P95 = 2.0


def run_decisions(work: Path, count: int) -> dict[str, Any]:
    data_dir = work / "data-decide"
    data_dir.mkdir()
    env = server_env(data_dir, 8000)
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    cmd = [sys.executable, "-m", "bench.access.decisions", f"--count={count}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def redis_problem(url: str) -> str:
    try:
        import redis
    except ImportError:
        return "redis-py is not installed"
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis is not reachable at {url} ({exc})"
    finally:
        client.close()
    return ""


def report(decisions: dict[str, Any] | None, login: dict[str, Any] | None, login_note: str) -> list[str]:
    lines = []

    def check(label: str, figure: str, ok: bool | None) -> None:
        verdict = "—" if ok is None else ("PASS" if ok else "FAIL")
        lines.append(f"{verdict:4}  {label}: {figure}")

    if decisions is not None:
        lines.append(
            f"decide() on {decisions['apps']} applications × {decisions['policies_per_app']} policies "
            f"(view loaded in {decisions['view_load_ms']:.0f} ms):"
        )
        rows = [
            ("valid cookie (verified token cached)", decisions["admit_cached"]),
            ("valid cookie, first verification (RS256)", decisions["admit_first_verification"]),
            ("signed in, no policy admits (403)", decisions["deny_cached"]),
            ("no cookie (to the login page)", decisions["login_no_cookie"]),
        ]
        for label, figures in rows:
            lines.append(
                f"      {label:42} p50 {figures['p50_us']:8.1f} µs  mean {figures['mean_us']:8.1f} µs  "
                f"p99 {figures['p99_us']:8.1f} µs  {figures['per_second']:>9,.0f} decisions/s (mean)"
            )
        admit = decisions["admit_cached"]
        check(
            f"decision with a valid cookie < {TARGET_DECISION_US:.0f} µs (median; the mean also counts other work on "
            "the shared cores)",
            f"{admit['p50_us']:.1f} µs (mean {admit['mean_us']:.1f} µs, {1e6 / admit['p50_us']:,.0f} decisions/s "
            "at the median)",
            admit["p50_us"] < TARGET_DECISION_US,
        )
    if login is not None:
        check(
            f'"Send me a code" to the email in the SMTP server, p95 over {login["logins"]} logins < '
            f"{TARGET_EMAIL_P95:g} s",
            f"p95 {login['email_p95'] * 1000:.0f} ms, p50 {login['email_p50'] * 1000:.0f} ms, max "
            f"{login['email_max'] * 1000:.0f} ms (the form answered in {login['post_p50'] * 1000:.0f} ms, p50)",
            login["email_p95"] < TARGET_EMAIL_P95,
        )
    elif login_note:
        check('"Send me a code" to the email (Celery on Redis, SMTP)', login_note, None)
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.access", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="< 1 minute: fewer decisions and 10 logins")
    parser.add_argument("--count", type=int, default=20_000, help="decisions timed per case (20,000)")
    parser.add_argument("--logins", type=int, default=50, help="logins timed through SMTP (50)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/10", help="Redis database, flushed (db 10)")
    parser.add_argument(
        "--login", choices=("auto", "on", "off"), default="auto", help="the login scenario: auto skips it without Redis"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, data dirs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.count = min(args.count, 5_000)
        args.logins = min(args.logins, 10)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-access-"))
    procs = Processes(work)
    started = time.monotonic()
    failed = False
    decisions = login = None
    login_note = ""
    try:
        log("decide(): seeding a realistic organisation and timing decisions in-process")
        try:
            decisions = run_decisions(work, args.count)
        except Exception as exc:  # noqa: BLE001 (reported; the login scenario still runs)
            log(f"decide: FAILED: {type(exc).__name__}: {exc}")
            failed = True
        problem = "skipped (--login=off)" if args.login == "off" else redis_problem(args.redis)
        if problem and args.login == "on":
            log(f"login: {problem}")
            failed = True
        elif problem:
            login_note = problem if args.login == "off" else f"skipped: {problem} (--login=on makes this an error)"
            log(f"login: {login_note}")
        else:
            log(f"login: daphne + a Celery worker on {args.redis} + aiosmtpd; {args.logins} logins")
            try:
                from bench.access.login import measure

                login = measure(work, server_env, procs.start, free_port, args.redis, args.logins, timeout=30)
            except Exception as exc:  # noqa: BLE001
                log(f"login: FAILED: {type(exc).__name__}: {exc} (logs in {work}; --keep keeps them)")
                login_note, failed = f"FAILED: {exc}", True
    finally:
        procs.stop_all()
        if args.keep or failed:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(
        f"Access benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} after (other work shares the "
        f"cores); {time.monotonic() - started:.0f} s in all"
    )
    for line in report(decisions, login, login_note):
        print(line)
    return 1 if failed else 0
