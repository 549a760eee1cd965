"""`tape paper`: a paper session on loopback against the local exchange, then the replay that proves it.

Real parts throughout: the local exchange's WebSocket server, our feed, the sequencer, file and PostgreSQL
logs, Ray actors (one local instance per test session), and the `tape` command in a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.orchestrator import HALT
from actors.shell import RayRunner
from config.synth import FlowConfig
from policies.registry import PROVIDER
from replay.verify import verify
from runtime.events import OperatorCommand, SessionEnded, SessionStarted
from runtime.ids import new_session_id
from runtime.log import SessionMeta, create_log, list_sessions, open_log
from runtime.paper import PaperSession
from runtime.topology import SessionSpec, topology
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from runtime.venues.sim.session import EPOCH_NS

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}
CHANNELS = ("orderbook_delta", "trade", "market_lifecycle_v2")
MARKETS = ("KXSIM-000", "KXSIM-001", "KXSIM-002")
TIGHT = FlowConfig(tight_share=1.0)  # every market quoted tight and busy: the rule baselines trade them


def tape(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


async def events_of(target: str, session: str | None = None) -> list:
    out = []
    async with await open_log(target, session=session) as log:
        async for batch in log.read():
            out.extend(r.event for r in batch)
    return out


async def run_session(tmp_path: Path, runner_kind: str, seconds: float = 4.0):
    """A paper session on 3 tight markets of an in-process exchange at 200x; returns (log dir, summary)."""
    exchange = Exchange(3, 5, config=TIGHT, start_ns=EPOCH_NS, session_s=3_600.0)
    spec = SessionSpec(markets=MARKETS, starting_cash=1_000_000_000, seed=5, latency_ms=20)
    session_id = new_session_id("paper")
    meta = SessionMeta(session_id=session_id, mode="paper", venue="sim", seed=5, created_ns=time.time_ns())
    log = await create_log(tmp_path, meta)
    runner = RayRunner(topology(spec, PROVIDER), log) if runner_kind == "ray" else None
    async with ExchangeServer(exchange, speed=200.0) as server, log, \
            KalshiFeed(server.ws_url, MARKETS, channels=CHANNELS) as feed:
        session = PaperSession(log, spec, feed, session_id=session_id, runner=runner, decide_every_s=0.2,
                               policies=PROVIDER)
        summary = await session.run(seconds)
        await log.mark("ended", "test")
    return tmp_path / session_id, summary


@pytest.mark.parametrize("runner_kind", ["inprocess", pytest.param("ray", marks=pytest.mark.slow)])
async def test_a_paper_session_trades_and_its_log_replays_identically(tmp_path, runner_kind, request):
    if runner_kind == "ray":
        request.getfixturevalue("ray_session")
    where, summary = await run_session(tmp_path, runner_kind, seconds=8.0)
    assert summary.reason == "completed" and summary.inputs > 100
    assert summary.intents >= 1 and summary.decisions >= 1, summary  # the rule policies acted on tight markets
    assert (summary.execution, summary.venue_fills, summary.gateway, summary.venue_positions) == ("paper", 0, {}, None)
    async with await open_log(where) as log:
        report = await verify(log, policies=PROVIDER)
    assert report.ok, report.divergence
    assert report.records == summary.records and sum(report.derived.values()) == summary.derived
    events = await events_of(str(where))
    assert isinstance(events[0], SessionStarted) and events[0].mode == "paper"
    assert OperatorCommand(command=HALT) in events and isinstance(events[-1], SessionEnded)


async def test_a_halt_leaves_nothing_reserved(tmp_path):
    """The session ends by halting: every working order is canceled, so no cash stays reserved."""
    _, summary = await run_session(tmp_path, "inprocess", seconds=3.0)
    assert summary.reserved == 0


def test_tape_paper_runs_verifies_and_summarises(tmp_path):
    done = tape("paper", "--runner", "inprocess", "--duration", "4", "--speed", "50", "--seed", "5",
                "--log", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for needle in ("paper session completed", "PnL ", "max drawdown $", "fills ", "fees $", "replay verify: ok",
                   "tape replay run", "fills from the paper matcher"):
        assert needle in out, out
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert tape("replay", "verify", str(run)).returncode == 0


@pytest.mark.postgres
def test_tape_paper_on_postgresql(pg_schema_dsn):
    done = tape("paper", "--runner", "inprocess", "--duration", "3", "--speed", "50", "--log", pg_schema_dsn)
    assert done.returncode == 0, done.stderr
    assert "replay verify: ok" in done.stdout
    (session,) = asyncio.run(list_sessions(pg_schema_dsn))
    assert session.status == "ended"


def test_ctrl_c_halts_flushes_ends_and_still_verifies(tmp_path):
    child = subprocess.Popen([TAPE, "paper", "--runner", "inprocess", "--duration", "120", "--speed", "50",
                              "--seed", "5", "--log", str(tmp_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.is_dir() for p in tmp_path.iterdir()):
        time.sleep(0.2)
    time.sleep(3)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert "paper session interrupted" in out and "replay verify: ok" in out
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    events = asyncio.run(events_of(str(run)))
    assert events[-1] == SessionEnded(reason="interrupted")
    assert OperatorCommand(command=HALT) in events


@pytest.mark.parametrize("args, needle", [
    (["--duration", "0"], "--duration"),
    (["--cash", "-5"], "--cash"),
    (["--policies", "model.ckpt"], "--policies"),
    (["--markets", "0"], "--markets"),
    (["--cash", "0.5"], "tape paper: --cash 0.5: less than one contract can cost ($1.01: one contract at $0.9900 "
                        "with its fee and the cash pool's rounding allowance); the cash pool would refuse every order"),
])
def test_bad_arguments_exit_2_naming_the_argument(tmp_path, args, needle):
    done = tape("paper", "--log", str(tmp_path), *args, timeout=60)
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_ticker_is_refused_with_a_few_valid_ones(tmp_path):
    done = tape("paper", "--runner", "inprocess", "--markets", "KXNOPE-1", "--log", str(tmp_path), timeout=60)
    assert done.returncode == 2, done.stderr
    assert ("tape paper: --markets: KXNOPE-1 on sim: market 'KXNOPE-1' not found (HTTP 404); open markets there "
            "include KXSIM-000, KXSIM-001, KXSIM-002, KXSIM-003, KXSIM-004, … (16 in all)\n") in done.stderr
    assert not any(tmp_path.iterdir()), "nothing is logged for a session that cannot start"


def test_help_is_complete():
    done = tape("paper", "--help", timeout=60)
    assert done.returncode == 0
    for word in ("--venue", "--markets", "--duration", "--log", "--seed", "--policies", "--cash", "--runner",
                 "--live-orders", "--i-understand-real-orders", "REAL ORDERS", "examples", "replay"):
        assert word in done.stdout


async def test_a_failing_feed_still_halts_ends_the_session_and_raises(tmp_path):
    """The venue feed dies mid-session: the driver halts (every working order canceled), logs the end with the
    reason, and only then raises the feed's error; the log still replays identically."""
    from runtime.venues.sim.session import SynthSession

    session_inputs = SynthSession(5, 3, 600.0, config=TIGHT)

    entries = list(session_inputs.events())
    assert len(entries) > 600

    async def dying_feed():
        for lo in range(0, 600, 100):
            yield entries[lo : lo + 100]
            await asyncio.sleep(0.05)
        raise ConnectionError("venue gone")

    spec = SessionSpec(markets=session_inputs.tickers, starting_cash=1_000_000_000, seed=5, latency_ms=20)
    meta = SessionMeta(session_id="paper-dies", mode="paper", venue="sim", seed=5, created_ns=time.time_ns())
    log = await create_log(tmp_path, meta)
    async with log:
        session = PaperSession(log, spec, dying_feed(), session_id="paper-dies", decide_every_s=0.05, drain_s=1.0,
                               policies=PROVIDER)
        with pytest.raises(ConnectionError, match="venue gone"):
            await session.run(30.0)
    events = await events_of(str(tmp_path / "paper-dies"))
    assert OperatorCommand(command=HALT) in events
    assert events[-1] == SessionEnded(reason="failed: ConnectionError: venue gone")
    async with await open_log(tmp_path / "paper-dies") as reader:
        assert (await verify(reader, policies=PROVIDER)).ok


def test_tape_paper_trades_the_flow_rules_and_verifies(tmp_path):
    """``--policies flow``: the signed-flow reference rules run live like the baselines, and the log replays."""
    done = tape("paper", "--policies", "flow", "--runner", "inprocess", "--duration", "3", "--speed", "50",
                "--log", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "replay verify: ok" in done.stdout
