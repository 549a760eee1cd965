"""The dashboard's stream: a fold of the log that shows what `tape replay run` rebuilds, published as three channels
(snapshots, then numbered deltas), live and scrubbed; and a client that never reads costs nothing to anyone else.

Real parts: a paper session on the local exchange (in process), its file log, the server on loopback, aiohttp clients.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policies.registry import PROVIDER
from replay.verify import rebuild
from runtime.cli.replay import _summary
from runtime.dashboard import DashboardServer, LiveDashboard, SessionView
from runtime.dashboard.hub import QUEUE_MAX, Client, Hub
from runtime.events import OrderFilled
from runtime.log import open_log

from .client import Watcher
from .sessions import paper_session
from .test_fold_units import market_batches

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished paper session's run directory (6 s at 200x on 3 tight markets: a few thousand records, fills)."""
    run, summary = asyncio.run(paper_session(tmp_path_factory.mktemp("runs"), 6.0))
    assert summary.records > 1_000
    return run


async def replayed(run: Path, seq: int) -> dict:
    """What `tape replay run --to SEQ --json` reports (the same function, in process)."""
    async with await open_log(run) as log:
        return _summary(await rebuild(log, seq, policies=PROVIDER))


async def fills_through(run: Path, seq: int) -> int:
    """Fills logged through ``seq`` (a duplicate trade id counted once, as the positions machine counts)."""
    seen, n = set(), 0
    async with await open_log(run) as log:
        async for batch in log.read(1, seq):
            for r in batch:
                if type(r.event) is OrderFilled and r.event.trade_id not in seen:
                    seen.add(r.event.trade_id)
                    n += 1
    return n


def assert_same_state(trader: dict, replay: dict) -> None:
    """The trader channel shows what replay rebuilds: cash, reserved, every market's row, the open orders."""
    assert (trader["cash"], trader["reserved"]) == (replay["cash"]["cash"], replay["cash"]["reserved"])
    for row in replay["markets"]:
        shown = trader["positions"][row["market"]]
        assert {k: shown[k] for k in row} == row, row["market"]
    keys = ("client_order_id", "market", "side", "price", "count", "remaining", "live")
    assert [{k: o[k] for k in keys} for o in trader["open_orders"]] == replay["open_orders"]


