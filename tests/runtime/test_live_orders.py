"""Live order routing: a session whose execution node is the router, its orders sent by the driver's gateway to
the real local exchange (in-process, loopback sockets), fills back from the feed's private channels.

What must hold after the session: our orders are at the exchange; every fill the exchange has for our account
is in the log exactly once; the log's positions are the exchange's; the log replays identically; after the
halt nothing of ours rests at the exchange.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.orchestrator import HALT
from actors.positions import Positions
from actors.shell import RayRunner
from config.synth import FlowConfig
from policies.registry import PROVIDER
from replay.verify import verify
from runtime.events import (
    CancelRequested,
    OperatorCommand,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderIntent,
    PositionReported,
    SessionEnded,
    SessionStarted,
)
from runtime.ids import new_session_id
from runtime.log import SessionMeta, create_log, open_log
from runtime.paper import PaperSession
from runtime.topology import SessionSpec, snapshot_bytes, topology
from runtime.venues.kalshi.http import KalshiRest
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from runtime.venues.sim.session import EPOCH_NS

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}
CHANNELS = ("orderbook_delta", "trade", "market_lifecycle_v2", "fill", "user_orders", "market_positions")
MARKETS = ("KXSIM-000", "KXSIM-001", "KXSIM-002")
TIGHT = FlowConfig(tight_share=1.0)  # every market quoted tight and busy: the rule baselines trade them
TRUST = "trust"  # the exchange's account of unsigned requests (trust mode)


async def run_live(tmp_path: Path, runner_kind: str, seconds: float = 5.0, seed: int = 7, speed: float = 100.0):
    """A venue-execution session on 3 tight markets of an in-process exchange at 100x; returns (log dir,
    summary, exchange)."""
    exchange = Exchange(3, seed, config=TIGHT, start_ns=EPOCH_NS, session_s=3_600.0)
    spec = SessionSpec(markets=MARKETS, starting_cash=1_000_000_000, seed=seed, execution="venue")
    session_id = new_session_id("paper")
    meta = SessionMeta(session_id=session_id, mode="demo", venue="sim", seed=seed, created_ns=time.time_ns())
    log = await create_log(tmp_path, meta)
    runner = RayRunner(topology(spec, PROVIDER), log) if runner_kind == "ray" else None
    async with ExchangeServer(exchange, speed=speed) as server, log, \
            KalshiRest(server.rest_url, backoff_s=0.01) as rest, \
            KalshiFeed(server.ws_url, MARKETS, channels=CHANNELS, rest=rest, backoff_s=0.01) as feed:
        session = PaperSession(log, spec, feed, session_id=session_id, runner=runner, decide_every_s=0.2,
                               rest=rest, drain_s=10.0, policies=PROVIDER)
        summary = await session.run(seconds)
        await log.mark("ended", "test")
        resting = [o for o in exchange.orders(TRUST) if o.status == "resting"]
    if runner_kind == "inprocess":  # the driver's router (the gateway's view) is the execution actor's twin
        inner = session.runner
        (at,) = [i for i, n in enumerate(inner.nodes) if n.name == "execution"]
        assert snapshot_bytes(session.watch.router) == snapshot_bytes(inner.machines[at])
        assert session.watch.router.pending_sends() == [] and session.watch.router.pending_cancels() == []
    return tmp_path / session_id, summary, exchange, resting


async def records_of(where: Path) -> list:
    out = []
    async with await open_log(where) as log:
        async for batch in log.read():
            out.extend(batch)
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("runner_kind", ["inprocess", pytest.param("ray", marks=pytest.mark.slow)])
async def test_a_venue_session_sends_real_orders_and_its_log_agrees_with_the_exchange(tmp_path, runner_kind,
                                                                                      request):
    if runner_kind == "ray":
        request.getfixturevalue("ray_session")
    where, summary, exchange, resting = await run_live(tmp_path, runner_kind)
    records = await records_of(where)
    events = [r.event for r in records]
    assert summary.reason == "completed" and summary.execution == "venue" and summary.intents >= 1, summary

    # the orders exist at the exchange, each under the client order id our intent logged
    intents = {e.client_order_id for e in events if type(e) is OrderIntent}
    venue_orders = exchange.orders(TRUST)
    assert venue_orders and {o.client_order_id for o in venue_orders} <= intents
    accepted = {e.client_order_id: e.order_id for e in events if type(e) is OrderAccepted and e.cause_seq is None}
    assert {o.client_order_id: o.order_id for o in venue_orders} == accepted
    assert summary.gateway["creates"] >= len(venue_orders)

    # every fill the exchange has for us is in the log exactly once, as an input (from the venue)
    fills = [e for e in events if type(e) is OrderFilled]
    assert all(f.cause_seq is None for f in fills)  # no paper matcher: nothing derives a fill
    counted = collections.Counter(f.trade_id for f in fills)
    venue_fills = exchange.fills(TRUST)
    assert venue_fills, "the rule policies traded nothing at the exchange"
    assert {f.trade_id for f in venue_fills} == set(counted) and set(counted.values()) == {1}
    assert summary.fills == summary.venue_fills == len(venue_fills)

    # the log's positions are the exchange's, and so is the venue's own final report in the log
    positions = Positions()
    for r in records:
        positions.handle(r.seq, r.ts_ns, r.event)
    venue_positions = {p.market: p.position for p in exchange.positions(TRUST)}
    assert {m: positions.get(m).position for m in MARKETS} == {m: venue_positions.get(m, 0) for m in MARKETS}
    assert summary.venue_positions == summary.positions
    assert {e.market for e in events if type(e) is PositionReported} >= set(venue_positions)

    # after the halt nothing of ours rests at the exchange, and nothing is reserved
    assert resting == [] and summary.reserved == 0
    assert all(o.status != "resting" for o in exchange.orders(TRUST))
    halt = events.index(OperatorCommand(command=HALT))
    assert isinstance(events[-1], SessionEnded) and halt < len(events) - 1
    canceled = {e.client_order_id for e in events[halt:] if type(e) is OrderCanceled}
    assert {e.client_order_id for e in events[halt:] if type(e) is CancelRequested} <= canceled | {
        o.client_order_id for o in exchange.orders(TRUST) if o.status == "executed"}

    # the router derives nothing: the log replays exactly
    async with await open_log(where) as log:
        report = await verify(log, policies=PROVIDER)
    assert report.ok, report.divergence
    assert report.records == summary.records and sum(report.derived.values()) == summary.derived
    assert isinstance(events[0], SessionStarted) and (events[0].mode, events[0].venue) == ("demo", "sim")


async def test_a_venue_session_needs_a_rest_client(tmp_path):
    spec = SessionSpec(markets=MARKETS, execution="venue")
    meta = SessionMeta(session_id="s", mode="demo", venue="sim", seed=0, created_ns=time.time_ns())
    async with await create_log(tmp_path, meta) as log:
        with pytest.raises(ValueError, match="rest=KalshiRest"):
            PaperSession(log, spec, [], session_id="s")


def tape(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_tape_paper_live_orders_on_the_local_exchange(tmp_path):
    done = tape("paper", "--live-orders", "--venue", "sim", "--runner", "inprocess", "--duration", "4",
                "--speed", "100", "--seed", "5", "--markets", "3", "--log", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "live orders: real orders go to the local exchange" in done.stdout and "local exchange on ws://" in done.stdout
    out = done.stdout
    for needle in ("paper session completed", "fills from the venue (sim)", "replay verify: ok"):
        assert needle in out, out
    assert "venue positions DIFFER" not in out, out
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert tape("replay", "verify", str(run)).returncode == 0


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--venue", "kalshi", "--live-orders"], {}, "--i-understand-real-orders"),
    (["--venue", "kalshi", "--live-orders", "--i-understand-real-orders"], {"KALSHI_API_KEY_ID": ""},
     "KALSHI_API_KEY_ID"),
    (["--venue", "kalshi-demo", "--live-orders"], {"KALSHI_API_KEY_ID": ""}, "KALSHI_API_KEY_ID"),
])
def test_live_orders_on_kalshi_need_the_acknowledgement_and_keys(tmp_path, args, env, needle):
    environment = {k: v for k, v in {**ENV, **env}.items() if v}
    for name in ("KALSHI_API_KEY_ID", "KALSHI_PRIVATE_KEY_PATH", "KALSHI_PRIVATE_KEY"):
        if name in env:
            environment.pop(name, None)
    done = subprocess.run([TAPE, "paper", "--log", str(tmp_path), *args], capture_output=True, text=True,
                          timeout=60, env=environment)
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not any(tmp_path.iterdir())  # refused before anything was started or logged



@pytest.mark.timeout(60)
async def test_when_the_log_fails_trading_stops_and_the_venue_orders_are_canceled_directly(tmp_path, monkeypatch):
    """DESIGN §2.5: the moment an order of ours rests at the exchange, the disk fills up. The sequencer stops,
    the session raises SequencerStopped, and every order the venue acknowledged is canceled at the venue
    directly (the log can record nothing more); what was acknowledged before stays in the log."""
    import errno

    from runtime.sequencer import SequencerStopped

    exchange = Exchange(3, 7, config=TIGHT, start_ns=EPOCH_NS, session_s=3_600.0)
    spec = SessionSpec(markets=MARKETS, starting_cash=1_000_000_000, seed=7, execution="venue")
    meta = SessionMeta(session_id="live-disk-full", mode="demo", venue="sim", seed=7, created_ns=time.time_ns())
    log = await create_log(tmp_path, meta)
    failed = []

    def fill_the_disk_once_an_order_rests(watch, _elapsed) -> None:
        resting = [o for o in exchange.orders(TRUST) if o.status == "resting"]
        if resting and watch.router.venue_order_ids() and not failed:
            failed.append([o.order_id for o in resting])

            def full(fd, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(os, "write", full)

    async with ExchangeServer(exchange, speed=100.0) as server, log, \
            KalshiRest(server.rest_url, backoff_s=0.01) as rest, \
            KalshiFeed(server.ws_url, MARKETS, channels=CHANNELS, rest=rest, backoff_s=0.01) as feed:
        session = PaperSession(log, spec, feed, session_id=meta.session_id, decide_every_s=0.2, rest=rest,
                               drain_s=5.0, policies=PROVIDER)
        with pytest.raises(SequencerStopped, match="No space left on device"):
            await session.run(30.0, fill_the_disk_once_an_order_rests)
        monkeypatch.undo()
    assert failed, "no order of ours ever rested at the exchange"
    assert all(o.status != "resting" for o in exchange.orders(TRUST))
