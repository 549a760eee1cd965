"""``tape tune``: the search space as data (checked against the training config, errors naming file and key), and a
tiny real search on the local Ray instance whose best trial is saved as a model version with its search record."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from policies.bench import bench_tapes
from policies.registry import LATEST, MODEL_FILE, load_model
from policies.train import TrainConfig
from policies.tune import SEARCH_FILE, SpaceError, load_space, parse_space, trial_config, tune
from runtime.cli.tune import DEFAULT_SPACE

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}
ROLES_ARE = "(the roles are signal, sizing, entry, exit)"
TINY = {"iterations": 1, "train_batch": 200, "minibatch": 100, "epochs": 1, "envs_per_runner": 2, "hidden": [16]}


# --- the space ---------------------------------------------------------------------------------------------------
def test_the_shipped_space_parses_and_names_only_training_config_fields():
    space = load_space(DEFAULT_SPACE)
    fields = {f.name for f in msgspec.structs.fields(TrainConfig)}
    assert set(space.space) <= fields and set(space.base) <= fields
    assert {"lr", "hidden", "train_batch", "entropy", "lambda_", "schedule", "rewards"} <= set(space.space)


def test_a_draw_goes_over_the_base_table_by_table():
    config = trial_config({"iterations": 3, "env_config": {"lot": 500, "max_steps": 100}},
                          {"lr": 1e-4, "env_config": {"max_steps": 600}, "hidden": [32, 32]}, data=["d"])
    assert config.data == ("d",) and config.iterations == 3 and config.lr == 1e-4 and config.hidden == (32, 32)
    assert config.env_config == {"lot": 500, "max_steps": 600}
    config = trial_config({"rewards": {"abstain": 0.5}}, {"rewards": {"horizon_s": 60}}, data=["d"])
    assert (config.rewards.abstain, config.rewards.horizon_s) == (0.5, 60)


@pytest.mark.parametrize(("space", "message"), [
    ({"space": {"lrr": {"uniform": [0, 1]}}},
     "space.toml:space.lrr: unknown parameter 'lrr'; TrainConfig has: data, env, roles"),
    ({"space": {"roles": {"choice": [["signal", "timing"]]}}},
     f"space.toml:space.roles: choice 1: ['signal', 'timing']: unknown role 'timing' {ROLES_ARE}"),
    ({"base": {"roles": ["signal", "bogus"]}},
     f"space.toml:base.roles: ['signal', 'bogus']: unknown role 'bogus' {ROLES_ARE}"),
    ({"space": {"env_config": {"lott": {"choice": [1]}}}},
     "space.toml:space.env_config.lott: unknown parameter 'lott'; EnvConfig has: cash, curriculum"),
    ({"space": {"lr": 0.1}},
     "space.toml:space.lr: a distribution is a table {loguniform = [low, high]}, {uniform = [low, high]}, "
     "{randint = [low, high]} or {choice = [a, b, …]}; got 0.1 (fixed values go in [base])"),
    ({"space": {"lr": {"loguniform": [0, 1]}}},
     "space.toml:space.lr: loguniform takes [low, high] with low <= high and 0 < low, got [0, 1]"),
    ({"space": {"lr": {"uniform": [1]}}}, "space.toml:space.lr: uniform takes [low, high], two numbers, got [1]"),
    ({"space": {"epochs": {"randint": [1.5, 3]}}},
     "space.toml:space.epochs: randint takes [low, high], two whole numbers, got [1.5, 3]"),
    ({"space": {"lr": {"choice": []}}}, "space.toml:space.lr: choice takes a list of one or more values, got []"),
    ({"space": {"lr": {"choice": [1e-4, "fast"]}}},
     "space.toml:space.lr: choice 2: 'fast': Expected `float`, got `str` - at `$.lr`"),
    ({"space": {"hidden": {"choice": [[64], [0]]}}},
     "space.toml:space.hidden: choice 2: [0]: hidden layer sizes must be >= 1 and lr > 0"),
    ({"base": {"lr": {"uniform": [0, 1]}}},
     "space.toml:base.lr: [base] holds fixed values; put distributions in [space]"),
    ({"base": {"data": ["elsewhere"]}}, "space.toml:base.data: set by --data, not in the space file"),
    ({"space": {"iterations": {"choice": [1, 2]}}},
     "space.toml:space.iterations: not searched (the length of every trial: set it in [base] or with --iterations)"),
    ({"spaces": {}},
     "space.toml:spaces: unknown table; a search space has [base] (fixed settings) and [space] (what is searched)"),
    ({"base": {"frozen": "models/none"}}, "space.toml:base.frozen: 'models/none': models/none: not a model"),
    ({"space": {"schedule": {"choice": ["joint", "fancy"]}}},
     "space.toml:space.schedule: choice 2: 'fancy': unknown value 'fancy' (it takes joint, staged)"),
    ({"space": {"rewards": {"bogus": {"choice": [1]}}}},
     "space.toml:space.rewards.bogus: unknown parameter 'bogus'; rewards has: abstain, horizon_s, reference"),
    ({"space": {"rewards": {"abstain": {"uniform": [-1, 1]}}}},
     "space.toml:space.rewards.abstain: -1: rewards: horizon_s and reference must be > 0, abstain >= 0"),
    ({"space": {"heldout": {"choice": [["x"]]}}}, "space.toml:space.heldout: not searched (set by --heldout)"),
])
def test_a_space_naming_what_the_config_does_not_have_is_refused_naming_file_and_key(space, message):
    with pytest.raises(SpaceError) as caught:
        parse_space(space, "space.toml")
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_file_that_is_not_toml_is_refused_naming_it(tmp_path):
    (tmp_path / "bad.toml").write_text("[space]\nlr = {loguniform = [1e-5,\n")
    with pytest.raises(SpaceError, match=r"^.*bad\.toml: not TOML \("):
        load_space(tmp_path / "bad.toml")
    with pytest.raises(SpaceError, match=r"none\.toml: no such file$"):
        load_space(tmp_path / "none.toml")


def tape(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> Path:
    """Two synthetic sessions of 2 markets x 300 s: d1 to train on, d2 held out."""
    where = tmp_path_factory.mktemp("tune")
    for seed in (1, 2):
        done = subprocess.run([TAPE, "synth", "--sessions", "1", "--markets", "2", "--duration", "300", "--seed",
                               str(seed), "--log", str(where / f"d{seed}")], capture_output=True, text=True,
                              env={**ENV, "TAPE__SYNTH__TIGHT_SHARE": "1.0"}, timeout=120)
        assert done.returncode == 0, done.stderr
    return where


@pytest.mark.parametrize(("space", "args", "needle"), [
    ("[space]\nreward = { uniform = [0, 1] }\n", [],
     "tape tune: --space space.toml:space.reward: unknown parameter 'reward'; TrainConfig has:"),
    ("[space]\nroles = { choice = [['signal'], ['sizing', 'timing']] }\n", [],
     f"tape tune: --space space.toml:space.roles: choice 2: ['sizing', 'timing']: unknown role 'timing' {ROLES_ARE}"),
    ("[space]\nlr = { loguniform = [1e-5, 1e-3] }\n", ["--heldout", "d1"],
     "tape tune: --heldout: session synth-1-0000 is also in --data (1 shared): the score would not be held out"),
    ("[space]\n", ["--trials", "0"], "tape tune: --trials and --iterations must be >= 1"),
])
def test_bad_input_exits_2_naming_it_and_writes_nothing(sessions, tmp_path, space, args, needle):
    for d in ("d1", "d2"):
        shutil.copytree(sessions / d, tmp_path / d)
    (tmp_path / "space.toml").write_text(space)
    before = sorted(tmp_path.rglob("*"))
    done = tape("tune", "--data", "d1", "--heldout", "d2", "--space", "space.toml", "--out", "models/t", *args,
                cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_help_is_complete(tmp_path):
    done = tape("tune", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "usage: tape tune" in done.stdout and "examples:" in done.stdout
    assert "--time-budget-s" in done.stdout and "--space" in done.stdout


# --- a real search -----------------------------------------------------------------------------------------------
def test_a_tiny_search_saves_its_best_trial_as_a_version_with_its_search_record(ray_session, tmp_path):
    """2 trials of 2 tiny iterations, scored after each on a held-out session: both report twice (or one is stopped
    by ASHA after its first), the best finished one is saved under out with search.json, and its manifest's config
    is that trial's."""
    tapes, heldout = bench_tapes(2, 300, seed=3), bench_tapes(2, 300, seed=4)
    space = parse_space({"base": {**TINY, "iterations": 2},
                         "space": {"lr": {"loguniform": [1e-4, 1e-3]}, "hidden": {"choice": [[16], [8, 8]]}}},
                        "tiny.toml")
    lines: list[str] = []
    report = tune(space, ["synthetic"], tapes, ["heldout"], heldout, tmp_path / "out", trials=2, eval_every=1,
                  say=lines.append)
    assert report.version is not None and report.best is not None
    out = tmp_path / "out"
    assert (out / LATEST).read_text().strip() == report.version
    version = out / report.version
    manifest = json.loads((version / MODEL_FILE).read_text())
    record = json.loads((version / SEARCH_FILE).read_text())
    assert record["version"] == report.version and record["metric"] == "heldout_pnl"
    trials = {t["number"]: t for t in record["trials"]}
    assert sorted(trials) == [1, 2], lines
    best = trials[record["best"]]
    finished = [t for t in trials.values() if t["status"] == "finished"]
    assert best in finished and best["heldout_pnl"] == max(t["heldout_pnl"] for t in finished), record
    assert manifest["train"] == best["config"] and manifest["version"] == best["version"]
    assert best["config"]["lr"] == best["params"]["lr"] and best["config"]["heldout"] == ["heldout"]
    for t in trials.values():
        assert t["status"] in ("finished", "stopped"), (t, lines)
        assert [s["iteration"] for s in t["scores"]] == list(range(1, t["iterations"] + 1)), (t, lines)
    assert load_model(out).version == report.version  # loads and checks, as tape eval would
    assert (version / "training.png").read_bytes().startswith(b"\x89PNG")
    assert any("trial 1/2: iteration 1/2" in line for line in lines), lines
    assert not any("nan" in line for line in lines), lines
