"""How the benchmark prints: the table of one run and its targets, checked."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from bench.connectors.procs import percentile

# At N = 1,000 (issue 3): config push acked by all, and the status page, p99 under this on a quiet machine.
LATENCY_TARGET = 0.25
# The same, as a ratio to the same-run yardstick's p99 (a bare fan-out to as many sockets), for any machine.
# Justified in docs/benchmarks.md ("Connectors", "The same-run yardstick"): 250 ms over the yardstick's p99 on a
# quiet machine, ~100 ms (its server and its fleet need 50-60 and 65-85 ms of CPU per fan-out, on two cores).
RATIO_TARGET = 2.5

if TYPE_CHECKING:
    from bench.connectors.scenario import Result


def fmt_s(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms"


def fmt_pair(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{percentile(values, 50) * 1000:.0f} / {percentile(values, 99) * 1000:.0f}"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def table(results: list[Result], args: argparse.Namespace) -> str:
    headers = [
        "server",
        "N",
        "connect all",
        "dials",
        "RSS (MB)",
        "idle CPU",
        "PING RTT p99",
        "config→all acked p50/p99 (ms)",
        "status page p50/p99 (ms)",
        "yardstick p50/p99 (ms)",
        "clients CPU storm/idle",
    ]
    rows = []
    for r in results:
        status = r.status_connect + r.status_disconnect
        rows.append(
            [
                r.server,
                f"{r.n:,}",
                (
                    fmt_s(r.connect_all)
                    if r.connected == r.n
                    else f"{r.connected:,}/{r.n:,} in {args.storm_timeout:.0f} s"
                ),
                f"{r.dial_attempts:,}",
                f"{r.rss:.0f}",
                "—" if r.idle_cpu is None else f"{r.idle_cpu:.1f} %",
                fmt_ms(percentile(r.probe_rtts, 99)),
                fmt_pair(r.config) + (f" ({r.config_missing} missing)" if r.config_missing else ""),
                fmt_pair(status) + (f" ({r.status_missing} missed)" if r.status_missing else ""),
                fmt_pair(r.yardstick) + (f" ({r.yardstick_missing} missing)" if r.yardstick_missing else ""),
                f"{r.client_storm_cpu or 0:.1f} s / {r.client_idle_cpu or 0:.1f} %",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    errors = [f"{r.server} N={r.n}: {r.error}" for r in results if r.error]
    return "\n".join(lines + (["", "errors:", *errors] if errors else []))


def ratio(value: float | None, yardstick: float | None) -> float | None:
    if value is None or not yardstick:
        return None
    return value / yardstick


def fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}x"


def yardstick_lines(results: list[Result]) -> list[str]:
    """The product's latencies against the same-run yardstick (bench/connectors/yardstick.py), and the server CPU
    time per operation (load-independent)."""
    out = []
    for r in results:
        if not r.yardstick:
            continue
        floor = percentile(r.yardstick, 99)
        config = percentile(r.config, 99)
        status = percentile(r.status_connect + r.status_disconnect, 99)
        config_ratio, status_ratio = ratio(config, floor), ratio(status, floor)
        out.append(
            f"{r.server} N={r.n:,}: yardstick (bare fan-out to the same number of sockets, same server kind) "
            f"p50 {fmt_ms(percentile(r.yardstick, 50))} p99 {fmt_ms(floor)}; "
            f"config→all acked p99 {fmt_ms(config)} = {fmt_ratio(config_ratio)} yardstick "
            f"(target ≤ {RATIO_TARGET}x) {ok(config_ratio is not None and config_ratio <= RATIO_TARGET)}; "
            f"status page p99 {fmt_ms(status)} = {fmt_ratio(status_ratio)} yardstick "
            f"(target ≤ {RATIO_TARGET}x) {ok(status_ratio is not None and status_ratio <= RATIO_TARGET)}"
        )
        push_cpu, floor_cpu = mean(r.config_cpu), mean(r.yardstick_cpu)
        out.append(
            f"{r.server} N={r.n:,}: server CPU (load-independent) per config push {fmt_ms(push_cpu)} = "
            f"{fmt_ratio(ratio(push_cpu, floor_cpu))} the yardstick server's per fan-out ({fmt_ms(floor_cpu)}; its "
            f"fleet's {fmt_ms(mean(r.yardstick_client_cpu))}); per status connect + disconnect "
            f"{fmt_ms(mean(r.status_cpu))}"
        )
    return out


def ok(met: bool) -> str:
    return "ok" if met else "MISSED"


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def targets(results: list[Result]) -> list[str]:
    """The issue's targets, checked: absolute (on a quiet machine), then as ratios to the same-run yardstick."""
    out = []
    for r in results:
        checks = []
        if r.n >= 10_000:
            checks += [
                ("connect all < 15 s", r.connect_all is not None and r.connected == r.n and r.connect_all < 15),
                ("idle CPU < 20 %", r.idle_cpu is not None and r.idle_cpu < 20),
                ("RSS < 400 MB", 0 < r.rss < 400),
            ]
        if r.config or r.status_connect:
            status = r.status_connect + r.status_disconnect
            checks += [
                (
                    "config p99 < 250 ms (quiet machine)",
                    bool(r.config) and not r.config_missing and percentile(r.config, 99) < LATENCY_TARGET,
                ),
                (
                    "status p99 < 250 ms (quiet machine)",
                    bool(status) and not r.status_missing and percentile(status, 99) < LATENCY_TARGET,
                ),
            ]
        if checks:
            out.append(f"{r.server} N={r.n:,}: " + ", ".join(f"{name} {ok(met)}" for name, met in checks))
    return out + yardstick_lines(results)
