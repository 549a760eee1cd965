"""The training data, the episode engine and the single-agent environment (policies.data / episode / env)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from actors.book import OrderBook
from policies.data import DataError, Tape, load_tapes, split_tapes, tapes_from
from policies.env import ACTIONS, EnvConfig, TradingEnv
from policies.episode import Episode
from policies.registry import PROVIDER
from policies.rules import baselines
from replay.bench import TIGHT
from replay.export import export_parquet
from replay.verify import verify
from runtime.events import BookDelta, OrderIntent, PolicyDecided, SessionStarted
from runtime.log import SessionMeta, create_log, open_log
from runtime.sequencer import InProcessRunner, Sequencer
from runtime.topology import topology
from runtime.venues.sim.session import SynthSession

CASH = 1_000 * 1_000_000


def synth_tapes(seed: int = 3, markets: int = 4, duration_s: float = 600) -> list[Tape]:
    session = SynthSession(seed, markets, duration_s, config=TIGHT)
    return tapes_from(f"synth-{seed}", list(session.events()))


async def write_synth(root, seed: int, markets: int = 3, duration_s: float = 300) -> str:
    """A synthetic session as ``tape synth`` writes it (market data only, plus session events)."""
    session = SynthSession(seed, markets, duration_s, config=TIGHT)
    meta = SessionMeta(session_id=f"synth-{seed}", mode="synthetic", venue="synthetic", seed=seed)
    log = await create_log(root, meta)
    async with log:
        await log.append([session.started(meta.session_id, "", "")])
        events = list(session.events())
        for lo in range(0, len(events), 500):
            await log.append(events[lo:lo + 500])
        await log.append([session.ended()])
        await log.mark("ended", "completed")
    return meta.session_id


# --- data ----------------------------------------------------------------------------------------------
def test_tapes_split_a_session_by_market_keeping_only_market_data():
    session = SynthSession(5, 3, 120, config=TIGHT)
    records = [session.started("s", "", ""), *session.events(), session.ended()]
    tapes = tapes_from("s", records)
    assert [t.market for t in tapes] == list(session.tickers)
    for tape in tapes:
        assert all(getattr(e, "market", tape.market) == tape.market for _, e in tape.events)
        assert not any(type(e) is SessionStarted for _, e in tape.events)
        assert [ts for ts, _ in tape.events] == sorted(ts for ts, _ in tape.events)
        assert 0 < tape.spread < 1 and 0 <= tape.quiet <= 1 and tape.per_minute > 0
    # (each market's MarketInfo, which tape synth logs first, is not market data to a tape: policies.data.MARKET_DATA)
    assert sum(len(t.events) for t in tapes) == len(records) - 2 - len(session.tickers)


async def test_tapes_load_the_same_from_a_log_a_directory_of_runs_and_parquet(tmp_path):
    first = await write_synth(tmp_path / "runs", 1)
    await write_synth(tmp_path / "runs", 2)
    from_dir = await load_tapes([tmp_path / "runs"])
    assert sorted({t.session for t in from_dir}) == ["synth-1", "synth-2"]
    from_run = await load_tapes([tmp_path / "runs" / first])
    assert from_run == [t for t in from_dir if t.session == first]
    async with await open_log(tmp_path / "runs" / first) as log:
        await export_parquet(log, tmp_path / "one.parquet")
    assert await load_tapes([tmp_path / "one.parquet"]) == from_run
    only = await load_tapes([tmp_path / "runs"], markets=[from_run[0].market])
    assert {t.market for t in only} == {from_run[0].market} and len(only) == 2


async def test_tapes_load_from_postgresql(pg_schema_dsn):
    sid = await write_synth(pg_schema_dsn, 4)
    tapes = await load_tapes([f"{pg_schema_dsn}&session={sid}"])
    assert tapes == tapes_from(sid, list(SynthSession(4, 3, 300, config=TIGHT).events()))
    assert await load_tapes([pg_schema_dsn]) == tapes  # every session in the database


async def test_bad_sources_are_named(tmp_path):
    with pytest.raises(DataError, match="nope: no such log"):
        await load_tapes([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no session logs"):
        await load_tapes([tmp_path / "empty"])
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: not a readable Parquet export"):
        await load_tapes([tmp_path / "bad.parquet"])


def test_held_out_sessions_are_whole_sessions():
    tapes = synth_tapes(1, 2, 60) + synth_tapes(2, 2, 60) + synth_tapes(3, 2, 600)
    train, test = split_tapes(tapes, 0.3)
    assert {t.session for t in test} == {"synth-3"} and {t.session for t in train} == {"synth-1", "synth-2"}
    with pytest.raises(DataError, match="two sessions"):
        split_tapes(synth_tapes(1, 2, 60), 0.5)


# --- the episode engine --------------------------------------------------------------------------------
async def test_an_episode_is_the_paper_session_of_its_tape(tmp_path):
    """The episode's records equal a Sequencer + InProcessRunner session fed the same inputs one per batch, and
    the logged episode replays: training sees exactly what the runtime would."""
    tape = synth_tapes(3, 4)[1]
    episode = Episode(tape, baselines(), cash=CASH, latency_ms=20)
    episode.log = []
    episode.run()
    mine = [r for batch in episode.log for r in batch]
    assert any(type(r.event) is OrderIntent for r in mine)  # the rule baselines trade this tape

    log = await create_log(tmp_path, SessionMeta(session_id="seq"))
    sequencer = Sequencer(log, InProcessRunner(topology(episode.spec, PROVIDER)))
    for entry in episode.inputs():
        await sequencer.submit([entry])
    await log.close()
    async with await open_log(tmp_path / "seq") as written:
        theirs = [r async for batch in written.read() for r in batch]
    assert mine == theirs

    sid = await episode.write(str(tmp_path))
    async with await open_log(tmp_path / sid) as replayed:
        report = await verify(replayed, policies=PROVIDER)
    assert report.ok and report.records == len(mine)


def test_episode_value_is_realized_plus_mid_marked_position_net_of_fees():
    tape = synth_tapes(3, 4)[1]
    episode = Episode(tape, baselines(), cash=CASH)
    episode.run()
    position, cost_basis, net = episode.positions.marks(tape.market)
    mid2 = episode.book.mid2()
    expected2 = 2 * net + (0 if not position or mid2 is None else position * mid2 - 2 * cost_basis)
    assert episode.value2() == expected2 and episode.value() == expected2 // 2


def test_an_agent_role_without_an_answer_cannot_decide():
    tape = synth_tapes(3, 2)[0]
    with pytest.raises(ValueError, match="no policy for"):
        Episode(tape, {}, agent_roles=frozenset({"signal"}), cash=CASH)


# --- the single-agent environment ---------------------------------------------------------------------
def test_the_environment_passes_gymnasiums_checker():
    env = TradingEnv(EnvConfig(max_steps=50), tapes=synth_tapes(3, 2, 600))
    check_env(env, skip_render_check=True)


def play(env: TradingEnv, seed: int, actions) -> tuple[list[np.ndarray], list[float], list[dict]]:
    obs, info = env.reset(seed=seed)
    seen, rewards, infos = [obs], [], [info]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        seen.append(obs)
        rewards.append(reward)
        infos.append(info)
        if terminated or truncated:
            break
    return seen, rewards, infos


def test_same_seed_same_actions_same_episode():
    tapes = synth_tapes(3, 4)
    actions = np.random.default_rng(0).integers(len(ACTIONS), size=400)
    a = play(TradingEnv(EnvConfig(), tapes=tapes), 11, actions)
    b = play(TradingEnv(EnvConfig(), tapes=tapes), 11, actions)
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0], strict=True))
    assert a[1] == b[1] and a[2] == b[2]


def test_rewards_sum_to_the_episodes_pnl_and_holding_earns_nothing():
    tapes = synth_tapes(3, 4)
    env = TradingEnv(EnvConfig(), tapes=tapes)
    _, rewards, infos = play(env, 2, np.random.default_rng(1).integers(len(ACTIONS), size=100_000))
    assert env.episode is not None and env.episode.done
    assert sum(rewards) == pytest.approx(infos[-1]["pnl"], abs=1e-6)
    assert infos[-1]["pnl"] == pytest.approx(env.episode.value2() / 2e6)
    _, rewards, _ = play(env, 2, [0] * 100_000)
    assert set(rewards) == {0.0}


def test_actions_become_the_orders_the_orchestrator_places():
    """buy_yes_cross takes the best ask for ``lot``; close sends a reduce-only IOC; the agent's decisions are
    logged with the agent's version."""
    tapes = synth_tapes(3, 4)
    env = TradingEnv(EnvConfig(lot=500), tapes=tapes, record=True)
    obs, _ = env.reset(seed=0)
    intents = []
    for _ in range(2_000):
        position = obs[17]
        action = 2 if position == 0 else 5
        obs, _, terminated, truncated, _ = env.step(action)
        intents = [r.event for b in env.episode.log for r in b if type(r.event) is OrderIntent]  # type: ignore[union-attr]
        if terminated or truncated or any(i.reduce_only for i in intents):
            break
    entry = next(i for i in intents if not i.reduce_only)
    assert entry.side == "bid" and entry.count == 500 and entry.tif == "ioc" and not entry.post_only
    exits = [i for i in intents if i.reduce_only]
    assert exits and exits[0].side == "ask" and exits[0].tif == "ioc"
    decided = [r.event for b in env.episode.log for r in b if type(r.event) is PolicyDecided]  # type: ignore[union-attr]
    assert {d.version for d in decided} == {"agent"}
    book = OrderBook(entry.market)  # the entry's price is the best ask as of the seq that caused it
    for r in (r for b in env.episode.log for r in b if r.seq <= entry.cause_seq):  # type: ignore[union-attr]
        book.handle(r.seq, r.ts_ns, r.event)
    assert entry.price == book.best_ask()


