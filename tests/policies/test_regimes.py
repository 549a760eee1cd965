"""Regimes (policies/regimes.py): a hidden Markov model of the markets' volatility, activity and spread, fitted on the
training tapes, filtered causally for the roles' observations, saved with the model, and tape eval's PnL by regime.

Real parts: the trackers and the orchestrator of a paper session (policies.episode), RLlib PPO on the local Ray
instance for a tiny model (two small iterations: the plumbing, not what is learned).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import msgspec
import numpy as np
import pytest

from actors.book import OrderBook
from policies.base import OBSERVATION_NAMES, ROLES
from policies.bench import bench_tapes
from policies.episode import Episode
from policies.evaluate import evaluate
from policies.features import FeatureTracker, TrackerState
from policies.regimes import REGIME_FEATURES, RegimeModel, emissions, fit, fit_regimes, regime_at, tape_samples
from policies.registry import MODEL_FILE, ModelError, load_model, load_policies
from policies.roles import random_policies
from policies.train import TrainConfig, train

OLD_MODEL = Path(__file__).parent / "models" / "ppo@7abd83a9253d"
TINY = {"iterations": 2, "train_batch": 400, "minibatch": 200, "epochs": 1, "hidden": (16,)}
TAPE = str(Path(sys.executable).parent / "tape")


def planted(seed: int = 0, steps: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    """A sequence of three regimes (calm, busy, wild) that persist for about 50 steps, and its true states."""
    rng = np.random.default_rng(seed)
    means = np.array([[0.1, 1.0, 0.5], [0.8, 2.0, 0.7], [1.5, 3.0, 1.5]])
    states = np.empty(steps, dtype=int)
    state = 0
    for t in range(steps):
        if rng.random() < 0.02:
            state = int(rng.integers(3))
        states[t] = state
    return means[states] + rng.normal(0.0, 0.3, (steps, 3)), states


def test_fitting_is_deterministic_and_recovers_planted_regimes():
    """The same data fits the same model, its states ordered by volatility; the causal filter's most probable state
    is the planted one at nearly every step."""
    rows, states = planted()
    model = fit([rows[:1500], rows[1500:]], 3, every_ns=10, samples=30)
    assert fit([rows[:1500], rows[1500:]], 3, every_ns=10, samples=30) == model
    assert model.features == REGIME_FEATURES and model.names == ("regime_0", "regime_1", "regime_2")
    assert [m[0] for m in model.means] == sorted(m[0] for m in model.means)
    np.testing.assert_allclose(model.means, [[0.1, 1.0, 0.5], [0.8, 2.0, 0.7], [1.5, 3.0, 1.5]], atol=0.05)
    assert min(model.transitions[i][i] for i in range(3)) > 0.95 and abs(sum(model.prior) - 1) < 1e-9
    guessed = model.forward(rows).argmax(axis=1)
    assert (guessed == states).mean() > 0.97


def test_the_filter_is_causal():
    """Appending later observations never changes the probabilities at an earlier step: the forward filter at t reads
    the rows up to t only (never smoothing, never Viterbi)."""
    rows, _ = planted(1, 400)
    model = fit([rows], 3, every_ns=10, samples=30)
    whole = model.forward(rows)
    for t in (0, 1, 57, 200, 399):
        np.testing.assert_array_equal(model.forward(rows[:t + 1])[-1], whole[t])
    history = [(2 * 5_000 + 100 * (i % 7), 200, i % 5, i % 3) for i in range(40)]
    for t in range(1, 40):
        later = history[:t] + [(9_000, 5_000, 50, 50)] * 5
        assert np.array_equal(model.filter(history[:t]), model.filter(later[:t]))
    probabilities = model.filter(history)
    assert probabilities.dtype == np.float32 and np.all(probabilities * 256 == np.round(probabilities * 256))


def test_a_decision_sees_the_samples_before_it_as_the_evaluation_does():
    """Inside a paper session (the orchestrator's trackers), a decision at ``now`` carries the regime samples of the
    grid points before ``now``, the last 36: exactly what tape_samples gives for the tape up to then, so the regime
    eval assigns a trade is the one the model's policies saw."""
    tape = max(bench_tapes(4, 600), key=lambda t: len(t.events))
    samples = tape_samples(tape)
    assert len(samples) > 40 and all(b[0] - a[0] == 10 * 10**9 for a, b in pairwise(samples))
    seen = []

    class Recording:
        def __init__(self, policy):
            self.policy, self.role, self.version = policy, policy.role, policy.version

        def decide(self, obs):
            seen.append((obs.view.now_ns, obs.view.history))
            return self.policy.decide(obs)

    Episode(tape, {r: Recording(p) for r, p in random_policies(3).items()}, cash=10**9).run()
    assert len(seen) > 20
    for now, history in seen:
        before = [s for g, s in samples if g < now]
        assert history == tuple(before[-36:]), now


def test_a_tracker_snapshot_keeps_its_samples():
    """The samples and the grid are part of the tracker's state: a restored tracker samples on as the original."""
    tape = max(bench_tapes(4, 600), key=lambda t: len(t.events))
    book = OrderBook(tape.market)
    tracker = FeatureTracker(book)
    half = len(tape.events) // 2
    for seq, (ts, event) in enumerate(tape.events[:half], start=1):
        tracker.advance(ts)
        book.handle(seq, ts, event)
        tracker.handle(seq, ts, event)
    state = msgspec.msgpack.decode(msgspec.msgpack.encode(tracker.snapshot()), type=TrackerState)
    copy = FeatureTracker.restore(state, OrderBook.restore(book.snapshot()))
    now = tape.events[half][0] + 60 * 10**9
    assert state.samples and copy.history(now) == tracker.history(now)


@pytest.fixture(scope="module")
def regime_model(tmp_path_factory, ray_session):
    """A tiny roles model trained with --regimes 3."""
    root = tmp_path_factory.mktemp("regimes")
    tapes = bench_tapes(4, 600)
    report = train(TrainConfig(data=("synthetic",), seed=1, regimes=3, **TINY), root / "roles", tapes=tapes)
    return {"dir": root / "roles" / report.version, "tapes": tapes}


def test_a_model_trained_with_regimes_saves_and_reloads_its_regime_model(regime_model):
    """The regime model fitted on the training tapes is in model.json; every module's layout and scaling end with
    its probabilities (unscaled), and the policies loaded from it filter with it."""
    model = load_model(regime_model["dir"])
    m = model.manifest
    assert m.regimes == fit_regimes(regime_model["tapes"], 3)
    assert m.train["regimes"] == 3
    for role in ROLES:
        assert m.observations[role] == (*OBSERVATION_NAMES[role], "regime_0", "regime_1", "regime_2")
        assert m.scaling[role].names == m.observations[role]
        assert m.scaling[role].center[-3:] == (0.0, 0.0, 0.0) and m.scaling[role].scale[-3:] == (1.0, 1.0, 1.0)
    policies = model.policies()
    assert all(policies[r].regimes.model == m.regimes for r in ROLES)


def test_the_regime_model_is_covered_by_the_hash_and_checked_against_the_code(regime_model, tmp_path):
    """Tampering with the regime parameters is refused as a changed model; a regime model over other features or
    another sample grid than this code's is refused naming what and where."""
    copy = tmp_path / "copy"
    shutil.copytree(regime_model["dir"], copy)
    original = json.loads((copy / MODEL_FILE).read_text())
    manifest = json.loads(json.dumps(original))
    manifest["regimes"]["means"][1][0] += 0.01
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="do not match the manifest's hash"):
        load_model(copy)
    manifest = json.loads(json.dumps(original))
    manifest["regimes"]["features"][2] = "depth"
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=re.escape("the regime model's features do not match this code's: 3 features "
                                                   "against 3, first difference at position 2: the model has 'depth', "
                                                   "the code 'spread' (retrain it)")):
        load_model(copy)
    manifest = json.loads(json.dumps(original))
    manifest["regimes"]["every_ns"] = 5 * 10**9
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="the regime model filters samples every 5 s, 36 of them; this code's "
                                         "trackers keep one every 10 s, 36 of them"):
        load_model(copy)
    manifest = json.loads(json.dumps(original))
    manifest["observations"]["entry"] = manifest["observations"]["entry"][:-1]
    (copy / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=re.escape("the entry module's observation layout does not match this code's: "
                                                   "26 features against 27, first difference at position 26: the "
                                                   "model has '(end)', the code 'regime_2'")):
        load_model(copy)
    done = subprocess.run([TAPE, "eval", "--data", ".", "--policies", str(copy)], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "TAPE__LOGGING__LEVEL": "warning"})
    assert done.returncode == 2 and "the entry module's observation layout" in done.stderr, done.stderr


