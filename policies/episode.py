"""One market tape replayed through a paper session's machines, in-process, one decision at a time.

An :class:`Episode` is what a paper session would be on that market's data (:mod:`runtime.topology`: its
book, the cash pool, the paper matcher with the session's latency and queue model, the positions and the
orchestrator), driven by the same rounds as :class:`~runtime.sequencer.Sequencer` with one input per batch:
the two session inputs, then the tape's events with a ``decide`` timer every ``decide_every_ms`` of event
time (as ``tape paper`` has), then ``session_ended``. Seqs are assigned in that order, so
:meth:`Episode.write` can log the very same records, and ``tape replay verify`` proves that training saw
exactly what a paper session on that data would have.

The difference from a paper session is who answers the decisions. :meth:`Episode.steps` is a generator:
whenever the orchestrator's decision (:meth:`actors.orchestrator.Orchestrator.decision`) asks a role in
``agent_roles``, it yields ``(role, observation)`` and waits to be sent the role's decision (a training
environment's agent); every other role is answered by ``policies`` (rule baselines or frozen models). The
orchestrator's code makes every decision either way: prices, the grid, the cash check, the
``PolicyDecided`` and order events are the runtime's, never re-implemented here.

Money is marked as :meth:`value`: realized PnL plus the open position at the mid (at cost without a mid),
net of fees, in micro-dollars, exactly as ``tape paper``'s summary marks it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from actors.book import OrderBook
from actors.orchestrator import Orchestrator
from actors.positions import Positions
from config.profiles import PaperProfile
from runtime.events import Event, Record, Role, SessionEnded, TimerFired
from runtime.topology import Routes, SessionSpec, session_inputs, topology

from .base import ROLES, Policy
from .data import Tape
from .registry import PROVIDER

__all__ = ["DECIDE", "AgentSeat", "Episode"]

DECIDE = "decide"
_MS = 1_000_000


class AgentSeat:
    """The policy slot of a role the agent plays: it names the version the log records and never decides itself."""

    def __init__(self, role: Role, version: str) -> None:
        self.role, self.version = role, version

    def decide(self, obs: Any) -> Any:
        raise RuntimeError(f"the {self.role} role is the agent's: its decisions come from the environment")


class Episode:
    """One tape through the topology (module docstring). ``cash`` in micro-dollars."""

    def __init__(self, tape: Tape, policies: Mapping[Role, Policy], *, agent_roles: frozenset[Role] = frozenset(),
                 agent_version: str = "agent", cash: int, latency_ms: int = 50, decide_every_ms: int = 1_000,
                 seed: int = 0, prefix: str = "t", paper: tuple[str, PaperProfile] | None = None) -> None:
        self.tape = tape
        if paper is None:  # (``latency_ms`` alone: the default profile's queue model)
            self.spec = SessionSpec(markets=(tape.market,), starting_cash=cash, latency_ms=latency_ms, seed=seed,
                                    prefix=prefix)
        else:  # a named paper profile (``config.profiles``): its settings, its name in the spec
            name, p = paper
            self.spec = SessionSpec(markets=(tape.market,), starting_cash=cash, latency_ms=p.latency_ms, seed=seed,
                                    prefix=prefix, queue_model=p.queue_model, cancel_ahead_pct=p.cancel_ahead_pct,
                                    pacing=p.pacing, profile=name)
        self.nodes = topology(self.spec, PROVIDER)
        self.machines = [node.build() for node in self.nodes]
        self.routes = Routes(self.nodes)
        names = [node.name for node in self.nodes]
        self._orch_index = names.index("orchestrator")
        self.orchestrator: Orchestrator = self.machines[self._orch_index]  # type: ignore[assignment]
        self.positions: Positions = self.machines[names.index("fills")]  # type: ignore[assignment]
        self.book: OrderBook = self.machines[names.index(f"book:{tape.market}")]  # type: ignore[assignment]
        self.agent_roles = agent_roles
        seats = {r: AgentSeat(r, agent_version) for r in agent_roles}
        missing = [r for r in ROLES if r not in seats and r not in policies]
        if missing:
            raise ValueError(f"episode: no policy for {missing} (the agent plays {sorted(agent_roles)})")
        self.orchestrator.policies = {r: seats[r] if r in seats else policies[r] for r in ROLES}  # type: ignore[misc]
        self.decide_every_ns = decide_every_ms * _MS
        self.seq = 0
        self.now_ns = tape.start_ns
        self.done = False
        self.log: list[list[Record]] | None = None
        """if set to a list before stepping, every batch (inputs, then each round) is appended to it"""
        self.track_drawdown = False
        """if set before stepping, :attr:`max_drawdown2` follows the marked value after every input's rounds"""
        self.max_drawdown2 = 0
        """twice the deepest fall of :meth:`value` from its running peak, micro-dollars"""

    # -- what the agent is paid on ---------------------------------------------------------------
    def value(self) -> int:
        """Realized PnL + the position marked at the mid (at cost without one) - fees, micro-dollars; the mid may
        be a half tick, so this is exact only as twice the value: :meth:`value2`."""
        return self.value2() // 2

    def value2(self) -> int:
        """Twice :meth:`value`, exact."""
        return self.positions.value2(self.tape.market, self.book.mid2())

    @property
    def position(self) -> int:
        return self.orchestrator.position(self.tape.market)

    # -- the run ---------------------------------------------------------------------------------
    def inputs(self) -> Generator[tuple[int, Event], None, None]:
        """The episode's inputs in order (module docstring)."""
        start = self.tape.start_ns
        yield from session_inputs(self.spec, start, session_id=f"{self.tape.session}:{self.tape.market}")
        every = self.decide_every_ns
        tick = start + every
        ts = start
        for ts, event in self.tape.events:
            while tick <= ts:
                yield tick, TimerFired(name=DECIDE, due_ns=tick)
                tick += every
            yield ts, event
        yield ts, SessionEnded(reason="completed")

    def steps(self) -> Generator[tuple[Role, Any], Any, None]:
        """Run the whole episode; yields ``(role, observation)`` for each decision of an agent role and expects to be
        sent that role's decision (module docstring)."""
        targets, orch_index = self.routes.targets, self._orch_index
        handlers = [m.handle for m in self.machines]
        orchestrator = self.orchestrator
        fold, decide = orchestrator.fold, orchestrator.decision
        policies = orchestrator.policies
        agent = self.agent_roles
        log = self.log
        track = self.track_drawdown
        peak2 = 0
        seq = 0
        for ts, event in self.inputs():
            self.now_ns = ts
            batch: list[tuple[int, Event]] = [(ts, event)]
            while batch:  # a batch, then the rounds it causes (runtime.sequencer)
                first = seq + 1
                if log is not None:
                    log.append([Record(first + k, t, e) for k, (t, e) in enumerate(batch)])
                derived: list[Event] = []
                for t, e in batch:
                    seq += 1
                    for i in targets(e):
                        if i != orch_index:
                            out = handlers[i](seq, t, e)
                            if out:
                                derived.extend(out)
                            continue
                        out_list: list[Event] = []
                        for market in fold(seq, t, e, out_list):
                            decision = decide(seq, t, market, out_list)
                            try:
                                role, obs = next(decision)
                                while True:
                                    answer = (yield role, obs) if role in agent else policies[role].decide(obs)
                                    role, obs = decision.send(answer)
                            except StopIteration:
                                pass
                        if out_list:
                            derived.extend(out_list)
                self.seq = seq
                batch = [(batch[d.cause_seq - first][0], d) for d in derived] if derived else []  # type: ignore[attr-defined]
            if track:
                value2 = self.value2()
                peak2 = max(peak2, value2)
                self.max_drawdown2 = max(self.max_drawdown2, peak2 - value2)
        self.done = True

    def run(self) -> None:
        """The whole episode with every role answered by ``policies`` (no agent roles): a backtest."""
        if self.agent_roles:
            raise ValueError(f"run() answers every role from the policies; the agent plays {sorted(self.agent_roles)}")
        for _ in self.steps():
            raise AssertionError("unreachable: no agent role")

    async def write(self, target: str, *, session_id: str | None = None) -> str:
        """Log what the episode recorded (``self.log``, set before stepping) as a session under ``target``, one append
        per batch; returns the session id. ``tape replay verify`` on it checks the episode against the runtime."""
        from runtime.log import SessionMeta, create_log

        if self.log is None:
            raise ValueError("set episode.log = [] before stepping to record the episode")
        meta = SessionMeta(session_id=session_id or f"episode-{self.tape.session}-{self.tape.market}", mode="paper",
                           venue="replay", seed=self.spec.seed)
        log = await create_log(target, meta)
        async with log:
            for batch in self.log:
                await log.append([(r.ts_ns, r.event) for r in batch])
            await log.mark("ended", "completed")
        return meta.session_id
