"""Replay verification as a test (DESIGN §7): a paper session's log replays exactly; a tampered copy fails
at the tampered seq, saying what the replay expected and what the log holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from actors.book import BookState
from actors.cash import CashSnapshot
from policies.registry import PROVIDER
from replay.verify import _segment_on_node, _segments, rebuild, verify
from runtime.events import (
    CashReserved,
    OrderFilled,
    OrderIntent,
    PolicyDecided,
    PositionChanged,
    Record,
    is_derived,
)
from runtime.log import SessionMeta, create_log, open_log
from runtime.topology import SpecMissingError
from tests.runtime.test_sequencer import SCRATCH, paper_inputs, read_all, write_session


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> tuple[Path, list[Record]]:
    """A sequenced paper session (three tight markets, ten minutes) and its records."""
    import asyncio

    root = tmp_path_factory.mktemp("verify")
    spec, inputs = paper_inputs()
    asyncio.run(write_session(root, spec, inputs))
    return root / "run", asyncio.run(read_all(root / "run"))


async def copy_with(records: list[Record], where: Path, change: Callable[[list[Record]], list[Record]]) -> Path:
    """A new log holding ``change(records)`` (seqs renumbered by the log, events as given)."""
    entries = [(r.ts_ns, r.event) for r in change(list(records))]
    log = await create_log(where, SessionMeta(session_id="copy", mode="paper"), SCRATCH)
    for start in range(0, len(entries), 5_000):
        await log.append(entries[start:start + 5_000])
    await log.close()
    return where / "copy"


async def verified(path: Path):
    async with await open_log(path) as log:
        return await verify(log, policies=PROVIDER)


def first(records: list[Record], kind: type, after: int = 0) -> int:
    """Index of the first record of ``kind`` at or after index ``after``."""
    return next(i for i, r in enumerate(records) if i >= after and type(r.event) is kind)


async def test_a_sequenced_paper_session_verifies_with_its_counts(session):
    path, records = session
    report = await verified(path)
    assert report.ok and report.divergence is None
    assert report.records == len(records)
    assert report.inputs == sum(not is_derived(r.event) for r in records)
    assert report.derived["order_intent"] >= 2 and report.derived["order_filled"] >= 1
    assert sum(report.derived.values()) + report.inputs == len(records)
    assert report.spec.markets == ("KXSIM-000", "KXSIM-001", "KXSIM-002") and report.spec.latency_ms == 20


async def test_an_altered_derived_event_is_reported_at_its_seq_with_expected_and_got(session, tmp_path):
    """The first fill's count is changed: verify names that seq, the replay's fill and the logged one."""
    _, records = session
    i = first(records, OrderFilled)
    original = records[i].event
    altered = msgspec.structs.replace(original, count=original.count + 1)

    def alter(rs: list[Record]) -> list[Record]:
        rs[i] = Record(rs[i].seq, rs[i].ts_ns, altered)
        return rs

    report = await verified(await copy_with(records, tmp_path, alter))
    d = report.divergence
    assert (d.seq, d.kind, d.expected, d.got) == (i + 1, "differs", original, altered)
    assert report.records == i
    assert str(d).startswith(f"seq {i + 1}: the log holds OrderFilled(")


async def test_a_dropped_derived_event_is_reported_missing(session, tmp_path):
    """The first intent is dropped: verify expects it at its seq, where the log holds what came after it."""
    _, records = session
    i = first(records, OrderIntent)
    report = await verified(await copy_with(records, tmp_path, lambda rs: rs[:i] + rs[i + 1:]))
    d = report.divergence
    assert (d.seq, d.kind, d.expected, d.got) == (i + 1, "missing", records[i].event, records[i + 1].event)


async def test_a_dropped_event_at_the_end_of_a_round_is_missing_too(session, tmp_path):
    """The reservation of the first intent ends its round; dropped, the log goes on with the next round."""
    _, records = session
    i = first(records, CashReserved)
    report = await verified(await copy_with(records, tmp_path, lambda rs: rs[:i] + rs[i + 1:]))
    assert (report.divergence.seq, report.divergence.kind) == (i + 1, "missing")
    assert report.divergence.expected == records[i].event


async def test_a_derived_event_the_replay_does_not_produce_is_unexpected(session, tmp_path):
    """A decision slipped into the log after the first position change: reported unexpected at its seq."""
    _, records = session
    i = first(records, PositionChanged)
    forged = PolicyDecided(cause_seq=records[i].event.cause_seq, role="signal", market="KXSIM-000",
                           action="buy_yes", version="forged")
    report = await verified(await copy_with(
        records, tmp_path, lambda rs: [*rs[:i + 1], Record(0, rs[i].ts_ns, forged), *rs[i + 1:]]))
    d = report.divergence
    assert (d.seq, d.kind, d.expected, d.got) == (i + 2, "unexpected", None, forged)


async def test_a_log_that_ends_before_its_last_round_is_missing_the_rest(session, tmp_path):
    """Cut right after the first intent: its reservation is missing at the end of the log."""
    _, records = session
    i = first(records, OrderIntent)
    report = await verified(await copy_with(records, tmp_path, lambda rs: rs[:i + 1]))
    d = report.divergence
    assert (d.seq, d.kind, d.got) == (i + 2, "missing", None) and type(d.expected) is CashReserved


async def test_a_log_not_written_by_the_sequencer_is_refused_by_name(session, tmp_path):
    _, records = session
    path = await copy_with(records, tmp_path, lambda rs: rs[:1] + rs[2:])
    with pytest.raises(SpecMissingError, match="seq 2 is not the 'session_spec' operator command"):
        await verified(path)


async def test_rebuild_gives_every_nodes_final_state(session):
    """The state as of the end: books with both sides, the cash pool's balance and no reservation left open
    once the session ended with the markets settled."""
    path, records = session
    async with await open_log(path) as log:
        state = await rebuild(log, policies=PROVIDER)
        midway = await rebuild(log, last=len(records) // 2, policies=PROVIDER)
    assert list(state) == ["book:KXSIM-000", "book:KXSIM-001", "book:KXSIM-002", "cash", "execution", "fills",
                           "orchestrator"]
    assert all(type(state[f"book:KXSIM-00{i}"]) is BookState for i in range(3))
    cash: CashSnapshot = state["cash"]  # (with the MarketInfo its fees were learned from: the synthetic data has it)
    pool = CashSnapshot(**{f: getattr(cash, f) for f in CashSnapshot.__struct_fields__})
    assert cash.cash > 0 and state["orchestrator"].cash == pool and len(cash.market_info) == 3
    assert midway["book:KXSIM-000"].last_update_seq <= len(records) // 2


@pytest.mark.postgres
async def test_a_session_sequenced_into_postgresql_verifies(pg_schema_dsn):
    """The same end-to-end check with the PostgreSQL backend."""
    spec, inputs = paper_inputs(markets=2, duration_s=300)
    await write_session(pg_schema_dsn, spec, inputs, session_id="pg-run")
    async with await open_log(pg_schema_dsn, session="pg-run") as log:
        report = await verify(log, policies=PROVIDER)
    assert report.ok, report.divergence
    assert report.records == (await read_records_count(pg_schema_dsn, "pg-run"))


async def read_records_count(target: str, session: str) -> int:
    return len(await read_all(target, session=session))




@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory) -> tuple[Path, list[Record], list[int]]:
    """The same kind of session with a checkpoint every 200 records or so, its records and checkpoint seqs."""
    import asyncio

    root = tmp_path_factory.mktemp("checkpointed")
    spec, inputs = paper_inputs()
    asyncio.run(write_session(root, spec, inputs, checkpoint_every=200))

    async def seqs() -> list[int]:
        async with await open_log(root / "run") as log:
            return await log.checkpoints()

    return root / "run", asyncio.run(read_all(root / "run")), asyncio.run(seqs())


async def test_a_parallel_replay_proves_what_a_serial_one_does(checkpointed, monkeypatch):
    """Segments between checkpoints replayed on two processes, started from a fork server (as in a process with
    threads: this one may have Ray's): the same records, inputs and derived counts."""
    import multiprocessing

    import replay.verify

    path, records, seqs = checkpointed
    assert len(seqs) >= 4
    monkeypatch.setattr(replay.verify, "_context", lambda: multiprocessing.get_context("forkserver"))
    async with await open_log(path) as log:
        serial = await verify(log, policies=PROVIDER, jobs=1)
        parallel = await verify(log, policies=PROVIDER, jobs=2)
    assert serial.ok and parallel.ok and serial.segments == 1 and parallel.segments == 4 and parallel.jobs == 2
    assert (parallel.records, parallel.inputs, parallel.derived) == (serial.records, serial.inputs, serial.derived)
    assert parallel.records == len(records)


async def test_a_replay_on_ray_proves_what_a_serial_one_does(checkpointed, ray_session, tmp_path):
    """The segments as Ray tasks: the same counts; a tampered record is found at the seq the serial replay finds it;
    a log a task cannot open is an error naming the Ray node and what to use instead."""
    import shutil

    from runtime.log import LogError

    path, records, _ = checkpointed
    async with await open_log(path) as log:
        serial, on_ray = await verify(log, policies=PROVIDER, jobs=1), await verify(log, policies=PROVIDER, jobs=2, on_ray=True)
    assert on_ray.ok and on_ray.segments == 4 and on_ray.jobs == 2
    assert (on_ray.records, on_ray.inputs, on_ray.derived) == (serial.records, serial.inputs, serial.derived)

    i = max(k for k, r in enumerate(records) if type(r.event) is OrderFilled)

    def alter(rs: list[Record]) -> list[Record]:
        rs[i] = Record(rs[i].seq, rs[i].ts_ns, msgspec.structs.replace(rs[i].event, count=rs[i].event.count + 1))
        return rs

    copy = await copy_with(records, tmp_path / "tampered", alter)
    shutil.copytree(path / "checkpoints", copy / "checkpoints")
    async with await open_log(copy) as log:
        serial, on_ray = await verify(log, policies=PROVIDER, jobs=1), await verify(log, policies=PROVIDER, jobs=2, on_ray=True)
    assert serial.divergence is not None and on_ray.divergence == serial.divergence

    task = ray_session.remote(num_cpus=1, max_retries=0)(_segment_on_node)  # what each segment's task runs
    with pytest.raises(LogError, match="on the Ray node at .*PostgreSQL log, or a run directory on a shared"):
        ray_session.get(task.remote(str(tmp_path / "not-on-this-node"), None, 0, None, PROVIDER))


def test_segment_processes_fork_only_where_no_other_thread_runs(checkpointed):
    """``tape replay verify`` in a fresh interpreter forks its segment processes (milliseconds, the replay already
    imported) and proves what the serial replay does; a process running another thread (as a Ray driver or torch
    does) starts them from a fork server instead."""
    import subprocess
    import sys
    import textwrap

    path, records, _ = checkpointed
    code = textwrap.dedent(f"""
        import asyncio, threading
        from policies.registry import PROVIDER
        from runtime.log import open_log
        from replay.verify import _context, verify

        async def main():
            async with await open_log({str(path)!r}) as log:
                print(_context().get_start_method())
                serial = await verify(log, policies=PROVIDER, jobs=1)
                parallel = await verify(log, policies=PROVIDER, jobs=2)
            print(serial.ok, parallel.ok, parallel.segments, serial.records == parallel.records,
                  serial.derived == parallel.derived, parallel.records)
            stop = threading.Event()
            threading.Thread(target=stop.wait, daemon=True).start()
            print(_context().get_start_method())
            stop.set()

        if __name__ == "__main__":
            asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=Path(__file__).parents[2]).stdout.split()
    assert out[1:6] == ["True", "True", "4", "True", "True"] and out[6] == str(len(records))
    assert (out[0], out[7]) == (("fork", "forkserver") if sys.platform == "linux" else (out[0], out[0]))


async def test_a_checkpoint_that_does_not_follow_from_the_records_is_a_state_divergence(checkpointed, tmp_path):
    """The cash pool's snapshot in a checkpoint is changed (a dollar more): the segment before it ends in another
    state, and the parallel replay says so at that seq, naming the cash pool."""
    import shutil

    from runtime.sequencer import Checkpoint

    path, _, _ = checkpointed
    copy = tmp_path / "run"
    shutil.copytree(path, copy)
    async with await open_log(copy) as log:
        seq = _segments(await log.checkpoints(), log.last_seq, 2)[2][0]  # where the third segment starts
        checkpoint = msgspec.msgpack.decode(await log.get_checkpoint(seq), type=Checkpoint)
    nodes = dict(checkpoint.nodes)
    cash = msgspec.msgpack.decode(nodes["cash"], type=CashSnapshot)
    nodes["cash"] = msgspec.msgpack.encode(msgspec.structs.replace(cash, cash=cash.cash + 1_000_000))
    data = msgspec.msgpack.encode(Checkpoint(seq, tuple(nodes.items())))
    for stored in (copy / "checkpoints").glob(f"{seq:020d}.ckpt"):
        stored.unlink()
    async with await open_log(copy, mode="a") as log:
        await log.put_checkpoint(seq, data)
    async with await open_log(copy) as log:
        report = await verify(log, policies=PROVIDER, jobs=2)
        assert (await verify(log, policies=PROVIDER, jobs=1)).ok  # serially the records alone are the truth: no checkpoint is used
    d = report.divergence
    assert d is not None and (d.kind, d.seq, d.node) == ("state", seq, "cash")
    assert "cash differs from the checkpoint stored at this seq" in str(d)


async def test_a_tampered_record_in_a_later_segment_is_found_where_the_serial_replay_finds_it(checkpointed, tmp_path):
    """A fill near the end is altered (the checkpoints copied along): the parallel replay reports the divergence the
    serial one does, at the same seq."""
    import shutil

    path, records, seqs = checkpointed
    i = max(k for k, r in enumerate(records) if type(r.event) is OrderFilled)
    assert i + 1 > seqs[len(seqs) // 2]  # in a later segment

    def alter(rs: list[Record]) -> list[Record]:
        rs[i] = Record(rs[i].seq, rs[i].ts_ns, msgspec.structs.replace(rs[i].event, count=rs[i].event.count + 1))
        return rs

    copy = await copy_with(records, tmp_path, alter)
    shutil.copytree(path / "checkpoints", copy / "checkpoints")
    async with await open_log(copy) as log:
        serial, parallel = await verify(log, policies=PROVIDER, jobs=1), await verify(log, policies=PROVIDER, jobs=2)
    assert serial.divergence is not None and parallel.segments > 1
    assert parallel.divergence == serial.divergence and serial.divergence.seq == i + 1


def test_a_checkpoint_from_older_code_agrees_on_what_it_holds_and_on_nothing_else():
    """A field the stored snapshot predates is not compared; every field it holds must equal ours."""
    from replay.verify import _agrees

    def entry(**fields):
        return ("cash", msgspec.msgpack.encode({"cash": 5, "reservations": [{"cid": "a", **fields}]}))

    assert _agrees(entry(carry=0, filled=3), entry(carry=0))  # ours tracks more than the old checkpoint
    assert not _agrees(entry(carry=1, filled=3), entry(carry=0))  # a value it holds differs
    assert not _agrees(entry(carry=0), entry(carry=0, filled=3))  # ours lacks what it holds
    assert not _agrees(("books", entry(carry=0)[1]), entry(carry=0))  # another node