def test_a_session_with_a_regime_model_is_deterministic(regime_model):
    """A paper-style episode with the model's policies gives the same records twice (the filter carries nothing
    between decisions); models without regimes, and the format-1 model, still load."""
    tape = max(regime_model["tapes"], key=lambda t: len(t.events))
    logs = []
    for _ in range(2):
        episode = Episode(tape, load_model(regime_model["dir"]).policies(), cash=10**9)
        episode.log = []
        episode.run()
        logs.append(msgspec.msgpack.encode([[(r.seq, r.ts_ns, r.event) for r in batch] for batch in episode.log]))
    assert logs[0] == logs[1]
    assert load_model(OLD_MODEL).manifest.regimes is None and load_model(OLD_MODEL).manifest.format == 1
    assert set(load_policies(OLD_MODEL)) == set(ROLES)


def test_eval_splits_each_sets_pnl_by_regime(regime_model):
    """The trades' PnL by the regime in force at each entry decision adds up to the set's PnL; a model's own regime
    model is used for it, a fitted one for the other sets."""
    tapes = bench_tapes(6, 900, seed=5)
    model = load_model(regime_model["dir"])
    fitted = fit_regimes(tapes, 2)
    results = evaluate({"random": load_policies("random"), model.version: model.policies(), "rule": load_policies("rule")},
                       tapes, cash=10**9, regimes={model.version: model.manifest.regimes}, fitted=fitted)
    by = {r.name: r for r in results}
    assert by["random"].regime_model == "fitted" and set(by["random"].regimes) == {"regime_0", "regime_1"}
    assert by[model.version].regime_model == "model" and len(by[model.version].regimes) == 3
    assert by["random"].trades > 10
    for r in results:
        assert sum(p.trades for p in r.regimes.values()) == r.trades
        assert sum(p.pnl for p in r.regimes.values()) == pytest.approx(r.pnl, abs=1e-6)
    samples = tape_samples(tapes[0])
    assert regime_at(fitted, samples, samples[-1][0] + 1) == fitted.state([s for _, s in samples[-36:]])
    plain = evaluate({"rule": load_policies("rule")}, tapes[:1], cash=10**9)[0]
    assert plain.regimes is None and plain.regime_model is None


