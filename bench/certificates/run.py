"""Origin CA benchmark (`python -m bench.certificates`): issuing jobs per second with ONE Celery worker (solo pool,
concurrency 1) for RSA 2048 and P-256, and the time from "Create" to the PEM being available, p50/p95.

Topology: a fresh SQLite data dir, a Redis broker (`--redis-url`, a database this benchmark may flush), one
`celery worker --pool solo`, and daphne serving the API. Three measurements per key type:

* **jobs/s**: N certificates with a generated key (key generation + CSR + signing, the UI's default mode) are
  queued at once through the service; the clock runs from the first queued job to the last one issued (the
  database is polled every 20 ms).
* **Create → PEM, generated key**: one at a time, `certificate_create` (what the UI's Create button runs) until the
  row is issued (polled every 5 ms): the PEM is on the page from then on.
* **Create → PEM, API**: one at a time, the official SDK's `origin_ca_certificates.create` against daphne with a CSR
  made beforehand; POST waits for the job (CERTIFICATE_ISSUE_WAIT_SECONDS) and answers with the PEM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import ROOT, server_env


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="broker; this database is flushed")
    parser.add_argument("--jobs-rsa", type=int, default=100)
    parser.add_argument("--jobs-ecc", type=int, default=300)
    parser.add_argument("--samples", type=int, default=40, help="sequential creates per key type for the latencies")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-certificates-"))
    port = _free_port()
    env = {**server_env(data_dir, port), "REDIS_URL": args.redis_url}
    os.environ.update(env)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)  # noqa: S603

    import django

    django.setup()
    from bench.common import bench_organisation
    from certificates import ca
    from certificates.logic import pki
    from certificates.models import OriginCertificate
    from certificates.services import certificate_create
    from controlplane.services.zones import zone_create, zone_mark_verified
    from tests.conftest import make_token

    _, actor, organisation = bench_organisation()
    zone = zone_mark_verified(
        zone=zone_create(organisation=organisation, name="bench.example", actor=actor), actor=actor
    )
    ca.ensure_roots()  # root creation is a one-off; not part of any figure
    token = make_token(organisation, {"certificates": "edit"})

    logs = data_dir / "logs"
    logs.mkdir()
    worker = subprocess.Popen(  # noqa: S603
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "controlplane",
            "worker",
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(logs / "worker.log", "wb"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    server = subprocess.Popen(  # noqa: S603
        [
            str(Path(sys.executable).parent / "daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "controlplane.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(logs / "daphne.log", "wb"),
        stderr=subprocess.STDOUT,  # noqa: SIM115
    )
    results: dict[str, dict[str, float]] = {}
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz")
        rows = OriginCertificate.objects.for_org(organisation)

        def wait_issued(ids: list[str], poll: float) -> None:
            deadline = time.monotonic() + 600
            while rows.filter(pk__in=ids, status="pending").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jobs still pending after 600 s; see {logs / 'worker.log'}")
                time.sleep(poll)
            failed = rows.filter(pk__in=ids, status="failed").count()
            if failed:
                raise RuntimeError(f"{failed} jobs failed; see {logs / 'worker.log'}")

        # Warm the worker (imports, first database connection) so the first figure is not a cold start.
        warm = certificate_create(
            organisation=organisation, actor=actor, hostnames=[zone.name], request_type="origin-ecc"
        )
        wait_issued([warm.id], 0.02)

        import cloudflare

        cf = cloudflare.Cloudflare(api_token=token, base_url=f"http://127.0.0.1:{port}/client/v4", max_retries=0)
        for request_type in ("origin-rsa", "origin-ecc"):  # warm daphne and the worker's root keys too
            key_type = "rsa" if request_type == "origin-rsa" else "ecc"
            csr = pki.build_csr(pki.generate_key(key_type), [zone.name])
            cf.origin_ca_certificates.create(csr=csr, hostnames=[zone.name], request_type=request_type)
        for label, request_type, jobs in (
            ("RSA 2048", "origin-rsa", args.jobs_rsa),
            ("P-256", "origin-ecc", args.jobs_ecc),
        ):
            started = time.monotonic()
            ids = [
                certificate_create(
                    organisation=organisation, actor=actor, hostnames=[f"j{i}.{zone.name}"], request_type=request_type
                ).id
                for i in range(jobs)
            ]
            wait_issued(ids, 0.02)
            throughput = jobs / (time.monotonic() - started)

            generated = []
            for i in range(args.samples):
                t0 = time.monotonic()
                cert = certificate_create(
                    organisation=organisation, actor=actor, hostnames=[f"g{i}.{zone.name}"], request_type=request_type
                )
                wait_issued([cert.id], 0.005)
                generated.append(time.monotonic() - t0)

            key_type = "rsa" if request_type == "origin-rsa" else "ecc"
            csrs = [pki.build_csr(pki.generate_key(key_type), [f"a{i}.{zone.name}"]) for i in range(args.samples)]
            api = []
            for i, csr in enumerate(csrs):
                t0 = time.monotonic()
                created = cf.origin_ca_certificates.create(
                    csr=csr, hostnames=[f"a{i}.{zone.name}"], request_type=request_type
                )
                assert created.certificate, "the API answered before the job finished"
                api.append(time.monotonic() - t0)
            results[label] = {
                "jobs": jobs,
                "jobs_per_s": round(throughput, 1),
                "generated_p50_ms": round(statistics.median(generated) * 1000, 1),
                "generated_p95_ms": round(_p(generated, 0.95) * 1000, 1),
                "api_p50_ms": round(statistics.median(api) * 1000, 1),
                "api_p95_ms": round(_p(api, 0.95) * 1000, 1),
            }
            print(f"{label}: {json.dumps(results[label])}", flush=True)
    finally:
        for process in (server, worker):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    print()
    print("| key | jobs/s (1 worker) | Create→PEM p50 / p95, generated key | Create→PEM p50 / p95, API (SDK, CSR) |")
    print("|---|---|---|---|")
    for label, r in results.items():
        print(
            f"| {label} | {r['jobs_per_s']} ({r['jobs']} jobs) | {r['generated_p50_ms']} / {r['generated_p95_ms']} ms "
            f"| {r['api_p50_ms']} / {r['api_p95_ms']} ms |"
        )
