"""The sequencer as a specification: inputs in, rounds of derived events out, the log's order deterministic.

The helpers here (:func:`paper_inputs`, :func:`write_session`) build a real paper session from the local
exchange's order-flow model; the replay, shell and CLI tests use them too.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from config import LogSettings
from policies.registry import PROVIDER
from replay.bench import TIGHT, paper_inputs  # noqa: F401 - shared with the other runtime tests
from replay.verify import verify
from runtime.events import (
    BookSnapshot,
    Event,
    OrderFilled,
    OrderIntent,
    Record,
    SessionEnded,
    is_derived,
)
from runtime.log import EventLog, SessionMeta, create_log, open_log
from runtime.sequencer import CHECKPOINT_EVERY, Checkpoint, InProcessRunner, Runner, Sequencer, SequencerStopped
from runtime.topology import SessionSpec, snapshot_bytes, topology

S = 1_000_000_000
SCRATCH = LogSettings(sync="none")


async def write_session(target: str | Path, spec: SessionSpec, inputs: list[tuple[int, Event]], *,
                        runner: Callable[[EventLog], Runner] | None = None, batch: int = 50,
                        session_id: str = "run", between: Callable[[int], object] | None = None,
                        checkpoint_every: int | None = CHECKPOINT_EVERY) -> EventLog:
    """Sequence ``inputs`` in batches of ``batch`` into a new log at ``target``; returns the closed log.
    ``between(n)`` is called before the n-th batch (a test's hook to kill an actor mid-session)."""
    log = await create_log(target, SessionMeta(session_id=session_id, mode="paper", seed=spec.seed), SCRATCH)
    sequencer = Sequencer(log, (runner or (lambda _: InProcessRunner(topology(spec, PROVIDER))))(log),
                          checkpoint_every=checkpoint_every)
    try:
        await sequencer.submit(inputs[:2])  # the session inputs: one batch of their own
        for n, start in enumerate(range(2, len(inputs), batch)):
            if between is not None:
                await _maybe_await(between(n))
            await sequencer.submit(inputs[start:start + batch])
    finally:
        await sequencer.close()
        await log.close()
    return log


async def _maybe_await(value: object) -> None:
    import inspect

    if inspect.isawaitable(value):
        await value


async def read_all(target: str | Path, session: str | None = None) -> list[Record]:
    async with await open_log(target, session=session) as log:
        return [r async for batch in log.read() for r in batch]


# --- the rounds ----------------------------------------------------------------------------------------------
async def test_a_paper_session_sequenced_in_process_replays_and_trades(tmp_path):
    """Three tight markets for ten minutes of event time, traded by the rule baselines: the log verifies, and
    it holds intents and fills (the orchestrator traded)."""
    spec, inputs = paper_inputs()
    await write_session(tmp_path, spec, inputs)
    records = await read_all(tmp_path / "run")
    assert sum(not is_derived(r.event) for r in records) == len(inputs)
    assert sum(type(r.event) is OrderIntent for r in records) >= 2
    assert sum(type(r.event) is OrderFilled for r in records) >= 1
    async with await open_log(tmp_path / "run") as log:
        report = await verify(log, policies=PROVIDER)
    assert report.ok, report.divergence
    assert report.records == len(records) and report.inputs == len(inputs)


async def test_each_round_follows_its_causes_in_order_stamped_with_their_time(tmp_path):
    """Derived events come right after the batch that caused them, ordered by cause seq (round by round),
    each with its cause's ts_ns; inputs keep the order they were submitted in."""
    spec, inputs = paper_inputs(markets=2, duration_s=300)
    await write_session(tmp_path, spec, inputs, batch=7)
    records = await read_all(tmp_path / "run")
    assert [(r.ts_ns, r.event) for r in records if not is_derived(r.event)] == inputs
    by_seq = {r.seq: r for r in records}
    run: list[Record] = []
    for r in [*records, Record(len(records) + 1, 0, SessionEnded())]:
        if is_derived(r.event):
            assert r.ts_ns == by_seq[r.event.cause_seq].ts_ns
            assert r.event.cause_seq < r.seq
            run.append(r)
        elif run:
            for one in _rounds(run):  # within one round, causes never go back
                assert [d.event.cause_seq for d in one] == sorted(d.event.cause_seq for d in one)
            run = []


def _rounds(run: list[Record]) -> list[list[Record]]:
    """Split a run of derived records into rounds: a new round starts at the first record caused by a record
    of the previous round."""
    rounds: list[list[Record]] = [[]]
    first = run[0].seq
    for r in run:
        if r.event.cause_seq >= first:
            rounds.append([])
            first = r.seq
        rounds[-1].append(r)
    return [r for r in rounds if r]


async def test_the_same_inputs_and_batching_give_the_same_log(tmp_path):
    """Two runs of one session, batched alike, write the same records byte for byte."""
    spec, inputs = paper_inputs(seed=2, markets=2, duration_s=300)
    await write_session(tmp_path / "a", spec, inputs)
    await write_session(tmp_path / "b", spec, inputs)
    encode = msgspec.msgpack.encode
    assert encode(await read_all(tmp_path / "a" / "run")) == encode(await read_all(tmp_path / "b" / "run"))


async def test_a_derived_event_cannot_be_submitted_as_an_input(tmp_path):
    spec, _ = paper_inputs(markets=1, duration_s=60)
    log = await create_log(tmp_path, SessionMeta(session_id="run"), SCRATCH)
    sequencer = Sequencer(log, InProcessRunner(topology(spec, PROVIDER)))
    intent = OrderIntent(cause_seq=1, client_order_id="x", market=spec.markets[0], side="bid", price=100, count=100)
    with pytest.raises(ValueError, match=r"submit: input 0 \(OrderIntent\) names a cause_seq"):
        await sequencer.submit([(0, intent)])
    await log.close()


# --- failure: trading stops ----------------------------------------------------------------------------------
async def test_a_log_that_cannot_be_written_stops_the_sequencer(tmp_path, monkeypatch):
    """Disk full mid-session: submit raises SequencerStopped naming the log and the OS error, and every later
    submit is refused; the log holds exactly what was acknowledged before."""
    spec, inputs = paper_inputs(markets=1, duration_s=120)
    log = await create_log(tmp_path, SessionMeta(session_id="run"), SCRATCH)
    sequencer = Sequencer(log, InProcessRunner(topology(spec, PROVIDER)))
    await sequencer.submit(inputs[:2])
    await sequencer.submit(inputs[2:20])
    written = log.last_seq

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SequencerStopped, match=r"run: append failed, trading stops: .*No space left on device"):
        await sequencer.submit(inputs[20:40])
    monkeypatch.undo()
    with pytest.raises(SequencerStopped, match="the sequencer has stopped"):
        await sequencer.submit(inputs[40:60])
    await log.close()
    assert len(await read_all(tmp_path / "run")) == written


