"""Training with RLlib, the model registry, hot reload in a paper session, evaluation, and the commands.

Real parts: RLlib PPO on the local Ray instance, checkpoints on disk, the local exchange on loopback. The models
are tiny (two small iterations): these tests check the plumbing and the guarantees (same seed, same weights;
a checked checkpoint; the replay loads the same model at the same seq), not what is learned.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from policies.base import OBSERVATION_NAMES, ROLES
from policies.bench import bench_tapes
from policies.env import EnvConfig, TradingEnv
from policies.evaluate import evaluate
from policies.registry import (
    LATEST,
    MODEL_FILE,
    PROVIDER,
    ModelError,
    ModelSource,
    load_model,
    load_policies,
    model_events,
)
from policies.train import TrainConfig, TrainReport, episode_return, format_return, iteration_line, train
from replay.bench import TIGHT
from replay.verify import verify
from runtime.events import ModelLoaded, PolicyDecided
from runtime.ids import new_session_id
from runtime.log import SessionMeta, create_log, open_log
from runtime.paper import PaperSession
from runtime.topology import SessionSpec
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from runtime.venues.sim.session import EPOCH_NS

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}
OLD_MODEL = Path(__file__).parent / "models" / "ppo@7abd83a9253d"
TINY = {"iterations": 2, "train_batch": 400, "minibatch": 200, "epochs": 1, "hidden": (16,)}


def tiny(seed: int, **kw) -> TrainConfig:
    return TrainConfig(data=("synthetic",), seed=seed, **{**TINY, **kw})


@pytest.fixture(scope="module")
def models(tmp_path_factory, ray_session):
    """A registry with two versions of a roles model (seeds 1 then 2: latest = v2), and a single-agent model."""
    root = tmp_path_factory.mktemp("models")
    tapes = bench_tapes(4, 600)
    v1 = train(tiny(1), root / "roles", tapes=tapes)
    v1_dir = root / "roles" / v1.version
    v2 = train(tiny(2, roles=("signal", "exit")), root / "roles", tapes=tapes)
    single = train(tiny(1, env="single"), root / "single", tapes=tapes)
    return {"root": root, "tapes": tapes, "v1": v1, "v1_dir": v1_dir, "v2": v2, "single": single}


def test_an_iteration_in_which_no_episode_ended_shows_a_dash_never_nan():
    """RLlib reports NaN (or nothing) as the mean return of an iteration in which no episode ended: the progress
    line shows ``-``, the report holds None, and its JSON says null (NaN is not JSON)."""
    nan = float("nan")
    none_ended = {"episode_return_mean": nan, "module_episode_returns_mean": {"signal": nan, "exit": nan}}
    ret, per = episode_return(none_ended, "roles")
    assert ret is None and per == {"signal": None, "exit": None}
    assert iteration_line(3, 30, 12_000, ret, per, 41.6) == (
        "iteration 3/30: 12,000 env steps, episode return - (exit=- signal=-), 42 s")
    assert episode_return({}, "single") == (None, {})
    assert iteration_line(1, 2, 400, None, {}, 0.2) == "iteration 1/2: 400 env steps, episode return -, 0 s"
    assert format_return(nan) == "-" and format_return(None) == "-" and format_return(-0.5) == "-0.500"

    some_ended = {"module_episode_returns_mean": {"signal": 1.5, "sizing": nan, "exit": 0.5}}
    ret, per = episode_return(some_ended, "roles")
    assert ret == 1.0
    assert iteration_line(4, 30, 16_000, ret, per, 55.0) == (
        "iteration 4/30: 16,000 env steps, episode return +1.000 (exit=+0.50 signal=+1.50 sizing=-), 55 s")
    assert episode_return({"episode_return_mean": 2.25}, "single") == (2.25, {})

    report = TrainReport(out="m", version="ppo@x", iterations=2, env_steps=800, seconds=1.0, returns=[None, 1.0],
                         device="cpu")
    text = json.dumps(msgspec.to_builtins(report))  # as tape train --json prints it
    assert "NaN" not in text and json.loads(text)["returns"] == [None, 1.0]


def test_the_same_seed_on_cpu_gives_the_same_weights(models, tmp_path):
    again = train(tiny(1), tmp_path / "again", tapes=models["tapes"])
    assert again.version == models["v1"].version and again.device == "cpu"
    assert models["v2"].version != models["v1"].version
    assert len(models["v1"].returns) == 2 and models["v1"].env_steps >= 800


def test_a_remote_learner_saves_a_model_that_loads_and_checks(models, tmp_path):
    """--num-learners 1 (the cluster set-up): the weights come back from the learner actor and hash alike."""
    report = train(tiny(1, num_learners=1), tmp_path / "remote", tapes=models["tapes"])
    model = load_model(tmp_path / "remote")
    assert model.version == report.version and report.device == "cpu"
    assert set(model.policies()) == {"signal", "sizing", "entry", "exit"}


def test_a_version_is_saved_with_its_manifest_and_latest_names_the_newest(models):
    root = models["root"] / "roles"
    assert (root / LATEST).read_text().strip() == models["v2"].version
    manifest = json.loads((models["v1_dir"] / MODEL_FILE).read_text())
    assert manifest["version"] == models["v1"].version and manifest["hash"].startswith(manifest["version"][4:])
    assert manifest["kind"] == "roles" and manifest["roles"] == ["signal", "sizing", "entry", "exit"]
    assert manifest["data"]["sessions"] == ["synth-3"] and manifest["data"]["tapes"] == 4
    assert manifest["train"]["seed"] == 1 and manifest["software"]["ray"]
    for path in manifest["modules"].values():
        assert (models["v1_dir"] / path).is_dir()
    # what inference needs besides the weights: the layouts, the scaling fitted on the data, the masks
    assert manifest["format"] == 2 and manifest["masked"] is True
    for role in ("signal", "sizing", "entry", "exit"):
        assert manifest["observations"][role] == list(OBSERVATION_NAMES[role])
        assert manifest["scaling"][role]["names"] == list(OBSERVATION_NAMES[role])
        assert min(manifest["scaling"][role]["scale"]) > 0
    history = json.loads((models["v1_dir"] / "history.json").read_text())
    assert [h["iteration"] for h in history] == [1, 2]
    assert set(history[0]["returns"]) == {"signal", "sizing", "entry", "exit"} and history[0]["heldout_pnl"] is None


def test_the_scaling_is_covered_by_the_hash(models, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(models["v1_dir"], copy)
    manifest = json.loads((copy / MODEL_FILE).read_text())
    manifest["scaling"]["signal"]["center"][3] += 0.01
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="do not match the manifest's hash"):
        load_model(copy)


def test_a_model_whose_feature_layout_is_not_the_codes_is_refused_naming_where(models, tmp_path):
    """A model trained on another observation layout than this code's: a clear error naming the module, the
    position and both names (before the hash), and exit 2 from the commands that take models."""
    copy = tmp_path / "other"
    shutil.copytree(models["v1_dir"], copy)
    manifest = json.loads((copy / MODEL_FILE).read_text())
    manifest["observations"]["exit"][19] = "signed_flow"
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    message = ("the exit module's observation layout does not match this code's: 27 features against 27, first "
               "difference at position 19: the model has 'signed_flow', the code 'signed_volume' (retrain it)")
    with pytest.raises(ModelError, match=re.escape(message)):
        load_model(copy)
    manifest["observations"]["exit"][19] = "signed_volume"
    manifest["scaling"]["sizing"]["names"] = manifest["scaling"]["sizing"]["names"][:-1]
    manifest["scaling"]["sizing"]["center"] = manifest["scaling"]["sizing"]["center"][:-1]
    manifest["scaling"]["sizing"]["scale"] = manifest["scaling"]["sizing"]["scale"][:-1]
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="the sizing module's scaling is for another layout"):
        load_model(copy)
    for command in (["eval", "--data", ".", "--policies", str(copy)], ["train", "--data", ".", "--frozen", str(copy)]):
        done = tape(*command, cwd=tmp_path)
        assert done.returncode == 2 and "the sizing module's scaling is for another layout" in done.stderr, done.stderr


async def test_a_model_saved_before_scaling_and_masking_still_loads_and_replays(tmp_path):
    """A model version as the code before scaling and masking saved it (format 1: tests/policies/models, trained by
    that code) loads unscaled and unmasked, trades in a session through its ModelLoaded events, and the session
    replays."""
    from policies.episode import Episode
    from runtime.sequencer import InProcessRunner, Sequencer
    from runtime.topology import topology

    model = load_model(OLD_MODEL)
    assert model.manifest.format == 1 and not model.manifest.masked and not model.manifest.scaling
    tape = bench_tapes(2, 600)[1]
    episode = Episode(tape, load_policies("rule"), cash=10**9)
    inputs = list(episode.inputs())
    log = await create_log(tmp_path, SessionMeta(session_id="old", mode="paper"))
    sequencer = Sequencer(log, InProcessRunner(topology(episode.spec, PROVIDER)))
    await sequencer.submit(inputs[:2])
    await sequencer.submit([(inputs[0][0], e) for e in model_events(OLD_MODEL)])
    for entry in inputs[2:]:
        await sequencer.submit([entry])
    await log.close()
    async with await open_log(tmp_path / "old") as written:
        records = [r async for batch in written.read() for r in batch]
        report = await verify(written, policies=PROVIDER)
    assert report.ok, report.divergence
    assert any(type(r.event) is PolicyDecided and r.event.version == model.version for r in records)


def test_staged_training_trains_the_roles_in_turn_and_records_its_history(models, tmp_path):
    """--schedule staged: the signal alone, then entry and exit, then sizing, each stage from the weights the one
    before left; the history names the roles acting in each iteration and the held-out PnL every K iterations."""
    from policies.train import stages

    config = tiny(4, schedule="staged", iterations=3, eval_every=2)
    assert stages(config) == [(1, ("signal",), ("signal",)), (1, ("signal", "entry", "exit"), ("entry", "exit")),
                              (1, ("signal", "sizing", "entry", "exit"), ("sizing",))]
    assert [n for n, _, _ in stages(tiny(4, iterations=30))] == [12, 12, 6]  # staged is the default
    assert stages(tiny(4, iterations=2)) == [(2, ROLES, ROLES)]  # fewer iterations than stages: jointly
    assert stages(tiny(4, iterations=30, schedule="joint")) == [(30, ROLES, ROLES)]
    report = train(config, tmp_path / "staged", tapes=models["tapes"], heldout=models["tapes"][:1])
    assert [set(h["returns"]) for h in report.history] == [
        {"signal"}, {"signal", "entry", "exit"}, {"signal", "sizing", "entry", "exit"}]
    assert [h["heldout_pnl"] is None for h in report.history] == [True, False, False]
    model = load_model(tmp_path / "staged")
    assert {p.version for p in model.policies().values()} == {report.version}
    saved = json.loads((tmp_path / "staged" / report.version / "history.json").read_text())
    assert saved == json.loads(json.dumps(report.history))
    assert (tmp_path / "staged" / report.version / "training.png").read_bytes().startswith(b"\x89PNG")


def test_keep_best_saves_the_policies_of_the_best_evaluation_with_the_whole_history(models, tmp_path):
    """--keep best: the version saved is the policies at the evaluation whose held-out PnL was highest (the first of
    equals), a stage's model its acting roles learned and the others the rules; played again on those sessions it
    makes that PnL; the history is the whole run's; nothing set aside is left in the registry."""
    from policies.evaluate import evaluate_one

    heldout = models["tapes"][:2]
    config = tiny(5, schedule="staged", iterations=3, eval_every=1, keep="best")
    report = train(config, tmp_path / "best", tapes=models["tapes"], heldout=heldout)
    pnls = [h["heldout_pnl"] for h in report.history]
    assert len(pnls) == 3 and None not in pnls
    assert report.kept_iteration == pnls.index(max(pnls)) + 1
    model = load_model(tmp_path / "best")
    assert model.version == report.version
    learned = {r for r, p in model.policies().items() if p.version == report.version}
    assert learned == set(report.history[report.kept_iteration - 1]["returns"])  # the roles acting then
    assert evaluate_one("kept", model.policies(), heldout, cash=1_000 * 1_000_000).pnl == max(pnls)
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == [LATEST, report.version]
    saved = json.loads((tmp_path / "best" / report.version / "history.json").read_text())
    assert saved == json.loads(json.dumps(report.history))
    with pytest.raises(subprocess.CalledProcessError) as refused:
        subprocess.run([TAPE, "train", "--data", str(tmp_path), "--keep", "best", "--out", str(tmp_path / "no")],
                       check=True, capture_output=True, text=True, env=ENV)
    assert refused.value.returncode == 2 and "--keep best needs --eval-every" in refused.value.stderr
    assert not (tmp_path / "no").exists()


