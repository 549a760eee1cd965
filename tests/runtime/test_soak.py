"""``tape soak``, short: live orders on the local exchange with every fault on; nothing lost or doubled, replay verifies."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.events import OrderFilled, PositionReported
from runtime.soak import OWNER, SoakError, _check_linux, memory
from runtime.venues.kalshi.http import KalshiRest
from runtime.venues.kalshi.rest import OrderRequest
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}
FAULTS = "gap=50,error25=3000,drop=4000,dup_fills=1,malformed=97,slow_ms=1,seed=3"  # often, in a short run


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tape soak reads memory from Linux's /proc")
def test_a_short_soak_loses_and_doubles_no_fill_and_replays(tmp_path):
    """25 s, 20 markets, every fault (the feed reconnects, resubscribes, reconciles; every fill comes twice): the
    exchange's record of our fills is exactly what the log applied, the replay verifies, and the report has the
    memory series (every process, per kind) and the event rate."""
    run = subprocess.run([TAPE, "soak", "--duration", "25", "--markets", "20", "--every", "5", "--faults", FAULTS,
                          "--policies", "random", "--runner", "inprocess", "--log", str(tmp_path), "--json"],
                         capture_output=True, text=True, env={**ENV, "TAPE__LOGGING__LEVEL": "info"}, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["fills_lost"] == [] and report["fills_doubled"] == [] and report["fills_unknown"] == []
    assert report["exchange_fills"] > 0 and report["log_fills"] == report["exchange_fills"]
    assert report["replay_ok"] and report["replay"].startswith("ok: ")
    assert report["duplicates_refused_feed"] >= report["exchange_fills"] - report["feed"]["reconnects"]  # dup_fills
    assert report["feed"]["reconnects"] >= 1 and report["feed"]["gaps"] >= 1 and report["feed"]["malformed"] >= 1
    samples = report["samples"]
    assert len(samples) >= 5 and all(s["rss_kb"] > 0 and s["by_kind"]["driver"] > 0 for s in samples)
    assert samples[-1]["records"] == report["records"] and any(s["events_per_s"] > 0 for s in samples)
    assert report["rss_start_kb"] > 0 and isinstance(report["rss_growth"], float)
    records = [json.loads(line) for line in run.stderr.splitlines()]  # off a terminal: diagnostics only, as JSON
    lines = [r["event"] for r in records if r.get("component") == "soak" and " rss " in r["event"]]
    assert len(lines) == len(samples) and "ev/s" in lines[0] and "driver=" in lines[0]


def test_memory_names_this_process_and_its_children_by_kind():
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    child = subprocess.Popen(["sleep", "30"])
    try:
        procs = {p.pid: p for p in memory()}
        assert procs[os.getpid()].kind == "driver" and procs[os.getpid()].rss_kb > 0
        assert procs[child.pid].kind == "sleep"
    finally:
        child.kill()
        child.wait()


def test_elsewhere_than_linux_the_soak_says_why(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(SoakError, match="reads every process's memory from Linux's /proc; this is darwin"):
        _check_linux()


def test_a_bad_fault_spec_is_a_usage_error(tmp_path):
    run = subprocess.run([TAPE, "soak", "--duration", "5", "--faults", "gap=x", "--log", str(tmp_path)],
                         capture_output=True, text=True, env=ENV, timeout=60)
    assert run.returncode == 2 and "--faults: gap='x' is not a whole number" in run.stderr


async def test_the_feed_reconciles_only_this_sessions_fills():
    """One account, two sessions' orders filled before the feed connects: with ``own="a-"`` its REST reconciliation
    delivers session a's fill and not session b's (the fill channel is the account's, REST reads are filtered)."""
    ex = Exchange(3, 5, session_s=900.0, start_ns=time.time_ns() - 10 * 1_000_000_000)
    ex.advance(ex.now_ns + 2 * 1_000_000_000)
    ticker, ask = next((t, f.engine.best_ask()) for t, f in zip(ex.tickers, ex.flows, strict=True)
                       if f.engine.best_ask() is not None)
    for coid in ("a-1-1", "b-1-1"):
        result = ex.create_order(OWNER, OrderRequest(market=ticker, side="bid", price=ask, count=100, tif="ioc",
                                                     client_order_id=coid), ex.now_ns)
        assert result.order is not None and result.order.fill_count == 100, result
    events = []
    async with ExchangeServer(ex) as server, KalshiRest(server.rest_url) as rest, \
            KalshiFeed(server.ws_url, [ticker], channels=("fill",), rest=rest, own="a-") as feed:
        async with asyncio.timeout(20):
            async for batch in feed:
                events += [e for _, e in batch]
                if any(type(e) is PositionReported for e in events):  # the reconciliation's last read
                    break
    assert [e.client_order_id for e in events if type(e) is OrderFilled] == ["a-1-1"]
