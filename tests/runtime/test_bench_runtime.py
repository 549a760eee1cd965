"""`tape bench runtime`: its measurements run on the real runtime (figures are printed, never asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from policies.registry import PROVIDER
from runtime.bench import measure_replay, measure_throughput

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


async def test_throughput_runs_every_node_over_the_synthetic_events():
    figures = await measure_throughput(4, 3_000, batch=500, runner="inprocess", policies=PROVIDER)
    assert figures["inputs"] == 2_500 and figures["records"] >= 2_500 and figures["eps"] > 0
    assert figures["nodes"] == 8  # 4 books, cash, execution, fills, orchestrator


async def test_throughput_shards_the_books_of_many_markets():
    figures = await measure_throughput(40, 2_000, batch=500, runner="inprocess", policies=PROVIDER)
    assert figures["nodes"] == 12


async def test_replay_verifies_the_session_it_times():
    figures = await measure_replay(4, 2_000, batch=500, policies=PROVIDER)
    assert figures["records"] >= 2_000 and figures["eps"] > 0


def test_tape_bench_runtime_has_complete_help():
    done = subprocess.run([TAPE, "bench", "runtime", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for key in ("latency_p50_ms", "throughput_eps_300", "replay_eps", "example"):
        assert key in done.stdout


def test_tape_bench_runtime_refuses_nonsense_sizes():
    done = subprocess.run([TAPE, "bench", "runtime", "--events", "10"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--events" in done.stderr