def test_models_load_as_policies_without_an_algorithm(models):
    v2 = load_model(models["root"] / "roles")  # the registry: its latest
    policies = v2.policies()
    assert policies["signal"].version == v2.version == models["v2"].version
    assert policies["sizing"].version.startswith("confidence_sizing@")  # not trained: the rule baseline
    single = load_model(models["root"] / "single").policies()
    assert {p.version for p in single.values()} == {models["single"].version}
    events = model_events(models["v1_dir"])
    assert [e.role for e in events] == ["signal", "sizing", "entry", "exit"]
    assert {e.model_id for e in events} == {models["v1"].version}


def test_a_model_trained_beside_a_frozen_model_brings_it_along(models, tmp_path):
    from policies.registry import base_policy

    report = train(tiny(3, roles=("entry",), frozen=str(models["root"] / "roles")), tmp_path / "entry",
                   tapes=models["tapes"])
    model = load_model(tmp_path / "entry")
    assert model.manifest.frozen == str((models["root"] / "roles" / models["v2"].version).resolve())
    versions = {role: p.version for role, p in model.policies().items()}
    assert versions == {"signal": models["v2"].version, "sizing": versions["sizing"], "entry": report.version,
                        "exit": models["v2"].version} and versions["sizing"].startswith("confidence_sizing@")
    events = model_events(tmp_path / "entry")
    assert [(e.role, e.model_id) for e in events] == [("signal", models["v2"].version), ("exit", models["v2"].version),
                                                      ("entry", report.version)]
    assert base_policy(tmp_path / "entry") == "rule"


