"""bench/connectors' yardstick and report: the bare fan-out runs against real server processes (uvicorn and daphne,
as the benchmark serves them) with a small fleet and gives sane figures; the report states the targets, absolute
and as ratios to the yardstick; and (slow) one short run of the whole benchmark prints them all."""

from __future__ import annotations

import pytest

from bench.connectors import run
from bench.connectors.report import LATENCY_TARGET, RATIO_TARGET, table, targets
from bench.connectors.scenario import Result
from bench.connectors.yardstick import Yardstick, yardstick_env


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_the_yardstick_fans_out_to_every_socket(kind, tmp_path):
    yardstick = Yardstick(kind, n=20, ha=4, workers=1, log_dir=tmp_path, env=yardstick_env())
    try:
        assert await yardstick.start(timeout=30) == 20
        for _ in range(3):
            elapsed = await yardstick.round(timeout=10)
            assert elapsed is not None and 0 < elapsed < 10
    finally:
        await yardstick.stop()
    assert len(yardstick.times) == 3 and yardstick.missing == 0
    assert len(yardstick.cpu) == 3 and all(cpu >= 0 for cpu in yardstick.cpu)
    assert yardstick.server.proc.poll() is not None  # stopped


def test_the_report_gives_ratios_to_the_yardstick_and_states_the_targets():
    result = Result("uvicorn", 1000, connected=1000, connect_all=0.4, rss=150.0, idle_cpu=1.5)
    result.config = [0.10, 0.12, 0.20]
    result.status_connect, result.status_disconnect = [0.09, 0.11], [0.10, 0.30]
    result.yardstick = [0.04, 0.05, 0.05]
    result.config_cpu, result.status_cpu, result.yardstick_cpu = [0.06], [0.05], [0.02]
    result.yardstick_client_cpu = [0.03]
    lines = targets([result])
    assert lines[0] == (
        "uvicorn N=1,000: config p99 < 250 ms (quiet machine) ok, status p99 < 250 ms (quiet machine) MISSED"
    )
    assert "p50 50 ms p99 50 ms" in lines[1]
    assert "config→all acked p99 200 ms = 4.0x yardstick" in lines[1]
    assert f"(target ≤ {RATIO_TARGET}x) " + ("ok" if 4.0 <= RATIO_TARGET else "MISSED") in lines[1]
    assert "status page p99 300 ms = 6.0x yardstick" in lines[1] and lines[1].endswith("MISSED")
    assert "per config push 60 ms = 3.0x the yardstick server's per fan-out (20 ms; its fleet's 30 ms)" in lines[2]
    assert lines[2].endswith("per status connect + disconnect 50 ms")
    assert "| 50 / 50 " in table([result], run.parse_args(["--quick"]))
    assert LATENCY_TARGET == 0.25
    # No yardstick (--no-yardstick): the absolute targets only.
    result.yardstick = []
    assert len(targets([result])) == 1


@pytest.mark.slow
def test_one_short_run_prints_the_figures_and_the_yardstick(capsys):
    code = run.main(
        ["--quick", "--n", "40", "--server", "uvicorn", "--idle", "1", "--settle", "0.5", "--rounds", "3"]
        + ["--pause", "0.05"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "yardstick p50/p99 (ms)" in out
    [ratios] = [line for line in out.splitlines() if line.startswith("uvicorn N=40: yardstick")]
    assert "x yardstick" in ratios and "—" not in ratios  # every figure was measured
    assert "config p99 < 250 ms (quiet machine)" in out
