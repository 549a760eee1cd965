"""Decision rounds in lockstep, and the policies in Ray actors of their own: the same log, byte for byte.

A timer makes every market due at once; the orchestrator asks each role once per step for all of them
(``decide_many``) and must still log exactly what deciding them one by one logs. With ``--policy-actors`` those
calls go to one Ray actor per role, and the log is still the in-process one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from actors.orchestrator import Orchestrator
from actors.policy_actor import PolicyActors, calls, start, stop
from actors.shell import RayRunner
from policies.base import ROLES, decide_many
from policies.registry import PROVIDER, model_events
from replay.bench import paper_inputs
from replay.verify import verify
from runtime.events import ModelLoaded, OrderFilled, OrderIntent, PolicyDecided, TimerFired
from runtime.log import open_log
from runtime.sequencer import InProcessRunner
from runtime.topology import PolicyProvider, Routes, session_inputs, topology
from tests.runtime.test_sequencer import read_all, write_session

encode = msgspec.msgpack.encode
MODEL = Path(__file__).parents[1] / "policies" / "models" / "ppo@7abd83a9253d"
TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


def session(policy: str = "rule", *, markets: int = 4, duration_s: float = 1200):
    """``replay.bench.paper_inputs(seed=7)`` traded by ``policy``: the spec and the inputs."""
    spec, inputs = paper_inputs(seed=7, markets=markets, duration_s=duration_s)
    if policy != "rule":
        spec = msgspec.structs.replace(spec, policy=policy)
        inputs = session_inputs(spec, inputs[0][0], session_id="paper-7") + inputs[2:]
    return spec, inputs


def in_process(spec, provider: PolicyProvider = PROVIDER, *, lockstep: bool | None):
    def make(log):
        runner = InProcessRunner(topology(spec, provider))
        orchestrator = runner.machines[-1]
        assert isinstance(orchestrator, Orchestrator)
        orchestrator.lockstep = lockstep
        return runner

    return make


def actors() -> PolicyActors:
    """Policy actors of a session of their own (their names are the test's alone)."""
    return PolicyActors(PROVIDER, f"test-{uuid.uuid4().hex[:8]}")


async def log_bytes(path: Path) -> bytes:
    return encode(await read_all(path))


async def verified(path: Path) -> bool:
    async with await open_log(path) as log:
        report = await verify(log, policies=PROVIDER)
    assert report.ok, report.divergence
    return report.ok


# --- lockstep ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["rule", "random:3"])
async def test_a_round_in_lockstep_logs_what_one_market_after_the_other_logs(tmp_path, policy):
    """Four markets for 20 minutes, each timer making them all due: the records are the same bytes whether a round's
    markets are decided in lockstep or one by one. The rules place an order in one market of a round at most; the
    random policies place orders in several markets of one round, so the later ones must see the cash the earlier
    ones' orders hold (and number their client order ids after theirs)."""
    spec, inputs = session(policy)
    await write_session(tmp_path / "lockstep", spec, inputs, runner=in_process(spec, lockstep=True))
    await write_session(tmp_path / "serial", spec, inputs, runner=in_process(spec, lockstep=False))
    records = await read_all(tmp_path / "lockstep" / "run")
    assert encode(records) == await log_bytes(tmp_path / "serial" / "run")
    timers = {r.seq for r in records if type(r.event) is TimerFired}
    intents = Counter(r.event.cause_seq for r in records if type(r.event) is OrderIntent)
    fills = sum(type(r.event) is OrderFilled for r in records)
    if policy == "rule":
        assert fills >= 15, fills
        assert not topology(spec, PROVIDER)[-1].build()._batches()  # in-process rules: one by one, by default
    else:
        assert sum(n >= 2 for seq, n in intents.items() if seq in timers) >= 5  # orders in several markets of a round


class Counting:
    """A policy that notes every ``decide_many`` it answers: ``(role, observations)``."""

    def __init__(self, policy, seen: list) -> None:
        self.policy, self.seen = policy, seen
        self.role, self.version = policy.role, policy.version

    def decide(self, obs):
        return self.decide_many([obs])[0]

    def decide_many(self, observations):
        self.seen.append((self.role, len(observations)))
        return decide_many(self.policy, observations)


def counting(seen: list) -> PolicyProvider:
    return PolicyProvider(named=lambda name: {r: Counting(p, seen) for r, p in PROVIDER.named(name).items()},
                          load=lambda event: Counting(PROVIDER.load(event), seen))


async def test_each_role_is_asked_once_per_round_and_policy_actors_get_exactly_those_calls(ray_session, tmp_path):
    """Folding a session's log through an orchestrator whose policies count their calls: in a timer's round each
    role is asked at most once per wave (one, plus one per order placed), most rounds once for all four markets. The
    same log through policy actors: each role's actor gets exactly those calls, one Ray call each."""
    spec, inputs = session(duration_s=600)
    await write_session(tmp_path, spec, inputs)
    records = await read_all(tmp_path / "run")

    def orchestrator(provider: PolicyProvider) -> tuple[Orchestrator, int]:
        nodes = topology(spec, provider)
        return nodes[-1].build(), len(nodes) - 1  # type: ignore[return-value]

    seen: list[tuple[str, int]] = []
    machine, index = orchestrator(counting(seen))
    targets = Routes(topology(spec, PROVIDER)).targets
    derived: list = []
    per_round: list[tuple[Counter, int]] = []
    for r in records:
        if index not in targets(r.event):
            continue
        before = len(seen)
        out = machine.handle(r.seq, r.ts_ns, r.event)
        derived.extend(out)
        if type(r.event) is TimerFired:
            per_round.append((Counter(role for role, _ in seen[before:]), sum(type(e) is OrderIntent for e in out)))
    assert all(n <= 1 + placed for asked, placed in per_round for n in asked.values())
    assert max(size for role, size in seen if role == "signal") == 4  # all four markets in one call
    assert sum(1 for asked, placed in per_round if not placed and asked) > len(per_round) // 2

    hosts = actors()
    machine, _ = orchestrator(hosts.provider())
    remote = [e for r in records if index in targets(r.event) for e in machine.handle(r.seq, r.ts_ns, r.event)]
    assert encode(remote) == encode(derived) and derived
    got = calls(hosts)
    assert {role: got[role] for role in ROLES} == {role: Counter(n for r, n in seen if r == role) for role in ROLES}


# --- policy actors -------------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_policy_actors_on_ray_write_the_in_process_log_and_it_verifies(ray_session, tmp_path):
    """The seed-7 session of four markets on Ray shells, the orchestrator's policies in policy actors started by the
    driver: the records, the segment files and the checkpoints are the in-process runner's, byte for byte, and the log
    replays."""
    spec, inputs = session()
    hosts = actors()
    kept = start(hosts)  # from the driver, as tape paper does: they outlive the shells
    await write_session(tmp_path / "local", spec, inputs, checkpoint_every=1000)
    await write_session(tmp_path / "ray", spec, inputs, checkpoint_every=1000,
                        runner=lambda log: RayRunner(topology(spec, hosts.provider()), log))
    local, remote = tmp_path / "local" / "run", tmp_path / "ray" / "run"
    assert await log_bytes(remote) == await log_bytes(local)
    for pattern, least in (("*.seg", 1), ("checkpoints/*.ckpt", 2)):
        files = sorted(local.glob(pattern))
        assert len(files) >= least
        assert [p.read_bytes() for p in files] == [(remote / p.relative_to(local)).read_bytes() for p in files]
    assert sum(c.total() for c in calls(hosts).values()) > 1000  # the decisions were made there
    stop(hosts)
    del kept
    assert await verified(remote)


@pytest.mark.slow
async def test_a_model_loaded_mid_session_reaches_the_policy_actors_and_survives_the_orchestrators_restart(
        ray_session, tmp_path):
    """A trained model (tests/policies/models) loaded a third of the way through (hot reload) is loaded by the policy
    actors too; the orchestrator's shell, killed after a checkpoint that holds the model, is rebuilt and finds (or
    makes again) its actors from the loaded models its snapshot names: the log is the in-process one, byte for byte,
    decided by the model from the load on, and it verifies."""
    spec, inputs = session(markets=3, duration_s=600)
    at = len(inputs) // 3
    inputs = [*inputs[:at], *((inputs[at][0], e) for e in model_events(MODEL)), *inputs[at:]]
    await write_session(tmp_path / "local", spec, inputs, checkpoint_every=500)
    local = await read_all(tmp_path / "local" / "run")
    loaded = max(r.seq for r in local if type(r.event) is ModelLoaded)
    hosts = actors()
    runners: list[RayRunner] = []

    def make(log):
        runners.append(RayRunner(topology(spec, hosts.provider()), log))
        return runners[-1]

    def kill(n: int) -> None:
        if n == (len(inputs) * 3 // 4) // 50:
            runner = runners[0]
            assert runner.kept[-1] is not None and runner.kept[-1][0] > loaded  # its snapshot names the model
            ray_session.kill(runner.actors[-1])

    await write_session(tmp_path / "ray", spec, inputs, checkpoint_every=500, runner=make, between=kill)
    assert runners[0].restarts == 1
    records = await read_all(tmp_path / "ray" / "run")
    assert encode(records) == encode(local)
    roles = {e.role for e in model_events(MODEL)}
    after = [r.event for r in records if type(r.event) is PolicyDecided and r.seq > loaded and r.event.role in roles]
    assert len(after) >= 20 and {e.version for e in after} == {"ppo@7abd83a9253d"}
    assert await verified(tmp_path / "ray" / "run")


# --- the command line ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--runner", "inprocess", "--policy-actors"],
     "tape paper: --policy-actors hosts the policies in Ray actors: it needs --runner ray (in this process the "
     "orchestrator calls its policies directly)\n"),
    (["--policy-actors", "tape_gpu=1"],
     "tape paper: --policy-actors: 'tape_gpu=1': expected RESOURCE[:AMOUNT] (the names are given: policy:*), e.g. "
     "'tape_gpu' or 'tape_gpu:0.5'\n"),
])
def test_tape_paper_refuses_policy_actors_it_cannot_run(tmp_path, args, message):
    done = subprocess.run([TAPE, "paper", "--log", str(tmp_path), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.endswith(message), done.stderr
    assert not any(tmp_path.iterdir())


# --- figures -------------------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_round_latency_figures(ray_session, tmp_path):
    """Prints, never asserts, what a timer's round of four markets costs the orchestrator (its ``handle`` of the
    ``TimerFired``, the decisions included): policies in its process (one market after the other, the default there),
    in policy actors with the round in lockstep (the default there), and in policy actors one market after the other. Asserts only that all three derive the same events. Run:
    ``pytest tests/actors/test_policy_actors.py -k latency -s``."""
    import statistics
    import time

    spec, inputs = session(duration_s=600)
    await write_session(tmp_path, spec, inputs)
    records = await read_all(tmp_path / "run")
    nodes = topology(spec, PROVIDER)
    index, targets = len(nodes) - 1, Routes(nodes).targets
    mine = [r for r in records if index in targets(r.event)]
    hosts = actors()
    kept = start(hosts)
    figures, outputs = {}, []
    for name, provider, lockstep in (("in process", PROVIDER, None), ("policy actors, lockstep", hosts.provider(), None),
                                     ("policy actors, one by one", hosts.provider(), False)):
        machine = topology(spec, provider)[-1].build()
        machine.lockstep = lockstep  # type: ignore[attr-defined]
        rounds, out = [], []
        for r in mine:
            started = time.perf_counter()
            out.extend(machine.handle(r.seq, r.ts_ns, r.event))
            if type(r.event) is TimerFired:
                rounds.append((time.perf_counter() - started) * 1e3)
        outputs.append(encode(out))
        rounds.sort()
        figures[name] = (statistics.median(rounds), rounds[int(len(rounds) * 0.99)], statistics.fmean(rounds),
                         len(rounds))
    del kept
    assert outputs[0] == outputs[1] == outputs[2]
    print(f"\nround latency, {len(spec.markets)} markets (ms): median, p99, mean over the rounds")
    for name, (p50, p99, mean, n) in figures.items():
        print(f"  {name:<26} {p50:7.3f} {p99:7.3f} {mean:7.3f}   ({n} rounds)")