def test_curriculum_starts_with_the_easiest_tapes():
    tapes = synth_tapes(3, 8)
    env = TradingEnv(EnvConfig(curriculum=1_000, max_steps=1), tapes=tapes)
    easiest = {t.market for t in sorted(tapes, key=lambda t: t.difficulty)[:3]}  # ceil(8 x (0.25 + 0.75 x 31/1000))
    env.reset(seed=0)
    picked = set()
    for _ in range(30):
        env.reset()
        picked.add(env.episode.tape.market)  # type: ignore[union-attr]
    assert picked <= easiest
    uniform = TradingEnv(EnvConfig(max_steps=1), tapes=tapes)
    uniform.reset(seed=0)
    seen = set()
    for _ in range(60):
        uniform.reset()
        seen.add(uniform.episode.tape.market)  # type: ignore[union-attr]
    assert len(seen) > 2


def test_bad_config_and_actions_are_refused():
    with pytest.raises(ValueError, match="env config"):
        TradingEnv({"lot": -1}, tapes=synth_tapes(3, 2, 600))
    with pytest.raises(ValueError, match="env config.*unknown"):
        TradingEnv({"lots": 5}, tapes=synth_tapes(3, 2, 600))
    env = TradingEnv(EnvConfig(), tapes=synth_tapes(3, 2, 600))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside 0..5"):
        env.step(9)


