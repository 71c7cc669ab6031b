"""Connector fleet benchmark: N protocol-level connectors against one server process (daphne and uvicorn).

For each (server, N): a fresh data dir (SQLite, embedded mode; or PostgreSQL + Redis with --production), one
server process, a status-page watcher, then

1. reconnect storm: all N connectors dial at once; time until the last one received WELCOME;
2. server RSS (VmRSS) after the storm, and its CPU (utime + stime) over an idle window with heartbeats;
3. at N <= 1,000 (or --latency): config push, from the API PUT to the last connector acking the new version,
   and status page latency, from a probe connector's HELLO (or close) to the watcher seeing it; interleaved with
   the same-run yardstick (bench/connectors/yardstick.py: a bare fan-out to as many sockets on a second server
   process of the same kind), to which both are reported as ratios, with the server's CPU per operation.

The connectors run in 1-2 separate processes (bench/connectors/fleet.py). docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.connectors.fleet import raise_fd_limit
from bench.connectors.report import log, table, targets
from bench.connectors.scenario import Result, run_scenario
from bench.connectors.servers import SERVERS, DataDirs, Topology


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.connectors", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="connections (repeatable; default 1000 and 10000)")
    parser.add_argument("--server", choices=SERVERS, action="append", help="server (repeatable; default both)")
    parser.add_argument("--quick", action="store_true", help="N=1,000 only, 10 s idle, 10 latency rounds")
    parser.add_argument("--production", action="store_true", help="PostgreSQL + Redis instead of SQLite embedded")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/12", help="a dedicated database number: it is flushed"
    )
    parser.add_argument("--tunnels", type=int, default=1, help="spread the connectors over this many tunnels")
    parser.add_argument("--ha", type=int, default=4, help="connections per connector (cloudflared holds 4)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU measurement")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between the storm and the idle window")
    parser.add_argument("--rounds", type=int, default=20, help="config pushes, and status connects+disconnects")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between latency rounds")
    parser.add_argument(
        "--no-yardstick",
        dest="yardstick",
        action="store_false",
        help="no same-run yardstick (a bare fan-out to as many sockets, on a second server process of the same kind)",
    )
    parser.add_argument("--latency", action="store_true", help="latency rounds at every N (default: N <= 1,000)")
    parser.add_argument(
        "--no-watch-storm",
        dest="watch_storm",
        action="store_false",
        help="no status page open during the storm (by default one is: every flush then recomputes its status)",
    )
    parser.add_argument("--storm-timeout", type=float, default=120.0)
    parser.add_argument("--latency-timeout", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=0, help="connector processes (default 1, 2 above 2,000)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy flame graphs of the storm and the idle window")
    parser.add_argument("--gc-log", action="store_true", help="log the server's full garbage collections")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every latency round")
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and server logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.idle = min(args.idle, 10.0)
        args.rounds = min(args.rounds, 10)
    args.n = args.n or ([1000] if args.quick else [1000, 10_000])
    args.server = args.server or list(SERVERS)
    return args


async def amain(args: argparse.Namespace) -> list[Result]:
    topology = Topology(args.production, args.postgres_url, args.redis_url)
    dirs = DataDirs(topology, args.keep)
    results = []
    try:
        log(f"migrating a template data dir ({'PostgreSQL + Redis' if args.production else 'SQLite, embedded'})")
        await asyncio.to_thread(dirs.prepare)
        for n in args.n:
            for kind in args.server:
                results.append(await run_scenario(kind, n, args, dirs))
    finally:
        dirs.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    started = time.monotonic()
    results = asyncio.run(amain(args))
    mode = "PostgreSQL + Redis (production)" if args.production else "SQLite (embedded)"
    print()
    print(
        f"Connector fleet benchmark: one server process, {mode}, {args.tunnels} tunnel(s), {args.ha} connections "
        f"per connector, heartbeat 10 s, idle window {args.idle:.0f} s, {args.rounds} latency rounds; "
        f"{os.cpu_count()} CPUs; {time.monotonic() - started:.0f} s in all"
    )
    print(table(results, args))
    print()
    for line in targets(results):
        print(line)
    return 1 if any(r.error for r in results) else 0
