"""One scenario (a server kind and N): storm, idle window, then the latency rounds."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench.common import ROOT
from bench.connectors.clients import FleetWorker, PingProbe, StatusWatcher, connector_listed, drain
from bench.connectors.procs import free_port, percentile
from bench.connectors.report import fmt_ms, fmt_s, log
from bench.connectors.servers import BIN, DataDirs, Server, http_request
from bench.connectors.yardstick import Yardstick, yardstick_env
from connector import protocol
from connector.websocket import connect


@dataclasses.dataclass
class Result:
    server: str
    n: int
    connected: int = 0
    connect_all: float | None = None
    connect_median: float | None = None
    dial_attempts: int = 0
    rss_boot: float = 0.0
    rss: float = 0.0
    rss_peak: float = 0.0
    storm_cpu: float | None = None
    client_storm_cpu: float | None = None
    idle_cpu: float | None = None
    client_idle_cpu: float | None = None
    idle_live: int = 0
    redials: int = 0
    hb_rtt_p99: float | None = None
    probe_rtts: list[float] = dataclasses.field(default_factory=list)
    config: list[float] = dataclasses.field(default_factory=list)
    config_put: list[float] = dataclasses.field(default_factory=list)
    config_missing: int = 0
    status_connect: list[float] = dataclasses.field(default_factory=list)
    status_disconnect: list[float] = dataclasses.field(default_factory=list)
    status_missing: int = 0
    config_cpu: list[float] = dataclasses.field(default_factory=list)
    status_cpu: list[float] = dataclasses.field(default_factory=list)
    yardstick: list[float] = dataclasses.field(default_factory=list)
    yardstick_cpu: list[float] = dataclasses.field(default_factory=list)
    yardstick_client_cpu: list[float] = dataclasses.field(default_factory=list)
    yardstick_missing: int = 0
    error: str = ""


async def run_scenario(kind: str, n: int, args: argparse.Namespace, dirs: DataDirs) -> Result:
    result = Result(kind, n)
    name = f"{kind}-{n}"
    data_dir, database = dirs.scenario(name)
    port = free_port()
    env = dirs.topology.env(data_dir, database, port)
    gc_log = data_dir / "gc.log"
    if args.gc_log:
        env["PYTHONPATH"] = f"{Path(__file__).parent / 'gclog'}{os.pathsep}{env['PYTHONPATH']}"
        env["BENCH_GC_LOG"] = str(gc_log)
    tunnels = args.tunnels or 1
    seed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.connectors.seed",
            f"--tunnels={tunnels}",
            f"--public-url=http://127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    creds = json.loads(seed.stdout.strip().splitlines()[-1])
    tokens = [t["token"] for t in creds["tunnels"]]
    fleet_tunnel = creds["tunnels"][0]["id"]
    workers_count = args.workers or (1 if n <= 2000 else 2)
    workers = [await FleetWorker.start() for _ in range(workers_count)]
    server = Server(kind, port, env, data_dir / "server.log")
    profilers: list[subprocess.Popen] = []
    watcher: StatusWatcher | None = None
    yardstick: Yardstick | None = None
    try:
        await server.wait_ready()
        if args.watch_storm:
            watcher = await StatusWatcher.open(port, creds["account_id"], creds["session_cookie"])
        else:  # start the hub (it starts with the first websocket) without a status page open
            await (await PingProbe.open(port, creds["tunnels"][0]["token"])).close()
        await asyncio.sleep(1.0)
        result.rss_boot = server.rss()
        log(f"{name}: server pid {server.pid} ready, RSS {result.rss_boot:.0f} MB; storm of {n} connections")

        # 1. Reconnect storm.
        if args.profile:
            profilers.append(py_spy(server.pid, Path(args.profile) / f"{name}-storm.txt"))
        start = time.monotonic() + 1.0
        cpu_before = server.cpu()
        client_cpu_before = sum(w.cpu() for w in workers)
        bounds = [n * i // workers_count for i in range(workers_count + 1)]
        storms = await asyncio.gather(
            *(
                w.call(
                    "storm",
                    url=f"ws://127.0.0.1:{port}{protocol.WEBSOCKET_PATH}",
                    tokens=tokens,
                    ha=args.ha,
                    lo=bounds[i],
                    hi=bounds[i + 1],
                    start=start,
                    timeout=args.storm_timeout,
                    run=name,
                )
                for i, w in enumerate(workers)
            )
        )
        result.storm_cpu = server.cpu() - cpu_before
        result.client_storm_cpu = sum(w.cpu() for w in workers) - client_cpu_before
        for profiler in profilers:
            profiler.send_signal(signal.SIGINT)
        result.connected = sum(s["welcomed"] for s in storms)
        result.dial_attempts = sum(s["attempts"] for s in storms)
        errors: dict[str, int] = {}
        for s in storms:
            for reason, count in s["dial_errors"].items():
                errors[reason] = errors.get(reason, 0) + count
        if errors:
            log(f"{name}: failed dials (retried with the connector's backoff): {errors}")
        lasts = [s["last_welcome"] for s in storms if s["last_welcome"]]
        if lasts:
            result.connect_all = max(lasts) - start
            result.connect_median = max(s["median_welcome"] for s in storms) - start
        result.rss = server.rss()
        log(
            f"{name}: {result.connected}/{n} welcomed, last after {fmt_s(result.connect_all)}, "
            f"{result.dial_attempts} dials, RSS {result.rss:.0f} MB"
        )
        if result.connected < n:
            result.error = f"only {result.connected}/{n} connected within {args.storm_timeout:.0f} s"

        # 2. Idle with heartbeats (connector PINGs every interval, the server's sweeper PINGs every interval).
        probe = await PingProbe.open(port, creds["tunnels"][0]["token"])  # before settling: it changes the status
        await asyncio.sleep(args.settle)
        for w in workers:
            await w.call("stats")  # resets the round-trip samples
        if args.profile:
            profilers.append(py_spy(server.pid, Path(args.profile) / f"{name}-idle.txt", duration=int(args.idle)))
        probe.rtts.clear()
        cpu_before, client_cpu_before, t0 = server.cpu(), sum(w.cpu() for w in workers), time.monotonic()
        await asyncio.sleep(args.idle)
        elapsed = time.monotonic() - t0
        result.probe_rtts = await probe.close()
        if args.gc_log:
            pauses = full_collections(gc_log, t0, t0 + elapsed)
            log(
                f"{name}: {len(pauses)} full garbage collections in the idle window, "
                f"{sum(pauses):.2f} s in all, longest {fmt_ms(max(pauses, default=None))}"
            )
        result.idle_cpu = 100 * (server.cpu() - cpu_before) / elapsed
        result.client_idle_cpu = 100 * (sum(w.cpu() for w in workers) - client_cpu_before) / elapsed
        stats = [await w.call("stats") for w in workers]
        result.idle_live = sum(s["live"] for s in stats)
        result.redials = sum(s["redials"] for s in stats)
        rtts = [s["rtt_p99"] for s in stats if s["rtt_p99"] is not None]
        result.hb_rtt_p99 = max(rtts) if rtts else None
        result.rss = max(result.rss, server.rss())
        log(
            f"{name}: idle {result.idle_cpu:.1f} % of a core over {elapsed:.0f} s, {result.idle_live} live, "
            f"probe PING RTT p50 {fmt_ms(percentile(result.probe_rtts, 50))} p99 "
            f"{fmt_ms(percentile(result.probe_rtts, 99))} max {fmt_ms(max(result.probe_rtts, default=None))}, "
            f"fleet heartbeat RTT p99 {fmt_ms(result.hb_rtt_p99)}, RSS {server.rss():.0f} MB"
        )

        # 3. Latencies.
        if args.latency or n <= 1000:
            if watcher is None:
                watcher = await StatusWatcher.open(port, creds["account_id"], creds["session_cookie"])
            if args.profile:
                profilers.append(py_spy(server.pid, Path(args.profile) / f"{name}-latency.txt"))
            if args.yardstick:
                yardstick = Yardstick(kind, n, args.ha, workers_count, data_dir, yardstick_env())
                welcomed = await yardstick.start(args.storm_timeout)
                log(f"{name}: yardstick server pid {yardstick.server.pid}, {welcomed}/{n} sockets welcomed")
            await latency_rounds(result, args, server, creds, fleet_tunnel, workers, watcher, yardstick)
            for profiler in profilers:
                profiler.send_signal(signal.SIGINT)
        result.rss_peak = server.peak_rss()
    except Exception as exc:  # report the scenario as failed, keep going with the others
        result.error = result.error or f"{type(exc).__name__}: {exc}"
        log(f"{name}: FAILED: {result.error}")
    finally:
        for profiler in profilers:
            with contextlib.suppress(Exception):
                profiler.wait(30)
        if watcher is not None:
            await watcher.close()
        if yardstick is not None:
            await yardstick.stop()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        server.stop()
        if server.proc.returncode not in (0, -signal.SIGTERM, None):
            log(f"{name}: server exited with {server.proc.returncode}; log: {server.log.name}")
    return result


async def latency_rounds(
    result: Result, args, server: Server, creds: dict, tunnel_id: str, workers, watcher, yardstick: Yardstick | None
) -> None:
    """Rounds of: a config push, a status page connect + disconnect, and (same run) a bare fan-out of the
    yardstick. Interleaved, so a burst of load elsewhere on the machine weighs on all three alike. The server's CPU
    time (utime + stime) is taken around each push and each status round (load-independent, unlike latencies)."""
    for number in range(args.rounds):
        cpu_before = server.cpu()
        await config_round(result, args, server.port, creds, tunnel_id, workers, number)
        await asyncio.sleep(args.pause)
        result.config_cpu.append(server.cpu() - cpu_before)
        cpu_before = server.cpu()
        await status_round(result, args, server.port, creds, tunnel_id, watcher)
        result.status_cpu.append(server.cpu() - cpu_before)
        if yardstick is not None:
            if await yardstick.round(args.latency_timeout) is None:
                log(f"{result.server}-{result.n}: a yardstick round was not acked by all sockets")
            await asyncio.sleep(args.pause)
    log(
        f"{result.server}-{result.n}: config push to all p50 {fmt_ms(percentile(result.config, 50))} "
        f"p99 {fmt_ms(percentile(result.config, 99))} (PUT alone p50 {fmt_ms(percentile(result.config_put, 50))}), "
        f"{result.config_missing} acks missing; server CPU {fmt_ms(mean(result.config_cpu))} per push"
    )
    both = result.status_connect + result.status_disconnect
    log(
        f"{result.server}-{result.n}: status page p50 {fmt_ms(percentile(both, 50))} "
        f"p99 {fmt_ms(percentile(both, 99))} (connect p99 {fmt_ms(percentile(result.status_connect, 99))}, "
        f"disconnect p99 {fmt_ms(percentile(result.status_disconnect, 99))}), {result.status_missing} missed; "
        f"server CPU {fmt_ms(mean(result.status_cpu))} per connect + disconnect"
    )
    if yardstick is not None:
        result.yardstick = yardstick.times
        result.yardstick_cpu = yardstick.cpu
        result.yardstick_client_cpu = yardstick.client_cpu
        result.yardstick_missing = yardstick.missing
        log(
            f"{result.server}-{result.n}: yardstick (bare fan-out to {yardstick.n} sockets) p50 "
            f"{fmt_ms(percentile(yardstick.times, 50))} p99 {fmt_ms(percentile(yardstick.times, 99))}, "
            f"{yardstick.missing} acks missing; CPU per fan-out: its server {fmt_ms(mean(yardstick.cpu))}, its fleet "
            f"{fmt_ms(mean(yardstick.client_cpu))}"
        )


async def config_round(result: Result, args, port: int, creds: dict, tunnel_id: str, workers, number: int) -> None:
    """One configuration PUT, timed until the last connector received the new version (and acked it)."""
    path = f"/client/v4/accounts/{creds['account_id']}/cfd_tunnel/{tunnel_id}/configurations"
    config = {"ingress": [{"service": "http_status:404"}], "originRequest": {"connectTimeout": 10 + number}}
    t0 = time.monotonic()
    status, body = await asyncio.to_thread(http_request, port, "PUT", path, {"config": config}, creds["api_token"])
    put_done = time.monotonic()
    if status != 200:
        raise RuntimeError(f"config PUT answered {status}: {body}")
    version = body["result"]["version"]
    answers = await asyncio.gather(
        *(w.call("config", tunnel=0, version=version, timeout=args.latency_timeout) for w in workers)
    )
    missing = sum(a["expected"] - a["acked"] for a in answers)
    result.config_missing += missing
    lasts = [a["last"] for a in answers if a["last"] is not None]
    if lasts and not missing:
        result.config.append(max(lasts) - t0)
        result.config_put.append(put_done - t0)
        if args.verbose:
            first = min(a["first"] for a in answers if a["first"] is not None)
            log(
                f"  config v{version}: PUT answered {fmt_ms(put_done - t0)}, first CONFIG {fmt_ms(first - t0)}, "
                f"last {fmt_ms(max(lasts) - t0)}"
            )


async def status_round(result: Result, args, port: int, creds: dict, tunnel_id: str, watcher) -> None:
    """A probe connector's HELLO, then its close, each timed until the status page shows it."""
    token = creds["tunnels"][0]["token"]
    url = f"ws://127.0.0.1:{port}{protocol.WEBSOCKET_PATH}"
    connector_id = str(uuid.uuid4())
    ws = await connect(url, headers=[("Authorization", f"Bearer {token}")], max_message_size=protocol.MAX_FRAME_SIZE)
    seen = watcher.expect(connector_listed(tunnel_id, connector_id, True))
    t0 = time.monotonic()
    await ws.send(protocol.encode(protocol.Hello(connector_id=connector_id, version="bench-probe")))
    answer = await watcher.collect(seen, args.latency_timeout)
    if answer is None:
        result.status_missing += 1
    else:
        result.status_connect.append(answer[0] - t0)
    reader = asyncio.ensure_future(drain(ws))
    await asyncio.sleep(args.pause)
    gone = watcher.expect(connector_listed(tunnel_id, connector_id, False))
    t0 = time.monotonic()
    await ws.close(protocol.CloseCode.GOING_AWAY, "probe done")
    answer = await watcher.collect(gone, args.latency_timeout)
    if answer is None:
        result.status_missing += 1
    else:
        result.status_disconnect.append(answer[0] - t0)
    reader.cancel()
    await asyncio.sleep(args.pause)


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def full_collections(path: Path, start: float, end: float) -> list[float]:
    """Pauses of the server's full collections between two monotonic times (bench/connectors/gclog)."""
    if not path.exists():
        return []
    pauses = []
    for line in path.read_text().splitlines():
        at, pause, _ = line.split()
        if start <= float(at) <= end:
            pauses.append(float(pause))
    return pauses


def py_spy(pid: int, output: Path, duration: int | None = None) -> subprocess.Popen:
    output.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(BIN / "py-spy"), "record", "--pid", str(pid), "--output", str(output), "--rate", "100", "--nonblocking"]
    cmd += ["--format", "raw" if output.suffix == ".txt" else "flamegraph"]
    if duration:
        cmd += ["--duration", str(duration)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
