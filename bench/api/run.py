"""API benchmark (issue 13): the control plane's own HTTP path (API with a token, the UI with a 2FA-verified
session) against a trivial Django JSON view served by the same server and settings in the same run (the ceiling of
Django's request machinery on this machine), in one command, on loopback, bounded in time.

Set-up: a fresh data dir, migrated and seeded by bench/api/seed.py: organisations with 1, 100 and 1,000 tunnels
(a token each), one for writes, and `--others` other organisations (tunnels, tokens, members). The seed also counts
the queries of one request of each endpoint in-process (same views and settings), before and after the other
organisations exist.

Then the server (``--server uvicorn``: uvloop + httptools, ``--workers N``; or ``daphne``) is started with
BENCH_ENDPOINTS=1 and wrk drives each endpoint at c=1 (one thread) and c=20 (two threads); Lua scripts give wrk its
methods, bodies and headers (create+delete alternates a POST and the DELETE of the tunnel it created). Printed per
endpoint: req/s, p50/p99, the server's CPU per request (process tree's utime + stime from /proc, divided by the
requests), queries per request, the ratio to the trivial view's req/s at the same concurrency, and the issue's
targets with PASS/FAIL. docs/benchmarks.md ("API") has a run's figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, server_env
from bench.edge.run import Processes, find_tool, free_port, log, parse_wrk, proc_cpu_seconds, wait_port

BIN = Path(sys.executable).parent

# --database postgres: a throwaway database (loopback, trust authentication), created for the run and dropped after.
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_api"

# The targets, judged at c=20.
TARGET_READ_RATIO = 0.50
TARGET_READ_P99 = 0.020
TARGET_WRITE_RATIO = 0.25

LUA_REQUEST = """
local body = {body}
wrk.method = "{method}"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
{headers}
"""

# POST a tunnel, then DELETE the one it answered with, on every connection of the thread.
LUA_CREATE_DELETE = """
local created = {{}}
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tag", tostring(threads))
end
local headers = {{["Content-Type"] = "application/json"}}
{headers_table}
function request()
  if #created > 0 then
    return wrk.format("DELETE", "{path}/" .. table.remove(created), headers, nil)
  end
  n = n + 1
  return wrk.format("POST", "{path}", headers, '{{"name":"bench-{run}-' .. tag .. '-' .. n .. '"}}')
end
function response(status, hdrs, body)
  if status == 200 and body:find('"token"', 1, true) then
    local id = body:match('"id"%s*:%s*"([%x%-]+)"')
    if id then table.insert(created, id) end
  end
