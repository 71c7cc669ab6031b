"""Loaded into the server process by `python -m bench.connectors --gc-log` (through PYTHONPATH): records every
full (generation 2) garbage collection, when it ran and how long it paused the process, into $BENCH_GC_LOG."""

import gc
import os
import time

_path = os.environ.get("BENCH_GC_LOG")
if _path:
    _started: list[float] = []
    _t0 = time.monotonic()

    def _record(phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            _started[:] = [time.perf_counter()]
        elif _started:
            with open(_path, "a") as log:
                log.write(f"{time.monotonic():.3f} {time.perf_counter() - _started[0]:.4f} {info['collected']}\n")

    gc.callbacks.append(_record)
