"""`tape bench venue`: the codec benchmark runs, prints its figures, and decodes its whole mix without error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from runtime.venues.kalshi.bench import codec_frames, run_codec_bench

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


def test_the_benchmark_mix_is_mostly_deltas_with_some_trades_and_snapshots():
    _, mix = codec_frames(5_000)
    assert sum(mix.values()) == 5_000
    assert mix["orderbook_delta"] > 0.8 * 5_000 and mix["trade"] > 0 and mix["orderbook_snapshot"] == 16 + 20


def test_the_benchmark_decodes_every_frame_into_one_event():
    result = run_codec_bench(2_000, repeat=1)
    assert (result["events"], result["malformed"]) == (2_000, 0)
    assert result["codec_decode_mps"] > 0  # type: ignore[operator]


def test_tape_bench_venue_prints_the_figures_as_json():
    done = subprocess.run([TAPE, "bench", "venue", "--messages", "3000", "--repeat", "1", "--server-seconds", "0.5",
                           "--rest-seconds", "0.5", "--json"], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "TAPE__LOGGING__FORMAT": "json"})
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["codec_decode_mps"] > 0 and figures["messages"] == 3000 and figures["server_mps"] > 0
    assert figures["rest_rps"] > 0 and figures["rest_requests"] > 0  # signed requests, every one answered
    assert figures["machine"]["cores"] >= 1


def test_tape_bench_venue_has_complete_help():
    done = subprocess.run([TAPE, "bench", "venue", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "codec_decode_mps" in done.stdout and "server_mps" in done.stdout
    assert "rest_rps" in done.stdout and "--rest-seconds" in done.stdout
    assert "example" in done.stdout
