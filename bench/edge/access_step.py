"""What Access adds to one proxied request, in-process and load-independent (issue 10): the edge's admission step
(`Gate.admit` with the organisation's view loaded, a valid session cookie), the origin's headers, the REQUEST frame,
and the connector's parse of that frame, for the hostname behind Access and for the same hostname without it.

    python -m bench.edge.access_step [--iterations 20000] [--callgrind]

Prints CPU µs per request (time.process_time; moves with the machine's load) and, with `--callgrind`, the
instructions per request counted by valgrind around the measured loop only (the same on a busy machine: the figure
to decide with). A throwaway data dir is migrated and seeded as bench/edge/seed.py does (`--access`)."""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, server_env

HOST = "app.bench.example"
SEED_PUBLIC_URL = "http://127.0.0.1:8000"  # the session token's `iss`, as bench/edge/run.py seeds it


def child_setup(data_dir: Path) -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bench.common import bench_organisation
    from bench.edge.seed import ZONE, protect
    from controlplane.services.zones import zone_create, zone_mark_verified

    _, actor, organisation = bench_organisation()
    zone_mark_verified(zone=zone_create(organisation=organisation, name=ZONE, actor=actor), actor=actor)
    cookie = protect(organisation, actor)
    (data_dir / "access-step.json").write_text(json.dumps({"org": str(organisation.pk), "cookie": cookie}))


def child_measure(data_dir: Path, which: str, iterations: int, callgrind: bool) -> None:
    import uuid

    from access.runtime import OrgView, load_org_view
    from connector import protocol
    from edge.admission import Admit, Gate
    from edge.app import origin_headers

    seeded = json.loads((data_dir / "access-step.json").read_text())
    org = uuid.UUID(seeded["org"])
    gate = Gate()
    gate.views[org] = load_org_view(org) if which == "access" else OrgView(organisation_id=org)
    cookie = b"CF_Authorization=" + seeded["cookie"].encode()

    def one() -> bytes:
        # A new scope and header values per request, as the server gives them (no hash or parse carried over).
        headers = [(b"host", HOST.encode()), (b"cookie", bytes(bytearray(cookie)))]
        scope = {"type": "http", "method": "GET", "scheme": "http", "path": "/1k.bin", "raw_path": b"/1k.bin"}
        scope.update({"query_string": b"", "client": ("127.0.0.1", 40000), "headers": headers})
        step = gate.admit(None, scope, org, HOST, "0123456789abcdef-edge")
        try:
            step.send(None)  # the view is loaded: admit() completes without awaiting
            raise RuntimeError("admit() awaited")
        except StopIteration as done:
            decision = done.value
        sent = origin_headers(scope, "0123456789abcdef-edge", websocket=False)
        if isinstance(decision, Admit):
            sent += decision.headers
        frame = protocol.request_frame(1, b"GET", b"http", HOST.encode(), b"/1k.bin", sent, end_stream=True)
        protocol.Request.parse(1, 0, frame[protocol.HEADER_SIZE :])
        return frame

    for _ in range(500):
        frame = one()
    if (b"cf-access-jwt-assertion" in frame) != (which == "access"):
        raise RuntimeError(f"{which}: the request was not decided as expected")
    pid = str(os.getpid())
    if callgrind:
        subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    started = time.process_time()
    for _ in range(iterations):
        one()
    used = time.process_time() - started
    if callgrind:
        subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    print(json.dumps({"us": used / iterations * 1e6, "frame": len(frame)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import django

        django.setup()
        data_dir = Path(os.environ["DATA_DIR"])
        if args.child[0] == "setup":
            child_setup(data_dir)
        else:
            child_measure(data_dir, args.child[1], args.iterations, args.callgrind)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-access-step-") as work:
        data_dir = Path(work)
        env = {**server_env(data_dir, 8000), "PUBLIC_URL": SEED_PUBLIC_URL}
        me = [sys.executable, "-m", "bench.edge.access_step"]
        subprocess.run([*me, "--child", "setup"], cwd=ROOT, env=env, check=True)
        rows = {}
        for which in ("access", "plain"):
            cmd = [*me, f"--iterations={args.iterations}", "--child", "measure", which]
            if args.callgrind:
                out = data_dir / f"callgrind.{which}"
                valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p"]
                cmd = [*valgrind, *cmd, "--callgrind"]
            result = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            rows[which] = json.loads(result.stdout.strip().splitlines()[-1])
            if args.callgrind:  # the dump asked for after the loop (".1"), not the one at exit
                (dump,) = glob.glob(f"{out}.*.1")
                totals = [line for line in Path(dump).read_text().splitlines() if line.startswith("summary:")]
                rows[which]["ir"] = int(totals[0].split()[1]) / args.iterations
    print(f"per request ({args.iterations:,}): the edge's Access step + headers + frame + the connector's parse")
    for which, row in rows.items():
        ir = f", {row['ir']:,.0f} instructions" if "ir" in row else ""
        print(f"  {which:7s} {row['us']:6.2f} µs CPU{ir} (REQUEST frame {row['frame']} bytes)")
    if "ir" in rows["access"]:
        added = rows["access"]["ir"] - rows["plain"]["ir"]
        print(f"  Access adds {added:,.0f} instructions ({added / rows['plain']['ir']:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
