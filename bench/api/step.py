"""The API's request path in process: what one request of each bench/api endpoint costs inside Django (the same
handler, middleware, views and settings as the server, without the HTTP server or the network), next to the trivial
view, so that a change can be judged on a shared, noisy machine.

    python -m bench.api.step [--only tunnel --only list-100 ...] [--iterations 300] [--callgrind]
                             [--database postgres]

Each endpoint runs in a child process that imports the server's application (`controlplane.asgi`), answers 20
requests to warm up, then measures: CPU µs per request (`time.thread_time`, median of 7 batches interleaved with
batches of the trivial view, and the median of the per-batch ratios), and with `--callgrind` the instructions per
request counted by valgrind around a loop of that endpoint's requests only (`callgrind_control -i on`, then `-d`, one
child per endpoint and one for the trivial view): the same figure on a busy machine, the one to decide with.
`--database postgres` runs on a throwaway PostgreSQL database on loopback: CPU µs and instructions then count this
process only, so the wall-clock µs per request (median of the batches) and the CPU µs of the PostgreSQL server's
backend process per request (from /proc; the server runs on this machine) are printed too.
Writes (PUT configuration, create + delete) change the seeded data as they
run, as they do in bench/api. A throwaway data dir is migrated and seeded by bench/api/seed.py.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, server_env

# --database postgres: a throwaway database (loopback, trust authentication), created for the run and dropped after.
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "bench_api_step"


def _scope(seeded: dict[str, Any], row: dict[str, Any], method: str, path: str, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1"), (b"accept", b"*/*"), (b"user-agent", b"bench-api-step")]
    if row["auth"] == "session":
        headers.append((b"cookie", seeded["cookie"].encode()))
    elif row["auth"]:
        headers.append((b"authorization", f"Bearer {seeded['orgs'][row['auth']]['token']}".encode()))
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 40000),
    }


def child(data_dir: Path, name: str, iterations: int, callgrind: bool) -> None:
    import controlplane.asgi as asgi
    from bench.api.seed import endpoints

    seeded = json.loads((data_dir / "seeded.json").read_text())
    rows = {row["name"]: row for row in endpoints(seeded)}
    handler = asgi.django_asgi_app
    created = [0]

    def call(row: dict[str, Any], method: str, path: str, body: bytes = b"") -> bytes:
        response, content = handler._get_response_sync(_scope(seeded, row, method, path, body), io.BytesIO(body))
        if response.status_code != 200:
            raise RuntimeError(f"{row['name']}: {method} {path} answered {response.status_code}: {content[:200]!r}")
        return content

    def one(row: dict[str, Any]) -> None:
        if row["method"] == "POST+DELETE":
            created[0] += 1
            body = json.dumps({"name": f"step-{os.getpid()}-{created[0]}"}).encode()
            tunnel = json.loads(call(row, "POST", row["path"], body))["result"]["id"]
            call(row, "DELETE", f"{row['path']}/{tunnel}")
            return
        body = json.dumps(row["body"]).encode() if row.get("body") else b""
        call(row, row["method"], row["path"], body)

    if callgrind:
        # Under valgrind a request takes ~50x longer: the token cache's one-second expiry would re-read the token
        # every few requests instead of once a second of the real server's thousands.
        from controlplane.services import tokens

        tokens.TOKEN_CACHE_SECONDS = 3600.0
        # Likewise the embedded task workers hand their database connections back after 2 idle seconds: ~40 ms of
        # a real server between a create's notification job and the next, but seconds under valgrind.
        from controlplane import embedded_tasks

        embedded_tasks.IDLE_CLOSE_SECONDS = 3600.0
    trivial, row = rows["trivial"], rows[name]
    for _ in range(20):
        one(trivial)
        one(row)
    if callgrind:  # only this endpoint's requests, counted
        pid = str(os.getpid())
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
        for _ in range(iterations):
            one(row)
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)  # dumped: the loop alone
        print(json.dumps({"requests": iterations}))
        return
    per_request: dict[str, list[float]] = {"trivial": [], name: []}
    wall: list[float] = []
    database: list[float] = []
    backend = _backend_pid()
    ratios = []
    for _ in range(7):
        for each in (trivial, row):
            started, started_wall, started_db = time.thread_time(), time.perf_counter(), _cpu_seconds(backend)
            for _ in range(iterations):
                one(each)
            per_request[each["name"]].append((time.thread_time() - started) / iterations)
            if each is row:
                wall.append((time.perf_counter() - started_wall) / iterations)
                database.append((_cpu_seconds(backend) - started_db) / iterations)
        ratios.append(per_request[name][-1] / per_request["trivial"][-1])
    print(
        json.dumps(
            {
                "us": statistics.median(per_request[name]) * 1e6,
                "trivial_us": statistics.median(per_request["trivial"]) * 1e6,
                "ratio": statistics.median(ratios),
                "wall_us": statistics.median(wall) * 1e6,
                "db_us": statistics.median(database) * 1e6 if backend else None,
            }
        )
    )


def _backend_pid() -> int | None:
    """The PostgreSQL server process serving this process's requests (the handler runs on this thread, with
    persistent connections: one backend for the whole run), or None on SQLite."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process on this machine (the database server's backend), from /proc."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def instructions(out_file: str) -> int:
    """Instructions counted in a callgrind output file (its `summary:` or `totals:` line)."""
    for line in Path(out_file).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out_file}")