def test_inference_is_deterministic_and_means_what_the_env_means(models):
    env = TradingEnv(EnvConfig(), tapes=models["tapes"], record=True)
    env.reset(seed=0)
    policy = load_model(models["v1_dir"]).policies()["signal"]
    obs = env._obs  # the orchestrator's first observation: a SignalObservation
    assert policy.decide(obs) == policy.decide(obs)
    assert policy.decide(obs).direction in ("hold", "buy_yes", "buy_no")


def test_a_single_agent_model_trades_live_exactly_as_it_acted_in_training(models):
    """No second implementation: the env stepped with the model's argmax actions and a live episode with the
    model's policies give the same records (but for the version each decision names)."""
    import msgspec

    from policies.episode import Episode
    from policies.registry import _act

    model = load_model(models["root"] / "single")
    tape = models["tapes"][1]
    env = TradingEnv({"lot": model.manifest.lot, "scaling": model.manifest.scaling["default_policy"]}, tapes=[tape],
                     record=True)
    obs, _ = env.reset(seed=0)
    while True:
        obs, _, terminated, truncated, _ = env.step(_act(model.modules["default_policy"], obs)[0])
        if terminated or truncated:
            break
    live = Episode(tape, model.policies(), cash=env.config.cash)
    live.log = []
    live.run()

    def plain(records):
        return [msgspec.structs.replace(r.event, version="-") if type(r.event) is PolicyDecided else r.event
                for batch in records for r in batch]

    assert plain(env.episode.log) == plain(live.log)  # type: ignore[union-attr]
    assert any(type(e) is PolicyDecided for e in plain(live.log))


