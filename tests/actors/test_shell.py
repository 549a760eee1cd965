"""The generic shell and the Ray runner: the same log as in-process, and a killed shell rebuilt mid-session."""

from __future__ import annotations

import threading
from pathlib import Path

import msgspec
import pytest

from actors import shell
from actors.channel import Channel, ChannelClosed, ChannelServer, ShellFailed
from actors.shell import RayRunner, Shell
from policies.registry import PROVIDER
from replay.verify import verify
from runtime.log import open_log
from runtime.sequencer import InProcessRunner
from runtime.topology import topology
from tests.runtime.test_sequencer import paper_inputs, read_all, write_session

encode = msgspec.msgpack.encode


async def test_a_shell_folds_a_batch_like_its_machine_and_round_trips_its_snapshot(tmp_path):
    """Without Ray: handle_batch on msgpack records derives what the machine derives; snapshot/restore and
    last_seq carry over."""
    spec, inputs = paper_inputs()
    await write_session(tmp_path, spec, inputs)
    records = await read_all(tmp_path / "run")
    node = topology(spec, PROVIDER)[-1]  # the orchestrator
    shell, machine = Shell(node), node.build()
    expected = [d for r in records for d in machine.handle(r.seq, r.ts_ns, r.event)]
    got = msgspec.msgpack.decode(shell.handle_batch(encode(records[:300])), type=list)
    got += msgspec.msgpack.decode(shell.handle_batch(encode(records[300:])), type=list)
    assert encode(got) == encode(expected) and expected
    assert shell.last_seq() == len(records)
    last, data = shell.snapshot()
    copy = Shell(node, data, last)
    assert (copy.last_seq(), copy.snapshot()) == (last, (last, data))


async def _logs(tmp_path: Path, spec, inputs, checkpoint_every: int | None = None, **kw) -> tuple[bytes, bytes]:
    await write_session(tmp_path / "local", spec, inputs, checkpoint_every=checkpoint_every)
    await write_session(tmp_path / "ray", spec, inputs, checkpoint_every=checkpoint_every, **kw)
    return encode(await read_all(tmp_path / "local" / "run")), encode(await read_all(tmp_path / "ray" / "run"))


@pytest.mark.slow
@pytest.mark.parametrize("channels", [True, False], ids=["channels", "ray-calls"])
async def test_the_ray_runner_writes_the_same_log_as_the_in_process_runner(ray_session, tmp_path, channels):
    """Same inputs, same batching: the records are identical byte for byte, and so are the segment files and the
    checkpoints (every machine's snapshot); over the shells' channels or (the fallback) through Ray calls alone."""
    spec, inputs = paper_inputs(markets=3, duration_s=600)
    local, on_ray = await _logs(tmp_path, spec, inputs, checkpoint_every=300,
                                runner=lambda log: RayRunner(topology(spec, PROVIDER), log, channels=channels))
    assert local == on_ray
    for pattern, least in (("*.seg", 1), ("checkpoints/*.ckpt", 2)):
        files = sorted((tmp_path / "local" / "run").glob(pattern))
        assert len(files) >= least and [p.read_bytes() for p in files] == [
            (tmp_path / "ray" / "run" / p.relative_to(tmp_path / "local" / "run")).read_bytes() for p in files]


@pytest.mark.slow
async def test_a_killed_shell_is_rebuilt_and_the_session_goes_on_unchanged(ray_session, tmp_path):
    """Mid-session the orchestrator's shell (after a checkpoint), two books' and the cash pool's are killed: each is
    rebuilt from its snapshot at the last checkpoint (or from scratch) and the log's tail, the session goes on, the log is the in-process
    runner's, and it verifies."""
    spec, inputs = paper_inputs(markets=3, duration_s=600)
    runners: list[RayRunner] = []

    def make(log):
        runners.append(RayRunner(topology(spec, PROVIDER), log))
        return runners[-1]

    def kill(n: int) -> None:
        runner = runners[0]
        if n == 12:
            assert runner.kept[-1] is not None
            ray_session.kill(runner.actors[-1])  # the orchestrator: restored from its snapshot + tail
        elif n == 20:
            ray_session.kill(runner.actors[0])  # book:KXSIM-000
        elif n == 21:
            runner.kept[1] = None
            ray_session.kill(runner.actors[1])  # book:KXSIM-001, rebuilt from scratch + the whole log
        elif n == 23:
            ray_session.kill(runner.actors[3])  # the cash pool, before an order: its reservation made by the rebuilt one

    await write_session(tmp_path / "local", spec, inputs)
    await write_session(tmp_path / "ray", spec, inputs, runner=make, between=kill, checkpoint_every=400)
    assert [n.name for n in runners[0].nodes][3] == "cash"
    assert runners[0].restarts == 4
    assert encode(await read_all(tmp_path / "ray" / "run")) == encode(await read_all(tmp_path / "local" / "run"))
    async with await open_log(tmp_path / "ray" / "run") as log:
        assert (await verify(log, policies=PROVIDER)).ok


@pytest.mark.slow
async def test_a_shell_lost_without_closing_its_channel_is_found_by_the_probe(ray_session, tmp_path, monkeypatch):
    """A lost node closes no connection: the batch waits, the probe asks Ray, Ray says the shell is dead, and it is
    rebuilt; the log is still the in-process runner's."""
    monkeypatch.setattr(shell, "PROBE_S", 0.3)
    spec, inputs = paper_inputs(markets=2, duration_s=120)
    silent = ChannelServer(lambda _: threading.Event().wait() or b"", "127.0.0.1")  # takes a batch, never answers
    runners: list[RayRunner] = []

    def make(log):
        runners.append(RayRunner(topology(spec, PROVIDER), log))
        return runners[-1]

    async def lose(n: int) -> None:
        if n == 5:
            runner = runners[0]
            runner.channels[-1] = await Channel.open("orchestrator", silent.address, silent.token)
            ray_session.kill(runner.actors[-1])

    await write_session(tmp_path / "local", spec, inputs)
    await write_session(tmp_path / "ray", spec, inputs, runner=make, between=lose)
    silent.close()
    assert runners[0].restarts == 1
    assert encode(await read_all(tmp_path / "ray" / "run")) == encode(await read_all(tmp_path / "local" / "run"))


async def test_a_machine_that_raises_reaches_the_driver_naming_its_node():
    """Over the channel, a handler's exception comes back as ShellFailed with the node and the remote traceback."""
    def handler(payload: bytes) -> bytes:
        if payload == b"bad":
            raise ValueError("no such market")
        return payload[::-1]

    server = ChannelServer(handler, "127.0.0.1")
    channel = await Channel.open("book:X", server.address, server.token)
    channel.send(b"abc")
    assert await channel.receive() == b"cba"
    channel.send(b"bad")
    with pytest.raises(ShellFailed, match=r"(?s)book:X failed.*ValueError: no such market"):
        await channel.receive()
    channel.send(b"still served")
    assert await channel.receive() == b"devres llits"
    channel.close()
    with pytest.raises(ChannelClosed):  # a wrong token: the shell closes the connection
        await Channel.open("book:X", server.address, b"guess")
    server.close()


def test_the_in_process_runner_is_the_reference(tmp_path):
    """The in-process runner builds one machine per node, in node order."""
    spec, _ = paper_inputs(markets=2, duration_s=60)
    runner = InProcessRunner(topology(spec, PROVIDER))
    assert [type(m).__name__ for m in runner.machines] == ["OrderBook", "OrderBook", "InformedCashPool", "PaperMatcher",
                                                            "Positions", "Orchestrator"]