def test_emissions_read_volatility_activity_and_spread():
    """One row per step: log(1 + mean |mid move| in cents over up to 6 steps), log(1 + updates + trades), log(1 +
    spread in cents), 100 cents without both sides."""
    rows = emissions([(10_000, 200, 3, 1), (10_400, 400, 7, 0), (None, None, 0, 0)])
    np.testing.assert_allclose(rows, np.log1p([[2.0, 7.0, 4.0], [1.0, 0.0, 100.0]]))
    steady = [(10_000 + (1_200 if i == 3 else 0), 200, 1, 0) for i in range(12)]
    np.testing.assert_allclose(np.expm1(emissions(steady)[:, 0]), [0, 0, 2, 3, 2.4, 2, 2, 2, 1, 0, 0])
    with pytest.raises(ValueError, match="too few to fit 3 regimes"):
        fit([rows], 3, every_ns=10, samples=30)
    assert RegimeModel(features=REGIME_FEATURES, every_ns=1, samples=1, means=((0.0,) * 3,), variances=((1.0,) * 3,),
                       transitions=((1.0,),), prior=(1.0,)).filter([]).tolist() == [1.0]


async def test_a_session_with_a_regime_model_replays_from_its_checkpoints(regime_model, tmp_path, monkeypatch):
    """A session that loads the regime model through its ModelLoaded events replays identically, serially and in
    segments from its checkpoints on two processes: the filter reads only the samples in the trackers' state."""
    import multiprocessing

    import replay.verify
    from policies.registry import PROVIDER, model_events
    from replay.verify import verify
    from runtime.events import PolicyDecided
    from runtime.log import open_log
    from tests.runtime.test_sequencer import write_session

    tape = max(regime_model["tapes"], key=lambda t: len(t.events))
    episode = Episode(tape, load_policies("rule"), cash=10**9)
    inputs = list(episode.inputs())
    inputs[2:2] = [(inputs[0][0], e) for e in model_events(regime_model["dir"])]
    await write_session(tmp_path, episode.spec, inputs, checkpoint_every=150)
    monkeypatch.setattr(replay.verify, "_context", lambda: multiprocessing.get_context("forkserver"))
    async with await open_log(tmp_path / "run") as log:
        assert len(await log.checkpoints()) >= 2
        decided = [r async for batch in log.read() for r in batch if type(r.event) is PolicyDecided]
        serial = await verify(log, policies=PROVIDER, jobs=1)
        parallel = await verify(log, policies=PROVIDER, jobs=2)
    assert serial.ok and parallel.ok and parallel.segments > 1, (serial.divergence, parallel.divergence)
    assert any(r.event.version == load_model(regime_model["dir"]).version for r in decided)


