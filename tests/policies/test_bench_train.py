"""`tape bench train`: the figures exist and hold together (never timed assertions). Tiny runs: the plumbing, not
what is learned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policies.bench import bench_tapes
from policies.bench_train import run_train_bench

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "info", "TAPE__SYNTH__TIGHT_SHARE": "1.0"}
KEYS = {"minutes_to_flow", "iterations_to_flow", "flow_pnl", "oracle_pnl", "final_pnl", "share_of_oracle",
        "train_env_sps", "env_steps", "iterations", "eval_every", "train_batch", "seed", "minutes_total", "eval_seconds",
        "baseline_seconds", "train_tapes", "heldout_tapes", "version", "curve"}


def check(out: dict, iterations: int, eval_every: int) -> None:
    """Every figure there, and the figures consistent with one another."""
    assert not KEYS - out.keys(), KEYS - out.keys()
    curve = out["curve"]
    assert [p["iteration"] for p in curve] == sorted({*range(eval_every, iterations + 1, eval_every), iterations})
    assert all(0 < p["minutes"] <= out["minutes_total"] for p in curve)
    assert [p["minutes"] for p in curve] == sorted(p["minutes"] for p in curve)
    assert out["final_pnl"] == curve[-1]["heldout_pnl"]
    reached = [p for p in curve if p["heldout_pnl"] >= out["flow_pnl"]]
    if reached:
        assert out["minutes_to_flow"] == reached[0]["minutes"] <= out["minutes_total"]
        assert out["iterations_to_flow"] == reached[0]["iteration"]
    else:
        assert out["minutes_to_flow"] is None and out["iterations_to_flow"] is None
    if out["oracle_pnl"] is not None and out["oracle_pnl"] > 0:
        assert out["share_of_oracle"] == pytest.approx(out["final_pnl"] / out["oracle_pnl"])
    else:
        assert out["share_of_oracle"] is None
    assert out["iterations"] == iterations and out["env_steps"] >= iterations * out["train_batch"]
    assert out["train_env_sps"] > 0 and 0 < out["eval_seconds"] < out["minutes_total"] * 60
    assert out["version"].startswith("ppo@")


def test_the_bench_measures_a_training_against_flow(ray_session, tmp_path):
    """Tapes without a fair-value sidecar: flow is measured, the oracle is not (no share of it)."""
    out = run_train_bench(bench_tapes(2, 600, seed=3), bench_tapes(1, 600, seed=4), iterations=2, eval_every=1,
                          train_batch=200, out=tmp_path / "models")
    check(out, 2, 1)
    assert out["oracle_pnl"] is None and out["share_of_oracle"] is None
    assert (tmp_path / "models" / out["version"] / "model.json").exists()


def test_tape_bench_train_json(tmp_path):
    """The command writes its own synthetic sessions (fair-value sidecars: the oracle plays) and trains staged."""
    done = subprocess.run([TAPE, "bench", "train", "--train-sessions", "1", "--heldout-sessions", "1", "--markets", "2",
                           "--duration", "600", "--iterations", "3", "--eval-every", "2", "--train-batch", "400",
                           "--json"], capture_output=True, text=True, timeout=300, env=ENV, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    check(out, 3, 2)
    assert out["oracle_pnl"] is not None and out["data_seed"] == 1 and out["markets"] == 2 and out["machine"]
    assert out["train_sessions"] == out["heldout_sessions"] == 1 and out["train_tapes"] == out["heldout_tapes"] == 2
    assert "iteration 3/3" in done.stderr and not list(tmp_path.iterdir())  # progress; nothing left behind


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """``tape ARGV`` in this process: (exit status, stdout, stderr)."""
    from runtime.cli import main

    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse: --help (0)
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(("args", "needle"), [
    (["--eval-every", "0"], "--iterations, --eval-every and --train-batch must be at least 1"),
    (["--data", "."], "--data and --heldout go together"),
    (["--markets", "0"], "--markets must be at least 1"),
    (["--data", "nowhere", "--heldout", "."], "--data nowhere: no such log"),
])
def test_bad_arguments_exit_2_naming_them(capsys, args, needle):
    status, _, err = run_main(capsys, "bench", "train", *args)
    assert status == 2 and needle in err, err


def test_help_says_what_is_timed(capsys):
    status, out, _ = run_main(capsys, "bench", "train", "--help")
    assert status == 0 and "minutes_to_flow" in out and "keys of --json" in out and "example:" in out


def test_the_benchmark_trains_the_roles_tape_train_trains_by_default():
    from policies.base import LEARNING
    from policies.bench_train import bench_config
    from runtime.cli import _parser
    from runtime.cli.rl import LEARNING_TEXT

    args = _parser().parse_args(["train", "--data", "somewhere"])
    assert tuple(args.roles.split(",")) == LEARNING == bench_config(["somewhere"]).roles
    assert ",".join(LEARNING) == LEARNING_TEXT