end
"""


@dataclasses.dataclass
class Figure:
    rps: float = 0.0
    p50: float | None = None
    p99: float | None = None
    requests: int = 0
    errors: int = 0
    cpu_us: float | None = None


def tree_pids(pid: int) -> list[int]:
    """The server process and its descendants (uvicorn's workers)."""
    pids, index = [pid], 0
    while index < len(pids):
        try:
            with open(f"/proc/{pids[index]}/task/{pids[index]}/children") as f:
                pids += [int(child) for child in f.read().split()]
        except OSError:
            pass
        index += 1
    return pids


def tree_cpu(pid: int) -> float:
    total = 0.0
    for each in tree_pids(pid):
        try:
            total += proc_cpu_seconds(each)
        except OSError:
            pass
    return total


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="bench-api-"))
        self.procs = Processes(self.work)
        self.port = free_port()
        self.data = self.work / "data"
        self.seeded: dict[str, Any] = {}
        self.server: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = server_env(self.data, self.port)
        env["BENCH_ENDPOINTS"] = "1"
        if self.args.database == "postgres":
            env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_DATABASE}"
        if self.args.conn_max_age is not None:
            env["DATABASE_CONN_MAX_AGE"] = str(self.args.conn_max_age)
        return env

    def postgres(self, create: bool) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
            if create:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')

    def prepare(self) -> None:
        self.data.mkdir()
        if self.args.database == "postgres":
            self.postgres(create=True)
        env = self.env()
        started = time.monotonic()
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
        seed = [sys.executable, "-m", "bench.api.seed", f"--others={self.args.others}"]
        out = subprocess.run(seed, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
        self.seeded = json.loads(out.strip().splitlines()[-1])
        (self.work / "seeded.json").write_text(json.dumps(self.seeded))  # for profiling by hand
        log(f"seeded in {time.monotonic() - started:.0f} s ({self.args.others} other organisations)")

    def start_server(self) -> None:
        args = self.args
        if args.server == "daphne":
            endpoint = f"tcp:port={self.port}:interface=127.0.0.1:backlog=4096"
            cmd = [str(BIN / "daphne"), "-e", endpoint, "controlplane.asgi:application"]
        else:
            cmd = [str(BIN / "uvicorn"), "controlplane.asgi:application", "--host", "127.0.0.1"]
            cmd += ["--port", str(self.port), "--loop", "uvloop", "--http", "httptools", "--backlog", "4096"]
            cmd += ["--no-access-log", "--log-level", "warning", "--workers", str(args.workers)]
        self.server = self.procs.start("server", cmd, env=self.env())
        wait_port(self.port, self.server, 60, "the server")
        time.sleep(0.5 if args.workers == 1 else 2.0)  # every worker importing Django
        # One request of each endpoint per worker first: the first request of a process imports every view.
        for row in self.seeded["endpoints"]:
            if row["method"] == "GET":
                for _ in range(args.workers * 2):
                    self.get(row)

    def get(self, row: dict[str, Any]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("GET", row["path"], headers=self.auth_headers(row))
            answer = connection.getresponse()
            answer.read()
        finally:
            connection.close()
        if answer.status != 200:
            raise RuntimeError(f"{row['name']}: GET {row['path']} answered {answer.status}")

    def script(self, row: dict[str, Any], tag: str) -> Path | None:
        auth_headers = self.auth_headers(row)
        path = self.work / f"{row['name'].replace('+', '-')}-{tag}.lua"
        if row["method"] == "POST+DELETE":
            table = "\n".join(f'headers["{k}"] = "{v}"' for k, v in auth_headers.items())
            path.write_text(LUA_CREATE_DELETE.format(headers_table=table, path=row["path"], run=tag))
            return path
        if row["method"] == "GET":
            return None
        lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in auth_headers.items())
        body = json.dumps(json.dumps(row.get("body", {})))
        path.write_text(LUA_REQUEST.format(method=row["method"], body=body, headers=lines))
        return path

    def auth_headers(self, row: dict[str, Any]) -> dict[str, str]:
        if row["auth"] == "session":
            return {"Cookie": self.seeded["cookie"]}
        if row["auth"]:
            return {"Authorization": f"Bearer {self.seeded['orgs'][row['auth']]['token']}"}
        return {}

    def wrk(self, row: dict[str, Any], connections: int, seconds: float, tag: str) -> Figure:
        assert self.server is not None
        threads = 1 if connections == 1 else 2
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
        cmd.append("--timeout=10s")  # a slow answer counts in the latencies, not as a socket error
        script = self.script(row, tag)
        if script is None:
            for name, value in self.auth_headers(row).items():
                cmd += ["-H", f"{name}: {value}"]
        else:
            cmd += ["-s", str(script)]
        path = row["path"] if row["method"] != "POST+DELETE" else "/"
        cmd.append(f"http://127.0.0.1:{self.port}{path}")
        before = tree_cpu(self.server.pid)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
        used = tree_cpu(self.server.pid) - before
        load = parse_wrk(out)
        figure = Figure(load.rps, load.p50, load.p99, load.requests, load.errors)
        if load.requests:
            figure.cpu_us = used * 1e6 / load.requests
        return figure

    def measure(self) -> dict[tuple[str, int], Figure]:
        results: dict[tuple[str, int], Figure] = {}
        rows = [r for r in self.seeded["endpoints"] if not self.args.only or r["name"] in self.args.only + ["trivial"]]
        for connections in (1, 20):
            for row in rows:
                if self.args.warmup:
                    self.wrk(row, connections, self.args.warmup, f"w{connections}")
                figure = self.wrk(row, connections, self.args.duration, f"c{connections}")
                results[(row["name"], connections)] = figure
                log(f"{row['name']:<14} c={connections:<3} {figure.rps:>8.0f} req/s")
        return results

    def cleanup(self) -> None:
        self.procs.stop_all()
        if self.args.database == "postgres":
            self.postgres(create=False)


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f}"