def test_env_config_data_is_loaded(tmp_path):
    asyncio.run(write_synth(tmp_path, 6, duration_s=600))
    env = TradingEnv({"data": [str(tmp_path)], "max_steps": 5})
    assert {t.session for t in env.tapes} == {"synth-6"}
    env.reset(seed=0)
    assert any(type(e) is BookDelta for _, e in env.episode.tape.events)  # type: ignore[union-attr]


def test_an_environment_trains_against_a_named_paper_profile():
    """paper_profile = "calibrated-sim": every episode's spec carries that profile's matcher settings and its name, so
    the matcher the policy learns against is the calibrated one (and its replay knows it)."""
    from config.profiles import SHIPPED

    tapes = synth_tapes(3, 2, 600)
    env = TradingEnv({"paper_profile": "calibrated-sim", "max_steps": 5}, tapes=tapes)
    env.reset(seed=0)
    spec, want = env.episode.spec, SHIPPED["calibrated-sim"]  # type: ignore[union-attr]
    assert (spec.profile, spec.latency_ms, spec.queue_model, spec.cancel_ahead_pct) == (
        "calibrated-sim", want.latency_ms, want.queue_model, want.cancel_ahead_pct)
    plain = TradingEnv(EnvConfig(latency_ms=20), tapes=tapes)
    plain.reset(seed=0)
    assert (plain.episode.spec.profile, plain.episode.spec.latency_ms) == ("", 20)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="paper_profile 'nope' is not a shipped profile"):
        TradingEnv({"paper_profile": "nope"}, tapes=tapes)