def test_the_environments_append_the_regime_probabilities():
    """Given a regime model, both environments' observations end with its K probabilities (inside their spaces);
    without one they are as before."""
    from policies.env import OBS_SIZE, TradingEnv
    from policies.multi import MultiRoleEnv

    tapes = bench_tapes(4, 600)
    model = fit_regimes(tapes, 3)
    single = TradingEnv({"regimes": msgspec.to_builtins(model)}, tapes=tapes)
    obs, _ = single.reset(seed=1)
    assert obs.shape == (OBS_SIZE + 3,) and single.observation_space.contains(obs)
    assert abs(float(obs[-3:].sum()) - 1) < 0.02
    assert TradingEnv({}, tapes=tapes).reset(seed=1)[0].shape == (OBS_SIZE,)
    multi = MultiRoleEnv({"regimes": model}, tapes=tapes, frozen_policies=load_policies("rule"))
    observations, _ = multi.reset(seed=1)
    (role, first), = observations.items()
    assert first["observations"].shape == (len(OBSERVATION_NAMES[role]) + 3,)
    assert multi.observation_spaces[role].contains(first)


def test_a_long_quiet_spell_keeps_the_last_samples_as_if_each_had_been_taken():
    """After minutes without an event, the history holds the last 36 grid points as sampling every one would: the
    tracker skips only what its bounded window would drop."""
    from runtime.events import BookSnapshot

    second = 10**9
    snapshot = BookSnapshot(market="KXQ", yes_bids=((4_000, 1_000),), no_bids=((5_000, 1_000),))
    full, bounded = FeatureTracker(OrderBook("KXQ")), FeatureTracker(OrderBook("KXQ"))
    full.sampled = []
    for tracker in (full, bounded):
        for seq, ts in enumerate((3 * second, 17 * second, 1_003 * second), start=1):
            tracker.advance(ts)
            tracker.book.handle(seq, ts, snapshot)
            tracker.handle(seq, ts, snapshot)
    assert bounded.history(1_003 * second) == tuple(s for _, s in full.sampled[-36:])
    assert bounded.history(5_000 * second) == full.history(5_000 * second)
    assert len(bounded.history(5_000 * second)) == 36 and bounded.next_sample_ns == full.next_sample_ns == 1_010 * second