def test_a_changed_checkpoint_or_a_wrong_path_is_refused(models, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(models["v1_dir"], copy)
    manifest = json.loads((copy / MODEL_FILE).read_text())
    manifest["hash"] = "0" * 64
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="do not match the manifest"):
        load_model(copy)
    with pytest.raises(ModelError, match="not a model"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="random:SEED"):
        load_policies("random:x")


async def test_hot_reload_in_a_paper_session_replays_with_the_same_models(models, tmp_path):
    """The session starts on v1 (latest), v2 is published mid-session; both are logged as ModelLoaded, the
    decisions name the version in force, and the replay (which loads the models the log names) verifies."""
    registry = tmp_path / "registry"
    registry.mkdir()
    shutil.copytree(models["v1_dir"], registry / models["v1"].version)
    (registry / LATEST).write_text(models["v1"].version + "\n")
    markets = ("KXSIM-000", "KXSIM-001", "KXSIM-002")
    exchange = Exchange(3, 5, config=TIGHT, start_ns=EPOCH_NS, session_s=3_600.0)
    spec = SessionSpec(markets=markets, starting_cash=1_000_000_000, seed=5, latency_ms=20)
    session_id = new_session_id("paper")
    log = await create_log(tmp_path, SessionMeta(session_id=session_id, mode="paper", created_ns=time.time_ns()))

    async def publish_v2() -> None:
        await asyncio.sleep(3.0)
        shutil.copytree(models["root"] / "roles" / models["v2"].version, registry / models["v2"].version)
        (registry / ".latest.tmp").write_text(models["v2"].version + "\n")
        os.replace(registry / ".latest.tmp", registry / LATEST)

    async with ExchangeServer(exchange, speed=200.0) as server, log, \
            KalshiFeed(server.ws_url, markets, channels=("orderbook_delta", "trade")) as feed:
        session = PaperSession(log, spec, feed, session_id=session_id, decide_every_s=0.2,
                               models=ModelSource(registry), reload_every_s=0.3, policies=PROVIDER)
        publisher = asyncio.create_task(publish_v2())
        summary = await session.run(7.0)
        await publisher
        await log.mark("ended", "test")
    loaded = [m for m in summary.models]
    assert loaded[:4] == [f"{r}={models['v1'].version}" for r in ("signal", "sizing", "entry", "exit")]
    assert loaded[4:] == [f"{r}={models['v2'].version}" for r in ("signal", "exit")]
    async with await open_log(tmp_path / session_id) as written:
        records = [r async for batch in written.read() for r in batch]
        report = await verify(written, policies=PROVIDER)
    assert report.ok, report.divergence
    switch = next(r.seq for r in records if type(r.event) is ModelLoaded and r.event.model_id == models["v2"].version)
    for r in records:
        if type(r.event) is PolicyDecided and r.event.role == "signal":
            expected = models["v1"].version if r.event.cause_seq < switch else models["v2"].version
            assert r.event.version == expected
    shutil.rmtree(registry / models["v2"].version)  # the replay needs the very versions the session loaded
    done = subprocess.run([TAPE, "replay", "verify", str(tmp_path / session_id)], capture_output=True, text=True,
                          env=ENV, timeout=120)
    assert done.returncode == 1 and "a model the session loaded cannot be" in done.stderr, done.stderr
    assert models["v2"].version in done.stderr and "--models DIR" in done.stderr
    # the versions are elsewhere now: named on the command line (a registry), or in TAPE_MODELS (a directory of them)
    for extra, env in (([f"--models={tmp_path / 'nowhere'}", f"--models={models['root'] / 'roles'}"], ENV),
                       ([], {**ENV, "TAPE_MODELS": str(models["root"])})):
        done = subprocess.run([TAPE, "replay", "verify", str(tmp_path / session_id), "--jobs", "1", *extra],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0 and "ok: every derived event replays exactly" in done.stdout, done.stderr


def test_evaluation_compares_policy_sets_on_the_same_tapes(models):
    tapes = models["tapes"]
    results = evaluate({"rule": load_policies("rule"), "random": load_policies("random"),
                        "model": load_model(models["v1_dir"]).policies()}, tapes, cash=10**9)
    assert [r.name for r in results] == ["rule", "random", "model"]
    for r in results:
        assert r.tapes == 4 and len(r.per_tape) == 4
        assert sum(r.per_tape) == pytest.approx(r.pnl)
        assert sum(r.attribution.values()) == pytest.approx(r.pnl, abs=1e-3) or r.trades == 0
        assert 0 <= r.win_rate <= 1 and 0 <= r.fill_rate <= 1 and r.max_drawdown >= 0
    random = results[1]
    assert random.trades > 0 and random.fees > 0


def tape(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def test_tape_train_and_eval_commands(tmp_path):
    env = {"TAPE__SYNTH__TIGHT_SHARE": "1.0"}
    for seed, where in ((1, "train"), (2, "heldout")):
        done = subprocess.run([TAPE, "synth", "--sessions", "1", "--markets", "3", "--duration", "600", "--seed",
                               str(seed), "--log", str(tmp_path / where)], capture_output=True, text=True,
                              env={**ENV, **env}, timeout=120)
        assert done.returncode == 0, done.stderr
    versions = []
    # Two processes whose str hashes differ (RLlib orders agents by set iteration, which follows the hash seed):
    # staged training, three stages, the later ones with several roles acting; on this data hash seeds 1 and 3 gave
    # two versions before tape train pinned the hash seed (policies.train.HASH_SEED).
    for hash_seed in ("1", "3"):
        done = subprocess.run([TAPE, "train", "--data", "train", "--iterations", "4", "--train-batch", "1000",
                               "--minibatch", "250", "--epochs", "2", "--out", "models/m", "--json"],
                              capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env={**ENV, "PYTHONHASHSEED": hash_seed, "TAPE__LOGGING__LEVEL": "info"})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["version"].startswith("ppo@") and report["device"] == "cpu"
        progress = [line for line in done.stderr.splitlines() if "iteration 4/4" in line]  # info records
        assert progress and not any("nan" in line for line in progress)
        assert "not repeatable" not in done.stderr
        versions.append(report["version"])
    assert versions[0] == versions[1]
    done = tape("eval", "--data", "heldout", "train", "--policies", "rule,random,models/m", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["name"] for r in out["results"]] == ["rule", "random", report["version"]]
    assert "was trained on 1 of these sessions" in done.stderr
    done = tape("eval", "--data", "heldout", "--policies", "rule,models/m", cwd=tmp_path)
    assert done.returncode == 0 and "Sharpe" in done.stdout and "signal $" in done.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "--data", "nowhere"], "nowhere: no such log"),
    (["train", "--data", ".", "--roles", "signal,timing"], "--roles: choose among"),
    (["train", "--data", ".", "--frozen", "models/x"], "--frozen: rule, random[:SEED] or a model"),
    (["train", "--data", ".", "--envs-per-runner", "0"], "--envs-per-runner must be >= 1"),
    (["train", "--data", ".", "--hidden", "64,0"], "--hidden takes layer sizes >= 1"),
    (["train", "--data", ".", "--eval-every", "5"], "--eval-every needs --heldout"),
    (["train", "--data", ".", "--schedule", "later"], "invalid choice: 'later'"),
    (["train", "--data", ".", "--clip", "0"], "--clip must be in (0, 1]"),
    (["eval", "--data", ".", "--policies", "models/none"], "--policies models/none"),
])
def test_bad_arguments_exit_2_naming_them(tmp_path, args, needle):
    done = tape(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr


def test_help_is_complete(tmp_path):
    for command in ("train", "eval"):
        done = tape(command, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "usage: tape" in done.stdout and "examples:" in done.stdout


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_the_cluster_lacks_is_refused_not_a_hang(tmp_path):
    env = {**ENV, "TAPE__SYNTH__TIGHT_SHARE": "1.0"}
    done = subprocess.run([TAPE, "synth", "--sessions", "1", "--markets", "2", "--duration", "300", "--log", "d"],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = tape("train", "--data", "d", "--num-gpus-per-learner", "1", cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "needs 1 GPU(s); the Ray cluster has 0" in done.stderr, done.stderr


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="no CUDA GPU on this machine")
def test_a_gpu_learner_really_runs_on_the_gpu(ray_session, tmp_path):
    report = train(tiny(1, num_gpus_per_learner=1), tmp_path / "gpu", tapes=bench_tapes(2, 600))
    assert report.device.startswith("cuda")


def test_random_actions_in_numpy_are_not_used_by_policies():
    """(guard) policies draw nothing from numpy's global generator: two runs interleaved with draws agree."""
    tapes = bench_tapes(2, 600)
    a = evaluate({"random": load_policies("random:3")}, tapes, cash=10**9)[0].per_tape
    np.random.seed(99)
    np.random.random(100)
    b = evaluate({"random": load_policies("random:3")}, tapes, cash=10**9)[0].per_tape
    assert a == b


def test_imitation_records_the_teachers_decisions_as_the_networks_will_see_them(models, tmp_path):
    """--imitate flow: the demonstrations are flow's decisions on the training tapes, each as the role's action index,
    with the observation scaled as the role's network sees it and a mask that allows it; training with them says
    how much of the teacher each role took, and a teacher that is not a policy set is refused."""
    from policies.base import EntryDecision, SignalDecision, SizingDecision
    from policies.imitate import action_index, demonstrations
    from policies.registry import load_policies
    from policies.roles import SIZES
    from policies.train import fit_scaling

    every = np.ones(len(SIZES), dtype=np.float32)
    assert action_index("signal", SignalDecision("buy_no", 1.0), every) == 2
    assert action_index("entry", EntryDecision("cross"), every) == 2
    assert action_index("sizing", SizingDecision(700), every) == SIZES.index(5)  # 7 contracts: 5 is nearest
    assert action_index("sizing", SizingDecision(700), np.array([1, 1, 1, 0, 0, 0], dtype=np.float32)) == 2
    tapes = models["tapes"]
    scaling = fit_scaling(tapes, "roles")
    demos = demonstrations(tapes, load_policies("flow"), ("signal", "exit"), scaling, cash=1_000 * 1_000_000)
    assert set(demos) <= {"signal", "exit"} and "signal" in demos
    for role, (seen, masks, actions) in demos.items():
        assert seen.shape == (len(actions), len(OBSERVATION_NAMES[role])) and masks.shape[0] == len(actions)
        assert all(masks[np.arange(len(actions)), actions] == 1)  # the teacher never did what the mask forbids
        assert abs(float(seen.mean())) < 5  # scaled, not raw (prices are thousands of ticks)
    lines: list[str] = []
    report = train(tiny(6, roles=("signal",), imitate="flow"), tmp_path / "imitated", tapes=tapes, say=lines.append)
    assert any(line.startswith("imitating flow: signal ") for line in lines), lines
    took = [line for line in lines if line.startswith("imitated: signal takes ")]
    assert len(took) == 1 and 0.0 <= float(took[0].split("takes ")[1].split("%")[0]) <= 100.0
    assert load_model(tmp_path / "imitated").version == report.version
    refused = subprocess.run([TAPE, "train", "--data", str(tmp_path), "--imitate", "random", "--out",
                              str(tmp_path / "no")], capture_output=True, text=True, env=ENV)
    assert refused.returncode == 2 and "--imitate: rule or flow" in refused.stderr, refused.stderr
    assert not (tmp_path / "no").exists()
