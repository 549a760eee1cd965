"""`tape bench env`: the figures exist and mean what they say (never timed assertions)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from policies.bench import bench_tapes, measure_env, measure_multi, measure_rllib

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


def test_environment_rates_are_measured():
    tapes = bench_tapes(2, 600)
    single, multi = measure_env(tapes, 0.3), measure_multi(tapes, 0.3)
    for figures in (single, multi):
        assert figures["sps"] > 0 and figures["steps"] > 0


def test_rllib_sampling_is_measured_on_both_envs(ray_session):
    figures = measure_rllib(bench_tapes(2, 600), steps=400)
    assert figures["rllib_sps_trading"] > 0 and figures["rllib_sps_trivial"] > 0
    assert figures["rllib_overhead"] == 1 - figures["rllib_sps_trading"] / figures["rllib_sps_trivial"]


def test_tape_bench_env_json():
    done = subprocess.run([TAPE, "bench", "env", "--no-rllib", "--seconds", "0.3", "--json"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "TAPE__LOGGING__FORMAT": "json"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["env_sps"] > 0 and out["ma_env_sps"] > 0 and "rllib_sps_trading" not in out and out["machine"]
