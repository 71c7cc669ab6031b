"""The Access decision measured in-process: `access.runtime.decide()` on the realistic organisation of
bench/access/seed.py, loaded the way the edge loads it (`load_org_view`). Prints one JSON object.

Run with a migrated data dir: ``DATA_DIR=… python -m bench.access.decisions [--count N]`` (bench/access/run.py
does it)."""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(call: Callable[[], Any], count: int, before: Callable[[], None] | None = None) -> dict[str, float]:
    """µs per call: mean over the loop, and p50/p99 of the calls timed one by one (the timer's own cost, ~0.1 µs,
    included). `before` runs untimed ahead of each call."""
    gc.collect()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        if before is not None:
            before()
        started = clock()
        call()
        samples.append(clock() - started)
    samples.sort()
    mean = statistics.fmean(samples) / 1000
    return {
        "mean_us": mean,
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000,
        "per_second": 1e6 / mean if mean else 0.0,
        "count": count,
    }


def measure(count: int) -> dict[str, Any]:
    from access.runtime import Kind, decide, load_org_view
    from bench.access.seed import (
        ADMITTED,
        APPS,
        OUTSIDER,
        POLICIES_PER_APP,
        VISITOR_IP,
        app_host,
        realistic_org,
        session_token,
    )
    from bench.common import bench_organisation

    _, actor, organisation = bench_organisation()
    apps = realistic_org(organisation, actor)
    target = apps[APPS // 2]
    host = app_host(APPS // 2)
    valid = session_token(organisation, target, ADMITTED)
    outsider = session_token(organisation, target, OUTSIDER)
    started = time.perf_counter()
    view = load_org_view(organisation.pk)
    load_ms = (time.perf_counter() - started) * 1000
    ip = ipaddress.ip_address(VISITOR_IP)

    def request(token: str | None) -> Callable[[], Any]:
        return lambda: decide(
            view,
            host=host,
            path="/dashboard",
            ip=ip,
            country="PT",
            cookie_token=token,
            client_id=None,
            client_secret=None,
        )

    # The benchmark is only worth its figures if each case decides what it is meant to.
    expected = {"admit": (valid, Kind.ADMIT), "deny": (outsider, Kind.DENY), "login": (None, Kind.LOGIN)}
    for name, (token, kind) in expected.items():
        got = request(token)().kind
        if got is not kind:
            raise SystemExit(f"bench/access: the {name} case decided {got}, not {kind}")
    admit = timed(request(valid), count)
    first = timed(request(valid), max(200, count // 50), before=view.verified.clear)
    deny = timed(request(outsider), count)
    login = timed(request(None), count)
    return {
        "apps": APPS,
        "policies_per_app": POLICIES_PER_APP,
        "view_load_ms": load_ms,
        "admit_cached": admit,
        "admit_first_verification": first,
        "deny_cached": deny,
        "login_no_cookie": login,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    print(json.dumps(measure(args.count)))


if __name__ == "__main__":
    main()
