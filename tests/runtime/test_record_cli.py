"""`tape record`: market data from a venue into a new session of the event log (real sockets, real logs)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.events import BookDelta, BookSnapshot, SessionEnded, SessionStarted
from runtime.log import list_sessions, open_log
from runtime.log.tools import verify_log
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from runtime.venues.sim.session import EPOCH_NS

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}


def tape(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


async def events_of(target: str, session: str | None = None) -> list:
    out = []
    async with await open_log(target, session=session) as log:
        assert (await verify_log(log)).ok
        async for batch in log.read():
            out.extend(r.event for r in batch)
    return out


async def test_recording_the_in_process_exchange_writes_a_complete_verified_session(tmp_path):
    done = await asyncio.to_thread(tape, "record", "--markets", "3", "--duration", "2", "--speed", "200",
                                   "--seed", "5", "--log", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stdout and "tape log info" in done.stdout
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    events = await events_of(str(run))
    started, ended = events[0], events[-1]
    assert isinstance(started, SessionStarted) and started.mode == "record" and started.venue == "sim"
    assert len(set(started.markets)) == 3 and started.seed == 5  # the 3 most liquid of the exchange's 12
    assert isinstance(ended, SessionEnded) and ended.reason == "completed"
    assert {e.market for e in events if isinstance(e, BookSnapshot)} == set(started.markets)
    assert sum(isinstance(e, BookDelta) for e in events) > 10  # 400 s of event time was recorded


async def test_recording_a_running_exchange_by_url_with_named_tickers(tmp_path):
    exchange = Exchange(4, 3, start_ns=EPOCH_NS, session_s=3_600.0)
    async with ExchangeServer(exchange, speed=100.0) as server:
        done = await asyncio.to_thread(tape, "record", "--url", server.ws_url, "--markets", "KXSIM-001,KXSIM-003",
                                       "--duration", "1.5", "--log", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    events = await events_of(str(run))
    assert events[0].markets == ("KXSIM-001", "KXSIM-003")
    assert {e.market for e in events if isinstance(e, (BookSnapshot, BookDelta))} == {"KXSIM-001", "KXSIM-003"}


async def test_an_unknown_ticker_is_refused_by_name_before_anything_is_written(tmp_path):
    exchange = Exchange(2, 3, start_ns=EPOCH_NS)
    async with ExchangeServer(exchange) as server:
        done = await asyncio.to_thread(tape, "record", "--url", server.ws_url, "--markets", "KXSIM-001,NOPE-1",
                                       "--duration", "1", "--log", str(tmp_path))
    assert done.returncode == 2
    assert "NOPE-1" in done.stderr and "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, needle", [
    (["--markets", "0"], "--markets"),
    (["--markets", "A,A"], "twice"),
    (["--duration", "0"], "--duration"),
    (["--speed", "-1"], "--speed"),
    (["--url", "http://example.com/x"], "--url"),
])
def test_bad_arguments_exit_2_naming_the_argument(tmp_path, args, needle):
    done = tape("record", "--log", str(tmp_path), *args)
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr


def test_kalshi_without_an_api_key_says_which_variables_to_set(tmp_path):
    env = {k: v for k, v in ENV.items() if not k.startswith("KALSHI_")}
    done = subprocess.run([TAPE, "record", "--venue", "kalshi-demo", "--markets", "KXA-1", "--log", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "KALSHI_API_KEY_ID" in done.stderr


def test_help_is_complete():
    done = tape("record", "--help")
    assert done.returncode == 0
    for word in ("--venue", "--markets", "--duration", "--log", "--url", "kalshi-demo", "examples"):
        assert word in done.stdout


@pytest.mark.postgres
async def test_recording_into_postgresql(pg_schema_dsn):
    done = await asyncio.to_thread(tape, "record", "--markets", "2", "--duration", "1.5", "--speed", "200",
                                   "--log", pg_schema_dsn)
    assert done.returncode == 0, done.stderr
    (session,) = await list_sessions(pg_schema_dsn)
    events = await events_of(pg_schema_dsn, session.session_id)
    assert events[0].mode == "record" and isinstance(events[-1], SessionEnded)
    assert {e.market for e in events if isinstance(e, BookSnapshot)} == set(events[0].markets)
    assert len(events[0].markets) == 2


async def test_a_number_of_markets_means_the_most_liquid_ones():
    """--markets N picks the N open markets with the narrowest spread (most Kalshi markets are too wide)."""
    from runtime.cli.venue import resolve_markets

    exchange = Exchange(8, 3, start_ns=EPOCH_NS)
    exchange.advance(EPOCH_NS)  # open every market with its makers' first quotes
    spreads = {}
    for ticker in exchange.tickers:
        book = exchange.book(ticker)
        spreads[ticker] = 10_000 - max(book.no_bids)[0] - max(book.yes_bids)[0]
    async with ExchangeServer(exchange) as server:
        server.pause()
        picked = await resolve_markets(server.rest_url, None, 3, None, "sim")
    assert sorted(picked) == picked and len(picked) == 3
    assert max(spreads[t] for t in picked) <= min(spreads[t] for t in exchange.tickers if t not in picked)