async def test_the_fold_at_any_seq_is_what_replay_run_rebuilds(finished):
    async with await open_log(finished) as log:
        last = log.last_seq
        fills = [r.seq async for batch in log.read() for r in batch if type(r.event) is OrderFilled]
    assert fills, "the session filled orders"
    for seq in sorted({2, last // 3, fills[0] - 1, fills[0], fills[0] + 1, last}):
        view = SessionView()
        async with await open_log(finished) as log:
            async for batch in log.read(1, seq):
                view.fold(batch)
        assert view.through == seq
        assert_same_state(view.trader(), await replayed(finished, seq))
        assert view.fills == await fills_through(finished, seq)


def test_tape_dashboard_scrubbed_to_a_seq_shows_what_tape_replay_run_prints(finished):
    """Through the command line: `tape replay run --to SEQ --json` against a dashboard client's seek to SEQ."""
    async def main(port: int, seq: int) -> dict:
        async with Watcher(f"http://127.0.0.1:{port}/ws") as w:
            await w.send({"op": "hello"})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades")
            await w.send({"op": "seek", "seq": seq})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades" and m["paused"])
            assert w.through == seq
            return w.state["trader"]

    child = subprocess.Popen([TAPE, "dashboard", str(finished), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = child.stdout.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line + child.stderr.read()
        port = int(line.split(":")[3].split("/")[0])
        last = asyncio.run(_last_seq(finished))
        for seq in (last // 2, last):
            trader = asyncio.run(main(port, seq))
            printed = json.loads(subprocess.run([TAPE, "replay", "run", str(finished), "--to", str(seq), "--json"],
                                                capture_output=True, text=True, env=ENV, check=True).stdout)
            assert printed["through_seq"] == seq
            assert_same_state(trader, printed)
    finally:
        child.terminate()
        out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "dashboard: stopped" in out


async def _last_seq(run: Path) -> int:
    async with await open_log(run) as log:
        return log.last_seq


async def caught_up(w: Watcher, run: Path) -> None:
    """Receive until the client shows the whole (finished) log."""
    last = await _last_seq(run)
    await w.until(lambda m: w.through == last and w.state.get("trades") is not None and w.head.get("through") == last)


async def test_a_live_session_streams_snapshots_then_every_delta_in_order(tmp_path):
    """A client watching a paper session as it runs (the server in its own process, as tape paper --dashboard runs
    it) gets each channel's snapshot, then deltas numbered without a gap; at the end its state is the replay's.
    A second client that never reads a byte is connected throughout: nothing changes for the first, or the session."""
    boards: list[LiveDashboard] = []
    clients: list[asyncio.Task] = []
    done = asyncio.Event()
    watchers: list[Watcher] = []

    async def watch(url: str) -> None:
        async with Watcher(url) as w:
            watchers.append(w)
            await w.send({"op": "hello"})
            while not (done.is_set() and w.head.get("log_status") == "ended" and w.through == w.head["through"]):
                await w.receive(timeout=30)

    async def on_log(run: Path) -> None:
        board = LiveDashboard.start(str(run), host="127.0.0.1", port=0, token=None)
        assert await board.wait_ready()  # following the log before the session starts (on a busy machine too)
        boards.append(board)
        clients.append(asyncio.create_task(watch(f"http://127.0.0.1:{board.port}/ws")))
        _reader, writer = await asyncio.open_connection("127.0.0.1", board.port)  # a client that never reads
        writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                     b"\x81\x8f\x00\x00\x00\x00" + b'{"op":"hello"} ')
        await writer.drain()
        clients.append(asyncio.create_task(asyncio.sleep(3600)))
        boards.append(writer)  # type: ignore[arg-type]

    run, summary = await paper_session(tmp_path, 5.0, on_log=on_log)
    done.set()
    try:
        await asyncio.wait_for(clients[0], 60)
        (w,) = watchers
        assert w.gaps == 0 and w.deltas > 20 and w.snapshots == 3
        assert w.through == summary.records
        assert_same_state(w.state["trader"], await replayed(run, w.through))
        assert w.state["trader"]["fills"] == summary.fills == await fills_through(run, w.through)
        assert w.state["trader"]["pnl"] == summary.pnl
        assert w.state["trader"]["status"] == "ended: completed"
        assert summary.reason == "completed"
    finally:
        clients[1].cancel()
        boards[1].close()  # type: ignore[attr-defined]
        boards[0].close()


async def test_a_client_that_never_reads_is_dropped_to_snapshots_and_never_waited_for():
    """The hub's ticks hand messages over without waiting: a client whose sends never complete has at most QUEUE_MAX
    messages queued, is then marked behind (it will get snapshots instead), and the other client gets every delta."""
    hub = Hub(_never_opened, tick_s=3600)
    stuck = asyncio.Event()
    got: list[str] = []

    async def never(message: str) -> None:
        await stuck.wait()

    async def reads(message: str) -> None:
        got.append(message)

    slow, fast = Client(never), Client(reads)
    for c in (slow, fast):
        hub.join(c)
    pumps = [asyncio.create_task(hub.pump(c)) for c in (slow, fast)]
    await asyncio.sleep(0.01)


    for batch in market_batches(400):
        hub.view.fold(batch)
        hub.tick()  # returns at once: it never awaits a client
        await asyncio.sleep(0)
        assert len(slow.queue) <= QUEUE_MAX
    assert slow.behind and slow.dropped > 0
    deltas = [json.loads(m) for m in got if '"type":"delta"' in m]
    assert [m["n"] for m in deltas if m["channel"] == "market"] == list(range(1, 1 + hub.n["market"]))
    for p in pumps:
        p.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


async def _never_opened():
    raise AssertionError("this hub's log is never opened")


async def test_a_seek_from_a_checkpoint_rebuilds_what_a_fold_from_the_first_record_does(finished):
    """Scrubbing starts from the nearest checkpoint (the head fold, frozen as it passed by): whichever one it starts
    from, and at the head itself, the view is the one a fold from seq 1 makes."""
    hub = Hub(lambda: open_log(finished), checkpoint_every=400, tick_s=3600)
    await hub.start()
    try:
        last = await _last_seq(finished)
        async with asyncio.timeout(60):
            while hub.view.through < last:
                await asyncio.sleep(0.05)
        assert len(hub._checkpoints) >= 3
        for seq in sorted({1, 399, 400, 401, last // 2, last - 1, last}):
            view = await hub.view_at(seq)
            fresh = SessionView()
            async with await open_log(finished) as log:
                async for batch in log.read(1, seq):
                    fresh.fold(batch)
            assert view.through == fresh.through == seq
            assert (view.trader(), view.market(), view.trades()) == (fresh.trader(), fresh.market(), fresh.trades())
    finally:
        await hub.close()


async def test_a_log_damaged_mid_way_shows_everything_before_the_damage_and_says_where(finished, tmp_path):
    damaged = tmp_path / finished.name
    shutil.copytree(finished, damaged)
    (segment,) = [p for p in damaged.iterdir() if p.suffix == ".seg"]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    server = DashboardServer(str(damaged), port=0)
    await server.start()
    try:
        async with Watcher(f"http://127.0.0.1:{server.port}/ws") as w:
            await w.send({"op": "hello"})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades")
            head = await w.until(lambda m: m["type"] == "head" and m["damage"] is not None) \
                if w.head.get("damage") is None else w.head
        damage = head["damage"]
        assert 1 < damage["after_seq"] < await _last_seq(finished)
        assert damage["message"].startswith(f"corrupt log: {segment} at byte offset ")
        assert "checksum mismatch" in damage["message"]
        assert_same_state(w.state["trader"], await replayed(finished, damage["after_seq"]))
    finally:
        await server.close()


async def test_scrubbing_by_event_time_lands_on_the_last_record_at_or_before_it(finished):
    server = DashboardServer(str(finished), port=0)
    await server.start()
    try:
        async with await open_log(finished) as log:
            records = [r async for batch in log.read() for r in batch]
        target = records[len(records) // 2]
        expected = max(r.seq for r in records if r.ts_ns <= target.ts_ns)
        async with Watcher(f"http://127.0.0.1:{server.port}/ws") as w:
            await w.send({"op": "hello"})
            await caught_up(w, finished)
            await w.send({"op": "seek", "ts_ns": target.ts_ns})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades" and m["paused"])
            assert w.through == expected
            await w.send({"op": "live"})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades" and not m["paused"])
            assert w.through == records[-1].seq
    finally:
        await server.close()


async def test_each_order_carries_its_decision_trace(finished):
    server = DashboardServer(str(finished), port=0)
    await server.start()
    try:
        async with Watcher(f"http://127.0.0.1:{server.port}/ws") as w:
            await w.send({"op": "hello"})
            await caught_up(w, finished)
        orders = w.state["trades"]["orders"]
        assert orders
        for o in orders:
            roles = [d["role"] for d in o["trace"]]
            assert roles and roles[-1] in ("entry", "exit"), o
            assert all(d["cause_seq"] == o["cause_seq"] and d["market"] == o["market"] and d["version"]
                       for d in o["trace"])
            assert o["cause"]["type"] in ("book_delta", "book_snapshot", "public_trade", "timer_fired")
            assert o["state"] in ("filled", "canceled", "rejected", "expired", "accepted", "partially_filled")
        fills = w.state["trades"]["fills"]
        assert {f["client_order_id"] for f in fills} <= {o["client_order_id"] for o in orders}
    finally:
        await server.close()


@pytest.mark.postgres
def test_tape_dashboard_serves_a_postgresql_session_as_replay_rebuilds_it(pg_schema_dsn):
    """A session logged to PostgreSQL: `tape dashboard DSN?session=ID` scrubbed to its end shows what
    `tape replay run` of the same DSN prints."""
    from runtime.log import list_sessions

    done = subprocess.run([TAPE, "paper", "--runner", "inprocess", "--duration", "3", "--speed", "50",
                           "--log", pg_schema_dsn], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr
    (session,) = asyncio.run(list_sessions(pg_schema_dsn))
    target = f"{pg_schema_dsn}&session={session.session_id}"
    printed = json.loads(subprocess.run([TAPE, "replay", "run", target, "--json"], capture_output=True, text=True,
                                        env=ENV, check=True).stdout)
    last = printed["through_seq"]

    async def main(port: int) -> dict:
        async with Watcher(f"http://127.0.0.1:{port}/ws") as w:
            await w.send({"op": "hello"})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades")
            await w.send({"op": "seek", "seq": last})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades" and m["paused"])
            assert w.through == last
            return w.state["trader"]

    child = subprocess.Popen([TAPE, "dashboard", target, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = child.stdout.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line + child.stderr.read()
        assert_same_state(asyncio.run(main(int(line.split(":")[3].split("/")[0]))), printed)
    finally:
        child.terminate()
        child.communicate(timeout=30)