def report(bench: Bench, results: dict[tuple[str, int], Figure]) -> bool:
    seeded, args = bench.seeded, bench.args
    alone, others = seeded["queries_alone"], seeded["queries_with_others"]
    ok = True
    print()
    print(
        f"API benchmark: {args.server}, {args.workers} worker(s), {args.database}, {args.others} other "
        f"organisations; wrk {args.duration:g} s per figure after {args.warmup:g} s of warm-up"
    )
    head = (
        f"{'endpoint':<14} {'c':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU µs/req':>10} {'queries':>7} "
        f"{'vs trivial':>10} {'errors':>6}  target"
    )
    print(head)
    print("-" * len(head))
    for connections in (1, 20):
        ceiling = results[("trivial", connections)].rps or 1.0
        for row in seeded["endpoints"]:
            figure = results.get((row["name"], connections))
            if figure is None:
                continue
            ratio = figure.rps / ceiling
            verdict = ""
            if connections == 20 and row["kind"] != "ceiling":
                if row["kind"] == "read":
                    passed = ratio >= TARGET_READ_RATIO and figure.p99 is not None and figure.p99 < TARGET_READ_P99
                    verdict = f"≥ {TARGET_READ_RATIO:.0%} and p99 < {TARGET_READ_P99 * 1000:.0f} ms"
                else:
                    passed = ratio >= TARGET_WRITE_RATIO
                    verdict = f"≥ {TARGET_WRITE_RATIO:.0%}"
                passed = passed and figure.errors == 0
                ok &= passed
                verdict = f"{'PASS' if passed else 'FAIL'} ({verdict})"
            elif figure.errors:
                ok = False
                verdict = "FAIL (errors)"
            cpu = "—" if figure.cpu_us is None else f"{figure.cpu_us:.0f}"
            print(
                f"{row['name']:<14} {connections:>3} {figure.rps:>8.0f} {ms(figure.p50):>7} {ms(figure.p99):>7} "
                f"{cpu:>10} {others[row['name']]:>7} {ratio:>9.0%} {figure.errors:>6}  {verdict}"
            )
        print()
    lists = {name: others[name] for name in ("list-1", "list-100", "list-1000")}
    constant = len(set(lists.values())) == 1
    ok &= constant
    print(f"{'PASS' if constant else 'FAIL'}: tunnel list queries constant in the number of tunnels: {lists}")
    grown = {name: (alone[name], others[name]) for name in alone if alone[name] != others[name]}
    ok &= not grown
    detail = "none" if not grown else ", ".join(f"{k}: {a} → {b}" for k, (a, b) in grown.items())
    verdict = "PASS" if not grown else "FAIL"
    print(f"{verdict}: queries unchanged by {args.others} other organisations (changed: {detail})")
    print(f"\n{'PASS' if ok else 'FAIL'}: all targets")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("uvicorn", "daphne"), default="uvicorn")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1)")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help=(f"sqlite (embedded, default) or postgres: a throwaway database {PG_DATABASE} on loopback, dropped after"),
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="DATABASE_CONN_MAX_AGE of the server (0: a connection per request)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each figure (1)")
    parser.add_argument("--others", type=int, default=200, help="other organisations seeded (200)")
    parser.add_argument("--only", action="append", default=[], help="measure only these endpoints (and trivial)")
    parser.add_argument("--quick", action="store_true", help="2 s per figure, 50 other organisations (< 2 min)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.others = 2.0, 1.0, 50
    if not find_tool("wrk"):
        print("bench-api needs wrk: run 'sudo apt-get install -y wrk' (Debian), then again", file=sys.stderr)
        return 2
    if args.server == "daphne" and args.workers != 1:
        parser.error("--workers applies to uvicorn")
    bench = Bench(args)
    try:
        bench.prepare()
        bench.start_server()
        results = bench.measure()
    finally:
        bench.cleanup()
    return 0 if report(bench, results) else 1