def counted(data_dir: Path, name: str, requests: int, env: dict[str, str]) -> float:
    """Instructions per request of `name`, counted by callgrind around its measured loop only."""
    prefix = data_dir / f"callgrind-{name.replace('+', '-')}"
    for old in glob.glob(f"{prefix}.*"):
        os.unlink(old)
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={prefix}.%p"]
    cmd += [sys.executable, "-m", "bench.api.step", "--child", str(data_dir), name, str(requests), "--callgrind"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    # The loop's dump only (`<prefix>.<pid>.1`): the file without a dump number holds what ran after it with the
    # instrumentation still on, the child's exit (interpreter and Django teardown, ~40M instructions), which added
    # ~4M to each of a write's 10 counted requests and ~0.4M to the trivial view's 100 until the fourth round.
    dumps = [f for f in glob.glob(f"{prefix}.*") if re.fullmatch(r"\d+\.\d+", f[len(str(prefix)) + 1 :])]
    if not dumps:
        raise RuntimeError(f"no callgrind dump of {name}")
    return sum(instructions(f) for f in dumps) / requests


def measure(data_dir: Path, name: str, iterations: int, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.api.step", "--child", str(data_dir), name, str(iterations)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api.step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], help="measure only these endpoints")
    parser.add_argument("--iterations", type=int, default=300, help="requests per batch (300; 7 batches)")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind")
    parser.add_argument("--requests", type=int, default=100, help="requests counted under valgrind (100)")
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help=f"sqlite (embedded, default) or postgres: a throwaway database {PG_DATABASE} on loopback, dropped after",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import django

        django.setup()
        child(Path(args.child[0]), args.child[1], int(args.child[2]), args.callgrind)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-api-step-"))
    data_dir = work / "data"
    data_dir.mkdir()
    env = server_env(data_dir, 80)
    env["BENCH_ENDPOINTS"] = "1"
    if args.database == "postgres":
        _postgres(create=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{PG_DATABASE}"
    try:
        return _run(args, data_dir, env)
    finally:
        if args.database == "postgres":
            _postgres(create=False)


def _postgres(create: bool) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, connect_timeout=3, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        if create:
            conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')


def _run(args: argparse.Namespace, data_dir: Path, env: dict[str, str]) -> int:
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "-m", "bench.api.seed", "--others=20"], cwd=ROOT, env=env, check=True, capture_output=True
    ).stdout.decode()
    (data_dir / "seeded.json").write_text(out.strip().splitlines()[-1])
    from bench.api.seed import endpoints

    names = [row["name"] for row in endpoints(json.loads((data_dir / "seeded.json").read_text()))]
    names = [n for n in names if n != "trivial" and (not args.only or n in args.only)]
    head = f"{'endpoint':<14} {'µs/req':>8} {'trivial µs':>10} {'ratio':>6} {'wall µs':>8}"
    if args.database == "postgres":
        head += f" {'db µs':>6}"
    print(head + ("  instructions/req  trivial's  ratio" if args.callgrind else ""))
    trivial_count = counted(data_dir, "trivial", args.requests, env) if args.callgrind else 0.0
    for name in names:
        heavy = name in ("put-config", "create+delete", "ui-tunnels")
        result = measure(data_dir, name, max(10, args.iterations // 10) if heavy else args.iterations, env)
        line = f"{name:<14} {result['us']:>8.0f} {result['trivial_us']:>10.0f} {result['ratio']:>6.2f}"
        line += f" {result['wall_us']:>8.0f}"
        if result["db_us"] is not None:
            line += f" {result['db_us']:>6.0f}"
        if args.callgrind:
            count = counted(data_dir, name, max(5, args.requests // 10) if heavy else args.requests, env)
            line += f"  {count:>16,.0f}  {trivial_count:>9,.0f}  {count / trivial_count:>5.2f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
