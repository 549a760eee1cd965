"""Fill fidelity end to end: `tape fidelity` runs live orders on a real local exchange (WebSockets and REST on
loopback) with the shadow execution beside them, measures paper against true, replays each session, calibrates."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.profiles import SHIPPED, PaperProfile
from config.settings import ConfigError, load_settings
from runtime.events import QueuePositionReported, Record, ShadowFilled, ShadowQueued
from runtime.fidelity.calibrate import CalibrationError, parse_grid, refold
from runtime.fidelity.measure import measure
from runtime.fidelity.report import render, summarize
from runtime.fidelity.session import FidelityError, check_venue
from runtime.log import open_log
from runtime.topology import SessionSpec, session_inputs

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


def tape(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, cwd=cwd, timeout=600,
                          env={**os.environ, "TAPE__LOGGING__LEVEL": "warning"})


def records(log: str) -> list:
    async def read() -> list:
        async with await open_log(log) as reader:
            return [r async for batch in reader.read() for r in batch]

    return asyncio.run(read())


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    where = tmp_path_factory.mktemp("fidelity")
    done = tape("fidelity", "--sessions", "2", "--seconds", "12", "--markets", "4", "--seed", "3", "--log",
                str(where / "runs"), "--plot", str(where / "pnl.png"), "--json", cwd=where)
    assert done.returncode == 0, done.stderr[-3000:]
    return where, json.loads(done.stdout)


def test_a_fidelity_run_measures_paper_beside_true_and_every_session_replays_identically(run):
    where, out = run
    assert len(out["logs"]) == 2 and all(v == "ok" for v in out["replay"].values())
    s = out["summary"]
    assert s["sessions"] == 2 and s["overall"]["orders"] > 10
    assert s["overall"]["true"]["filled"] > 0 and s["overall"]["paper"]["filled"] > 0
    assert set(s["by_kind"]) <= {"passive", "post_only", "marketable", "ioc", "fok"} and s["by_kind"]
    assert len(s["by_market"]) == 4
    assert "pnl" in s["differences"] and s["differences"]["pnl"]["n"] == 2
    assert (where / "pnl.png").stat().st_size > 10_000


def test_the_log_holds_the_venues_queue_reports_and_the_shadows_answers_at_the_same_seq(run):
    _, out = run
    total = 0
    for log in out["logs"]:
        recs = records(log)
        reports = {r.seq for r in recs if type(r.event) is QueuePositionReported}
        answers = [r.event for r in recs if type(r.event) is ShadowQueued and r.event.cause_seq in reports]
        assert len(answers) == len(reports)  # one answer per report, caused by it
        total += len(reports)
    assert total > 0


def test_a_refold_under_the_sessions_own_settings_regenerates_its_shadow_fills_exactly(run):
    _, out = run
    for log in out["logs"]:
        recs = records(log)
        fills, _ = refold(recs, SHIPPED["default"])
        assert fills == [r.event for r in recs if type(r.event) is ShadowFilled]
        assert fills, "the random policy's orders fill on paper too"
        # and the measure of the refold is the measure of the log
        a, b = measure(recs, log=log), measure(recs, log=log, paper=fills, paper_queue=refold(recs, SHIPPED["default"])[1])
        assert (a.pnl_paper, [o.paper for o in a.outcomes]) == (b.pnl_paper, [o.paper for o in b.outcomes])
        assert render(summarize([a]))


def test_calibration_searches_on_training_sessions_reports_held_out_and_saves_a_profile(run, tmp_path):
    _, out = run
    saved = tmp_path / "mine.toml"
    done = tape("fidelity", "--logs", *out["logs"], "--calibrate", "--held-out", "1", "--grid", "latency_ms=0,50",
                "--grid", "queue_model=conservative", "--grid", "pacing=none", "--save", str(saved), "--profile-name", "mine",
                "--no-verify",
                "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    c = json.loads(done.stdout)["calibration"]
    assert len(c["trials"]) == 2 and c["train"] == out["logs"][:1] and c["held_out"] == out["logs"][1:]
    assert c["chosen"] == min(c["trials"], key=lambda t: t["error"])["profile"]
    assert c["held_out_chosen"]["sessions"] == 1 and c["held_out_default"]["sessions"] == 1
    name, profile = load_settings(saved, env={}).paper.effective()
    assert name == "mine" and profile == PaperProfile(**c["chosen"])


def test_what_cannot_measure_fidelity_is_refused_with_the_reason(run, tmp_path):
    with pytest.raises(FidelityError, match="recorded session"):
        check_venue("recorded")
    with pytest.raises(FidelityError, match="without live orders"):
        check_venue("kalshi", live_orders=False)
    done = tape("fidelity", "--venue", "kalshi")
    assert done.returncode == 2 and "local exchange" in done.stderr
    done = tape("paper", "--shadow")
    assert done.returncode == 2 and "--shadow shadows live orders: it needs --live-orders" in done.stderr
    done = tape("eval", "--execution", "true", "--data", "runs")
    assert done.returncode == 2 and "leave --data out" in done.stderr
    demo = tape("demo", "--runs", str(tmp_path / "runs"), "--events", "2000", "--markets", "2")
    assert demo.returncode == 0, demo.stderr
    log = next((tmp_path / "runs").iterdir())
    done = tape("fidelity", "--logs", str(log))
    assert done.returncode == 2 and "is not a fidelity session" in done.stderr and "recorded" in done.stderr, done.stderr
    paper = [Record(seq=i + 1, ts_ns=1, event=e) for i, (_, e) in
             enumerate(session_inputs(SessionSpec(markets=("A",)), 1, session_id="paper-x"))]
    with pytest.raises(FidelityError, match="not a fidelity session .a paper session: the paper matcher filled"):
        measure(paper, log="paper-x")
    venue = [Record(seq=i + 1, ts_ns=1, event=e) for i, (_, e) in
             enumerate(session_inputs(SessionSpec(markets=("A",), execution="venue"), 1, session_id="demo-x"))]
    with pytest.raises(FidelityError, match="without the shadow execution"):
        measure(venue, log="demo-x")


def test_a_calibration_with_an_unknown_parameter_is_a_clear_error():
    with pytest.raises(CalibrationError, match="unknown parameter .maker_speed.*latency_ms, pacing, queue_model"):
        parse_grid(["maker_speed=1,2"])
    with pytest.raises(CalibrationError, match="queue_model = 'fifo' is not allowed"):
        parse_grid(["queue_model=fifo"])
    assert parse_grid(["latency_ms=0,10"])["latency_ms"] == (0, 10)
    done = tape("fidelity", "--logs", "x", "--calibrate", "--grid", "maker_speed=1")
    assert done.returncode == 2 and "unknown parameter 'maker_speed'" in done.stderr


def test_a_paper_profile_is_named_in_the_settings_and_recorded_in_the_spec():
    name, profile = load_settings(env={"TAPE__PAPER__PROFILE": "calibrated-sim"}).paper.effective()
    assert (name, profile) == ("calibrated-sim", SHIPPED["calibrated-sim"])
    with pytest.raises(ConfigError, match="no such profile.*calibrated-sim, default"):
        load_settings(env={"TAPE__PAPER__PROFILE": "nope"})
    with pytest.raises(ConfigError, match="cancel_ahead_pct = 40 needs queue_model = 'share'"):
        load_settings(env={"TAPE__PAPER__CANCEL_AHEAD_PCT": "40"})
    own = load_settings(env={"TAPE__PAPER__QUEUE_MODEL": "share", "TAPE__PAPER__CANCEL_AHEAD_PCT": "40"}).paper.effective()
    assert own == ("", PaperProfile(queue_model="share", cancel_ahead_pct=40))


def test_eval_with_true_execution_plays_each_set_with_live_orders_beside_its_paper_pnl(tmp_path):
    done = tape("eval", "--execution", "true", "--policies", "rule,random:3", "--sessions", "1", "--seconds", "6",
                "--markets", "3", "--log", str(tmp_path / "runs"), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["execution"] == "true" and [r["name"] for r in out["results"]] == ["rule", "random:3"]
    random = out["results"][1]
    assert random["orders"] > 0 and len(random["sessions"]) == 1
    assert random["pnl_true"] == sum(random["pnl_true_per_session"])
    assert {r["sessions"][0] for r in out["results"]} <= {str(p) for p in (tmp_path / "runs").iterdir()}


def test_bench_fidelity_prints_the_errors_of_both_profiles_and_the_matchers_rate_ratio(run):
    _, out = run
    done = tape("bench", "fidelity", "--logs", *out["logs"], "--repeat", "1", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    b = json.loads(done.stdout)
    for key in ("fill_rate_error_pp_default", "fill_rate_error_pp_calibrated", "pnl_error_pct_default",
                "pnl_error_pct_calibrated", "matcher_ops_default", "matcher_ops_calibrated", "matcher_ops"):
        assert key in b, key
    assert b["sessions"] == 2 and b["matcher_ops"] > 0 and b["calibrated_profile"] == SHIPPED["calibrated-sim"].text()
