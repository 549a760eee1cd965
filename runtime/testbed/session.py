"""A paper session sequenced on a cluster from its head node, against the same session in one process: what the
cluster tests and ``tape bench cluster`` run on a testbed's head (over SSH, as a user's driver would).

``python -m runtime.testbed.session OUT PROVIDER [--kill]``: the inputs of ``replay.bench.paper_inputs`` (seed 7: 4
markets, 20 minutes of event time, 17 fills) sequenced with the machines as Ray actors, the books and the
orchestrator placed on the workers (``book:*=tape_worker``, ``orchestrator=tape_worker``), a checkpoint every 500
records; then the same inputs sequenced in process. ``PROVIDER`` names the policy provider as ``module:attribute``
(``policies.registry:PROVIDER``: the kernel imports no policies, it is told where they are). With ``--kill``,
partway through it writes ``OUT/placed.json`` (where each machine runs) and waits for ``OUT/killed`` (the caller
has killed the orchestrator's node), then goes on. It writes ``OUT/result.json``: where the machines ran, the
recoveries, whether the two logs hold the same bytes, and the replay verification.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import msgspec


async def sequence(root: Path, name: str, spec, inputs, runner_for, on_half=None, at_end=None) -> tuple[list, object]:
    from runtime.log import SessionMeta, create_log
    from runtime.sequencer import Sequencer

    log = await create_log(root, SessionMeta(session_id=name, mode="paper", seed=7))
    runner = await runner_for(log)
    sequencer = Sequencer(log, runner, checkpoint_every=500)
    await sequencer.submit(inputs[:2])
    batches = list(range(2, len(inputs), 40))
    for k, lo in enumerate(batches):
        if on_half is not None and k == len(batches) // 2 + 5:  # (not at a checkpoint: a tail to replay)
            await on_half(runner)
        await sequencer.submit(inputs[lo:lo + 40])
    if at_end is not None:
        await at_end(runner)
    await sequencer.close()  # (closes the runner)
    records = []
    async for batch in log.read():
        records += batch
    await log.close()
    return records, runner


def encoded(records: list) -> list[bytes]:
    return [msgspec.msgpack.encode(r) for r in records]


async def main(out: Path, provider: str, kill: bool) -> None:
    import importlib

    import ray

    from actors.shell import RayRunner
    from replay.bench import paper_inputs
    from replay.verify import verify
    from runtime.log import open_log
    from runtime.placement import parse
    from runtime.sequencer import InProcessRunner
    from runtime.topology import topology

    module, _, name = provider.partition(":")
    provided = getattr(importlib.import_module(module), name)  # the injected policy provider
    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    spec, inputs = paper_inputs(seed=7, markets=4, duration_s=1200)
    rules = parse(["book:*=tape_worker", "orchestrator=tape_worker"])
    placed: dict[str, str] = {}
    killed_at: list[float] = []

    async def on_ray(log):
        runner = RayRunner(topology(spec, provided), log, placement=rules)
        await runner.ready()
        placed.update(zip([n.name for n in runner.nodes], await runner.where(), strict=True))
        return runner

    async def half(runner) -> None:
        if kill:
            (out / "placed.json").write_text(json.dumps(placed))
            while not (out / "killed").exists():
                await asyncio.sleep(0.05)
            killed_at.append(time.perf_counter())

    after: dict[str, str] = {}
    ended: list[float] = []

    async def end(runner) -> None:
        ended.append(time.perf_counter())
        after.update(zip([n.name for n in runner.nodes], await runner.where(), strict=True))

    started = time.perf_counter()
    on_cluster, runner = await sequence(out, "cluster", spec, inputs, on_ray, half, end)
    finished = ended[0]

    async def in_process(log):
        return InProcessRunner(topology(spec, provided))

    alone, _ = await sequence(out, "inprocess", spec, inputs, in_process)
    async with await open_log(out / "cluster") as log:
        report = await verify(log, policies=provided, jobs=1)
    mine, theirs = encoded(on_cluster), encoded(alone)
    result = {
        "placed": placed, "after": after, "records": len(on_cluster), "identical": mine == theirs,
        "first_difference": next((r.seq for r, a, b in zip(on_cluster, mine, theirs, strict=False) if a != b), None),
        "verified": report.ok, "divergence": None if report.ok else str(report.divergence),
        "fills": sum(1 for r in on_cluster if type(r.event).__name__ == "OrderFilled"),
        "recoveries": [r._asdict() for r in runner.recoveries],
        "seconds_after_kill": finished - killed_at[0] if killed_at else None, "seconds": finished - started,
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], "--kill" in sys.argv[3:]))
