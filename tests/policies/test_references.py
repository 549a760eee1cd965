"""The references every evaluation stands beside: the ``flow`` rule set (given features, then its decision), the
fair-value sidecar ``tape synth`` writes and the oracle that reads it, and ``tape eval --oracle`` as a user runs it."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policies.base import (
    EntryDecision,
    EntryObservation,
    ExitDecision,
    ExitObservation,
    MarketView,
    SignalDecision,
    SignalObservation,
    WorkingOrder,
)
from policies.data import Tape, load_tapes
from policies.evaluate import paired
from policies.features import FEATURE_NAMES
from policies.flow import FlowEntry, FlowExit, FlowParams, FlowSignal, flow_policies
from policies.oracle import OracleError, OracleExit, OracleParams, OracleSignal, fair_path
from policies.registry import is_named, load_policies
from runtime.venues.sim.session import FAIR_FILE, FairPath, FairSidecar, read_fair, write_fair

M = "KXREF-1"
S = 1_000_000_000
TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}


def view(**fields) -> MarketView:
    """A tight market: 48¢ / 50¢, 50 contracts at each touch; $100 free; flat; closes in an hour."""
    base = dict(market=M, now_ns=1_000 * S, best_bid=4_800, best_ask=5_000, bid_size=5_000, ask_size=5_000,
                bid_depth=10_000, ask_depth=10_000, position=0, free_cash=100_000_000, close_ns=4_600 * S)
    return MarketView(**{**base, **fields})


def features(**named: float) -> np.ndarray:
    vector = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
    for name, value in named.items():
        vector[FEATURE_NAMES.index(name)] = value
    return vector


def flow_signal(v: MarketView | None = None, **named: float) -> SignalDecision:
    return FlowSignal().decide(SignalObservation(view=v or view(), features=features(**named)))


def flow_exit(v: MarketView, held_s: float = 10, order: WorkingOrder | None = None, **named: float) -> ExitDecision:
    return FlowExit().decide(ExitObservation(view=v, features=features(**named), cost_basis=v.position * 4_900,
                                             held_ns=int(held_s * S), entry_order=order))


# --- flow: signal ---------------------------------------------------------------------------------------------
def test_strong_one_way_yes_flow_buys_yes_at_full_confidence():
    """300 contracts net bought by YES takers in the window, 80% of what traded: buy_yes, confidence 1."""
    assert flow_signal(signed_volume=300, flow_imbalance=0.8) == SignalDecision("buy_yes", 1.0)


def test_strong_one_way_no_flow_buys_no():
    assert flow_signal(signed_volume=-450, flow_imbalance=-0.9) == SignalDecision("buy_no", 1.0)


@pytest.mark.parametrize(("signed", "share"), [(299, 1.0), (1_000, 0.79), (-299, -1.0), (-1_000, -0.79), (0, 0.0)])
def test_flow_short_of_either_threshold_holds(signed, share):
    """Both the net volume and its share of the traded volume must pass: less is noise."""
    assert flow_signal(signed_volume=signed, flow_imbalance=share) == SignalDecision("hold")


@pytest.mark.parametrize(("fields", "why"), [
    (dict(best_ask=5_500), "a spread of 7 cents: wider than max_spread (6)"),
    (dict(best_ask=None), "one-sided"),
    (dict(best_ask=4_800), "locked"),
    (dict(bid_size=400), "4 contracts at the bid: under min_touch (5)"),
])
def test_flow_trades_only_a_tight_two_sided_book(fields, why):
    assert flow_signal(view(**fields), signed_volume=500, flow_imbalance=1.0) == SignalDecision("hold"), why


def test_a_spread_of_six_cents_is_still_traded():
    assert flow_signal(view(best_ask=5_400), signed_volume=500, flow_imbalance=1.0).direction == "buy_yes"


# --- flow: entry ----------------------------------------------------------------------------------------------
def test_flow_crosses_at_once_and_skips_what_it_cannot_enter():
    entry = FlowEntry()

    def decide(signal: SignalDecision, count: int = 1_000, **fields) -> EntryDecision:
        return entry.decide(EntryObservation(view=view(**fields), features=features(), signal=signal, count=count))

    buy = SignalDecision("buy_yes", 1.0)
    assert decide(buy) == EntryDecision("cross")
    assert decide(SignalDecision("buy_no", 1.0)) == EntryDecision("cross")
    assert decide(SignalDecision("hold")) == EntryDecision("skip")
    assert decide(buy, count=0) == EntryDecision("skip")
    assert decide(buy, best_bid=None) == EntryDecision("skip")


# --- flow: exit -----------------------------------------------------------------------------------------------
def test_flow_closes_on_flow_against_the_position():
    """Long YES, and 300 contracts net of NO buying (80%) in the window: the other news, close."""
    assert flow_exit(view(position=1_000), signed_volume=-300, flow_imbalance=-0.8) == ExitDecision("close", "flow_reversed")
    assert flow_exit(view(position=-1_000), signed_volume=300, flow_imbalance=0.8) == ExitDecision("close", "flow_reversed")


def test_flow_in_the_position_s_direction_keeps_it():
    assert flow_exit(view(position=1_000), signed_volume=300, flow_imbalance=0.8) == ExitDecision("hold")


def test_flow_closes_after_hold_s_and_before_the_close():
    assert flow_exit(view(position=1_000), held_s=299) == ExitDecision("hold")
    assert flow_exit(view(position=1_000), held_s=300) == ExitDecision("close", "max_hold")
    assert flow_exit(view(position=1_000, close_ns=1_060 * S)) == ExitDecision("close", "near_close")


def test_flow_holds_rather_than_close_across_a_wide_spread():
    """Even past hold_s: a 12-cent spread is not crossed."""
    assert flow_exit(view(position=1_000, best_ask=6_000), held_s=900) == ExitDecision("hold", "wide_spread")


def test_flow_cancels_an_entry_order_after_five_seconds():
    order = WorkingOrder(client_order_id="t-1", side="bid", price=4_800, count=1_000, filled=0, age_ns=5 * S)
    young = WorkingOrder(client_order_id="t-1", side="bid", price=4_800, count=1_000, filled=0, age_ns=4 * S)
    assert flow_exit(view(), order=order) == ExitDecision("cancel", "entry_timeout")
    assert flow_exit(view(), order=young) == ExitDecision("hold")


# --- flow: versions and names ---------------------------------------------------------------------------------
def test_flow_versions_name_the_rule_and_hash_its_parameters():
    policies = flow_policies()
    assert re.fullmatch(r"flow_signal@[0-9a-f]{12}", policies["signal"].version)
    assert re.fullmatch(r"flow_exit@[0-9a-f]{12}", policies["exit"].version)
    assert policies["sizing"].version.startswith("confidence_sizing@")
    assert FlowSignal(FlowParams(min_signed=200)).version != policies["signal"].version


def test_flow_is_a_built_in_name_beside_rule_and_random():
    assert is_named("flow") and not is_named("flows")
    policies = load_policies("flow")
    assert {r: p.version for r, p in policies.items()} == {r: p.version for r, p in flow_policies().items()}


@pytest.mark.parametrize(("fields", "message"), [
    (dict(min_signed=0), "FlowParams: min_signed must be > 0"),
    (dict(min_share=1.5), "FlowParams: min_share must lie in [0, 1]"),
    (dict(hold_s=0), "FlowParams: hold_s and entry_timeout_s must be > 0"),
])
def test_bad_flow_parameters_are_refused_by_name(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FlowParams(**fields)


# --- the oracle -----------------------------------------------------------------------------------------------
PATH = FairPath(market=M, ts_ns=[0, 1_000 * S, 2_000 * S], fair=[0.49, 0.56, 0.40])
"""49% until 1,000 s, 56% until 2,000 s, then 40%"""


def oracle_signal(**fields) -> SignalDecision:
    return OracleSignal(PATH).decide(SignalObservation(view=view(**fields), features=features()))


def test_the_oracle_buys_yes_when_the_fair_value_beats_the_ask_fee_and_margin():
    """At 1,000 s the fair value is 56¢; the ask 50¢ and its taker fee 1.75¢ leave 4.25¢ >= 3¢: buy_yes."""
    assert oracle_signal() == SignalDecision("buy_yes", 1.0)


def test_the_oracle_reads_the_fair_value_at_the_decision_s_event_time():
    """The same book a second earlier (fair 49¢: inside the spread) holds; at 2,000 s (40¢) it buys NO at 48¢."""
    assert oracle_signal(now_ns=999 * S) == SignalDecision("hold")
    assert oracle_signal(now_ns=2_000 * S) == SignalDecision("buy_no", 1.0)


def test_the_oracle_holds_when_the_edge_does_not_cover_the_fee_and_margin():
    """Fair 56¢ against an ask of 52¢: 4¢ - 1.75¢ of fee is under the 3¢ margin."""
    assert oracle_signal(best_ask=5_200) == SignalDecision("hold")
    assert OracleSignal(PATH, OracleParams(entry_margin=200)).decide(
        SignalObservation(view=view(best_ask=5_200), features=features())) == SignalDecision("buy_yes", 1.0)


def test_the_oracle_exits_once_the_mid_is_past_the_fair_value():
    """Long YES at fair 56¢: a mid of 56.5¢ holds; 57¢ (1¢ past) closes, as does a fall of the fair value to 40¢."""
    def decide(**fields) -> ExitDecision:
        v = view(position=1_000, **fields)
        return OracleExit(PATH).decide(ExitObservation(view=v, features=features(), cost_basis=5_000_000))

    assert decide(best_bid=5_600, best_ask=5_700) == ExitDecision("hold")
    assert decide(best_bid=5_600, best_ask=5_800) == ExitDecision("close", "edge_gone")
    assert decide(now_ns=2_000 * S) == ExitDecision("close", "edge_gone")
    assert decide(close_ns=1_030 * S) == ExitDecision("close", "near_close")


def test_a_tape_without_a_sidecar_has_no_fair_value_for_the_oracle():
    tape = Tape(session="paper-20261122T185900Z-3fa9c1", market=M, events=())
    with pytest.raises(OracleError) as caught:
        fair_path(tape)
    assert str(caught.value) == ("session paper-20261122T185900Z-3fa9c1 has no fair-value sidecar (fair.msgpack): only "
                                 "tape synth writes one, so --oracle needs synthetic sessions")


def test_the_sidecar_round_trips(tmp_path):
    sidecar = FairSidecar(format=1, session_id="s", seed=7, markets=[PATH])
    assert write_fair(tmp_path, sidecar) == tmp_path / FAIR_FILE
    assert read_fair(tmp_path) == sidecar
    assert read_fair(tmp_path / "nowhere") is None
    (tmp_path / FAIR_FILE).write_bytes(b"\x01")
    with pytest.raises(ValueError, match="not a fair-value sidecar"):
        read_fair(tmp_path)


# --- on synthetic sessions, and the command line --------------------------------------------------------------
def tape(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=600, env={**ENV, **(env or {})},
                          cwd=cwd)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    """Two small synthetic sessions of three tight markets, 600 s each."""
    root = tmp_path_factory.mktemp("refs")
    done = tape("synth", "--sessions", "2", "--markets", "3", "--duration", "600", "--seed", "11", "--log", "heldout",
                cwd=root, env={"TAPE__SYNTH__TIGHT_SHARE": "1.0"})
    assert done.returncode == 0, done.stderr
    return root / "heldout"


async def test_synthetic_tapes_name_their_sidecar_and_the_oracle_finds_their_path(heldout):
    tapes = await load_tapes([heldout])
    assert len(tapes) == 6
    for t in tapes:
        assert t.sidecar == str((heldout / t.session / FAIR_FILE).resolve())
        expected = next(m for m in read_fair(heldout / t.session).markets if m.market == t.market)
        assert fair_path(t) == expected


def test_eval_with_the_oracle_reports_every_set_s_share_of_it(heldout):
    """rule and flow beside the oracle: each has a PnL and a share (its PnL over the oracle's); the oracle's own is
    1, and on these tapes it makes at least what flow makes."""
    done = tape("eval", "--data", str(heldout), "--policies", "rule,flow", "--oracle", "--json", cwd=heldout.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["oracle"] is True and report["tapes"] == 6
    results = {r["name"]: r for r in report["results"]}
    assert list(results) == ["rule", "flow", "oracle"]
    oracle = results["oracle"]
    assert oracle["pnl"] > 0 and oracle["trades"] > 0 and oracle["share_of_oracle"] == 1.0
    assert oracle["versions"]["signal"].startswith("oracle_signal@")
    for name in ("rule", "flow"):
        assert results[name]["share_of_oracle"] == pytest.approx(results[name]["pnl"] / oracle["pnl"])
    assert oracle["pnl"] >= results["flow"]["pnl"]
    # flow among the sets: every other set is compared with it tape by tape
    assert results["flow"]["versus"] is None
    for name in ("rule", "oracle"):
        versus = results[name]["versus"]
        diffs = [a - b for a, b in zip(results[name]["per_tape"], results["flow"]["per_tape"], strict=True)]
        assert versus["baseline"] == "flow" and versus["tapes"] == 6
        assert versus["diff_mean"] == pytest.approx(np.mean(diffs))
        assert versus["diff_se"] == pytest.approx(np.std(diffs, ddof=1) / np.sqrt(6))
        assert versus["t"] == (pytest.approx(versus["diff_mean"] / versus["diff_se"]) if versus["diff_se"] else None)

    table = tape("eval", "--data", str(heldout), "--policies", "flow", "--oracle", cwd=heldout.parent)
    assert table.returncode == 0, table.stderr
    share = next(line for line in table.stdout.splitlines() if line.startswith("share of oracle"))
    assert share.split()[-1] == "100.0%"


def test_paired_comparison_by_hand():
    versus = paired([3.0, 1.0, 2.0], [1.0, 1.0, 0.0], "flow")
    assert (versus.baseline, versus.tapes, versus.diff_mean) == ("flow", 3, pytest.approx(4 / 3))
    assert versus.diff_se == pytest.approx(math.sqrt(4 / 3) / math.sqrt(3))  # diffs 2, 0, 2: sd sqrt(4/3)
    assert versus.t == pytest.approx((4 / 3) / (math.sqrt(4 / 3) / math.sqrt(3)))
    assert paired([1.0, 2.0], [0.0, 1.0], "rule").t is None  # every difference the same: no spread, no t
    with pytest.raises(ValueError, match="2 tapes against 1 of rule"):
        paired([1.0, 2.0], [0.0], "rule")


def test_eval_baseline_must_be_one_of_the_sets(heldout):
    done = tape("eval", "--data", str(heldout), "--policies", "rule,flow", "--baseline", "random", cwd=heldout.parent)
    assert done.returncode == 2 and done.stdout == ""
    assert "--baseline random: not among the policy sets (rule, flow); name one of them" in done.stderr
    table = tape("eval", "--data", str(heldout), "--policies", "flow,rule", "--baseline", "rule", cwd=heldout.parent)
    assert table.returncode == 0, table.stderr
    rows = {line.split("  ")[0]: line for line in table.stdout.splitlines()}
    assert "vs rule: t (paired)" in rows and rows["vs rule: t (paired)"].split()[-1] == "-"


def test_eval_without_the_oracle_has_no_share(heldout):
    done = tape("eval", "--data", str(heldout), "--policies", "flow", "--json", cwd=heldout.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["oracle"] is False and [r["share_of_oracle"] for r in report["results"]] == [None]
    assert "share of oracle" not in tape("eval", "--data", str(heldout), "--policies", "flow", cwd=heldout.parent).stdout


def test_the_oracle_on_sessions_without_a_sidecar_is_refused_naming_the_session(heldout, tmp_path):
    """A recorded session has no fair.msgpack: exit 2, the session named, nothing written."""
    recorded = tmp_path / "recorded"
    shutil.copytree(heldout, recorded)
    (recorded / "synth-11-0001" / FAIR_FILE).unlink()
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    done = tape("eval", "--data", str(recorded), "--policies", "rule,flow", "--oracle", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert ("tape eval: --oracle: session synth-11-0001 has no fair-value sidecar (fair.msgpack beside its log): only "
            "tape synth writes one; evaluate recorded sessions without --oracle") in done.stderr
    assert sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