async def test_a_batch_the_log_refuses_stops_the_sequencer_too(tmp_path):
    """An input the log refuses (a negative time): nothing of it is fanned out, and the sequencer stops."""
    spec, inputs = paper_inputs(markets=1, duration_s=60)
    log = await create_log(tmp_path, SessionMeta(session_id="run"), SCRATCH)
    runner = InProcessRunner(topology(spec, PROVIDER))
    sequencer = Sequencer(log, runner)
    await sequencer.submit(inputs[:2])
    before = msgspec.msgpack.encode([m.snapshot() for m in runner.machines])
    snapshot = next(e for _, e in inputs if type(e) is BookSnapshot)
    with pytest.raises(SequencerStopped, match=r"append failed, trading stops: append: entry 0 has ts_ns -1"):
        await sequencer.submit([(-1, snapshot)])
    assert msgspec.msgpack.encode([m.snapshot() for m in runner.machines]) == before
    await log.close()


async def test_checkpoints_hold_every_machine_at_submit_boundaries_and_thin_out_as_the_log_grows(tmp_path):
    """A checkpoint is taken after a submit once checkpoint_every records (or a sixteenth of the log) have passed;
    it holds every node's snapshot, in topology order, equal to a fresh in-process fold of the records up to it."""
    spec, inputs = paper_inputs(markets=2, duration_s=600)
    await write_session(tmp_path, spec, inputs, checkpoint_every=150)
    async with await open_log(tmp_path / "run") as log:
        seqs = await log.checkpoints()
        records = [r async for batch in log.read() for r in batch]
        assert len(seqs) >= 4 and seqs[-1] <= log.last_seq
        for before, seq in zip([0, *seqs], seqs, strict=False):
            assert seq - before >= max(150, seq // 16)
        for seq in (seqs[0], seqs[-1]):
            checkpoint = msgspec.msgpack.decode(await log.get_checkpoint(seq), type=Checkpoint)
            fold = InProcessRunner(topology(spec, PROVIDER))
            fold.feed(records[:seq], [])
            assert checkpoint.seq == seq
            assert checkpoint.nodes == tuple((n.name, snapshot_bytes(m)) for n, m in zip(fold.nodes, fold.machines,
                                                                                         strict=True))
            assert seq == len(records) or not is_derived(records[seq].event)  # an input comes next: no round cut
