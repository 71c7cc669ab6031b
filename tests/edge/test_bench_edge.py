"""bench/edge's plumbing: wrk's output is read right, targets are judged right, the relay scenario runs or is skipped
as its flag and the services say, and (slow, needs wrk and nginx) one short run of the edge scenario goes end to end
with the real processes and stops them all."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from bench.edge import run
from bench.edge.run import Bench, Load, Result, cpu_cell, find_tool, parse_args, parse_wrk, targets

WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:8092/1k.bin
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.91ms    1.02ms  21.00ms   90.00%
    Req/Sec    10.20k   300.00    10.60k    80.00%
  Latency Distribution
     50%  812.00us
     75%    5.10ms
     90%    5.60ms
     99%    1.20s
  20400 requests in 2.00s, 24.50MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  10200.50
Transfer/sec:     12.25MB
"""


def test_wrk_output_is_parsed_with_errors_counted():
    load = parse_wrk(WRK_OUTPUT)
    assert load.rps == 10200.50 and load.requests == 20400
    assert load.p50 == pytest.approx(812e-6) and load.p99 == pytest.approx(1.2)
    assert load.errors == 10  # 3 socket errors + 7 non-2xx: a fast run of errors is no result


def test_targets_pass_and_fail_next_to_the_figures():
    direct = Result("direct", c50=Load(rps=40_000), c1=Load(rps=9000, p50=0.0001))
    edge = Result(
        "edge",
        c50=Load(rps=10_500),
        c1=Load(rps=1800, p50=0.0005),
        down=250.0,
        up=150.0,
        rss={"edge, 1 GiB down": (90.0, 100.0), "connector, 1 GiB up": (30.0, 100.0)},
    )
    lines = targets([direct, edge, Result("relay", note="pending")])
    assert lines[0].startswith("PASS") and "10,500 req/s" in lines[0]
    assert lines[1].startswith("PASS") and "0.40 ms" in lines[1]
    assert lines[2].startswith("PASS") and "download" in lines[2]
    assert lines[3].startswith("FAIL") and "upload" in lines[3]
    assert lines[4].startswith("PASS") and lines[5].startswith("FAIL") and "(+70)" in lines[5]
    assert lines[6].startswith("—") and "pending" in lines[6]
    edge.c50 = Load(rps=12_000, errors=3)
    assert targets([edge])[0].startswith("FAIL")


def test_the_c50_target_is_also_judged_against_the_prototype_measured_in_the_same_run():
    """The machine's speed moves the absolute figure; the ratio to the minimal prototype (10,000 / 7,650 on the
    baselines' machine) does not."""
    prototype = Result("prototype", c50=Load(rps=5_000), c1=Load(rps=1500, p50=0.0006))
    edge = Result("edge", c50=Load(rps=7_000))
    lines = targets([prototype, edge])
    assert lines[0].startswith("FAIL") and "7,000 req/s" in lines[0]
    assert lines[1].startswith("PASS") and "1.40x" in lines[1] and "10,710 req/s at the baselines' speed" in lines[1]
    edge.c50 = Load(rps=6_000)
    assert targets([prototype, edge])[1].startswith("FAIL")  # 1.20x
    prototype.c50 = Load(rps=4_000, errors=2)
    assert targets([prototype, edge])[1].startswith("FAIL")  # a prototype run with errors is no yardstick
    assert len(targets([edge])) == 1  # no prototype measured: no ratio


def test_the_relay_target_and_its_cpu_cell():
    relay = Result("relay", c50=Load(rps=2500, edge_cpu_us=100, connector_cpu_us=50, peer_cpu_us=60))
    (line,) = targets([relay])
    assert line.startswith("PASS") and "2,500 req/s" in line and "connection on the other one" in line
    assert cpu_cell(relay.c50) == "100 µs B + 60 µs A + 50 µs"
    relay.c50 = Load(rps=1500)
    assert targets([relay])[0].startswith("FAIL")
    assert targets([Result("relay", error="RuntimeError: B never answered 200")])[0].startswith("FAIL")
    (skipped,) = targets([Result("relay", note="skipped: Redis is not reachable")])
    assert skipped.startswith("—") and "skipped: Redis" in skipped


@pytest.mark.parametrize(
    ("argv", "problem", "expected"),
    [
        ([], "", ""),
        (["--relay=off"], "", "skipped (--relay=off)"),
        (["--quick"], "", "skipped in --quick"),
        (["--quick", "--scenario=relay"], "", ""),
        (["--quick", "--relay=on"], "", ""),
        ([], "Redis is not reachable at redis://127.0.0.1:6379/11", "skipped: Redis is not reachable"),
        (["--relay=on"], "Redis is not reachable at redis://127.0.0.1:6379/11", RuntimeError),
    ],
)
def test_the_relay_scenario_runs_or_is_skipped_as_the_flag_and_the_services_say(monkeypatch, argv, problem, expected):
    monkeypatch.setattr(run, "relay_services_problem", lambda: problem)
    bench = Bench.__new__(Bench)  # no work dir: only the decision is exercised
    bench.args = parse_args(argv)
    assert "relay" in bench.args.scenario
    if expected is RuntimeError:
        with pytest.raises(RuntimeError, match="Redis"):
            bench.relay_skip_reason()
    elif expected:
        assert bench.relay_skip_reason().startswith(expected)
    else:
        assert bench.relay_skip_reason() == ""


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("wrk") and find_tool("nginx")), reason="needs wrk and nginx (make bench-edge)")
def test_a_short_run_of_the_edge_scenario_goes_end_to_end(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "bench.edge",
        "--scenario=prototype",
        "--scenario=edge",
        "--duration=1",
        "--rounds=1",
        "--bulk-rounds=1",
        "--rss-size=32",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| edge " in done.stdout and "RSS growth" in done.stdout and "the minimal prototype" in done.stdout
    for name in ("prototype", "edge"):  # the prototype measured with the edge, interleaved
        row = next(line for line in done.stdout.splitlines() if line.startswith(f"| {name} "))
        assert row.rstrip(" |").endswith("0")  # no socket errors, no non-2xx answers
