"""`tape bench sim`: the matching-engine and order-flow-model figures are measured and printed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from runtime.venues.sim.bench import bench_engine, bench_model, engine_ops

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


def test_the_engine_stream_is_seeded_and_mixes_limits_cancels_and_takes():
    ops = engine_ops(3_000)
    assert ops == engine_ops(3_000)
    kinds = {op[0] for op in ops}
    assert kinds == {"gtc", "ioc", "cancel"}


def test_the_figures_are_rates_of_real_work():
    assert bench_engine(2_000) > 0
    events, rate = bench_model(2, 60.0)
    assert events > 4 and rate > 0  # at least activation, snapshot and settlement per market


def test_tape_bench_sim_prints_the_figures_as_json():
    done = subprocess.run([TAPE, "bench", "sim", "--ops", "3000", "--markets", "2", "--duration", "30", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["engine_ops"] == 3000 and figures["engine_ops_per_s"] > 0 and figures["model_events"] > 0
    assert figures["machine"]["cores"] >= 1


def test_tape_bench_sim_refuses_nonsense_sizes():
    done = subprocess.run([TAPE, "bench", "sim", "--ops", "0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--ops" in done.stderr
