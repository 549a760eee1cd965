"""The topology of a paper session, declared in one place: which state machines run and what each receives.

:func:`topology` is the one function that says it (STYLE habit 5). Nodes, in this order (the order is part
of the determinism contract: derived events of one cause are logged in node order)::

    book:<market>   OrderBook            BookSnapshot, BookDelta, BookResynced of its market;
                                         SeqGapDetected naming its market (above 16 markets,
                                         ``books:<first>..<last>``: a BookShard of several markets,
                                         since every node is an actor and every actor a process)
    cash            CashPool             SessionStarted, CashDeposited, OrderIntent, OrderFilled,
                                         OrderRejected, OrderCanceled, OrderExpired, MarketLifecycle, amends;
                                         MarketInfo (its fees: ``actors.market_info.InformedCashPool``)
    execution       PaperMatcher         market data, lifecycle, timers (time advances its latency queue),
                                         OrderIntent, CashReserved, OrderRejected, CancelRequested
                    or Router            (``execution="venue"``) OrderIntent, CashReserved, CancelRequested and
                                         the venue's answers: OrderAccepted, OrderRejected, OrderCanceled,
                                         OrderExpired, OrderFilled, OrderStatusReported; amends (AmendRequested,
                                         OrderAmended, AmendRejected; the paper matcher gets none: a paper
                                         session emits none). It derives nothing:
                                         its work list is what the driver's gateway sends (runtime.paper)
    fills           Positions            OrderFilled (dedupe by trade id), MarketLifecycle
    orchestrator    Orchestrator         market data, lifecycle, timers, models, every order and cash event
                                         its own copies of the cash pool and the positions fold; operator
                                         commands (``halt``: cancel every working order, decide no more)
    shadow          ShadowExecution      (``spec.shadow``, venue execution only) what the paper execution node
                                         folds, and the venue's fills of our orders: the paper matcher's
                                         verdicts on our live orders, kept out of the ledger (actors.shadow)

A node never receives an event type it ignores: a book delta goes to its book, the execution node and the
orchestrator, nothing else. :class:`Routes` precomputes ``event type -> node indices`` (and, for the
per-market book nodes, ``(type, market) -> node indices``), each tuple ascending, so fan-out is a dict
lookup per record.

**The spec in the log.** A session's first input batch is :func:`session_inputs`: ``SessionStarted``
(markets, seed, starting cash, as its fields say) then ``OperatorCommand("session_spec", args)`` holding
the rest of the :class:`SessionSpec` as ``(field, text)`` pairs. ``SessionStarted`` has no fields for the
fee schedule, the paper latency and queue model, the policy or the client order id prefix, and the event
schema is not ours to change here; an operator command is the input type meant for "the operator said
so", it is logged in seq order like every input; only the orchestrator receives operator commands, and
it acts on ``halt`` alone, so the spec changes no state.
:func:`spec_from_log` reads both back at replay time; a field added to the spec later (``books_per_node``,
``execution``, ``rate_limits``) is absent from older logs and takes its default, which is what those sessions ran.

**The policies are injected.** The kernel never imports :mod:`policies` (it imports the kernel: the training
environments fold this very topology). What the orchestrator needs from there — the policies a spec names and the
loader that turns a ``ModelLoaded`` into a policy — comes in as a :class:`PolicyProvider`, passed by whoever
composes a session: the command line, the replay, the training environments pass
``policies.registry.PROVIDER``. It is part of the orchestrator node's ``build`` and ``restore``, so it crosses to
Ray actors and replay processes with them: its functions are module-level, pickled by reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from msgspec import Meta

from actors.book import BookState, OrderBook
from actors.fees import KalshiFees
from actors.machine import StateMachine
from actors.market_info import InformedCashPool, InformedCashSnapshot
from actors.matcher import MatcherSnapshot, PaperMatcher
from actors.positions import Positions, PositionsSnapshot
from actors.router import Router, RouterSnapshot
from actors.shadow import ShadowExecution
from actors.shard import BookShard, BookShardSnapshot
from runtime.events import (
    AmendRejected,
    AmendRequested,
    BookDelta,
    BookResynced,
    BookSnapshot,
    CancelRequested,
    CashDeposited,
    CashReserved,
    Event,
    MarketInfo,
    MarketLifecycle,
    ModelLoaded,
    OperatorCommand,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderStatusReported,
    PublicTrade,
    QueuePositionReported,
    Record,
    Role,
    SeqGapDetected,
    SessionMode,
    SessionStarted,
    TimerFired,
)

if TYPE_CHECKING:
    from actors.orchestrator import Orchestrator

__all__ = ["ROUTER_TYPES", "SPEC_COMMAND", "Node", "PolicyProvider", "Routes", "SessionSpec", "SpecMissingError", "session_inputs", "snapshot_bytes",
           "spec_from_log", "topology"]

SPEC_COMMAND = "session_spec"
_MS = 1_000_000
SHARD_ABOVE = 16  # more markets than this: their books are hosted in shards (a Ray actor is a process)
BOOK_SHARDS = 8


class SessionSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the topology of a session is built from; recorded in the log (see the module docstring)."""

    markets: tuple[str, ...]
    starting_cash: Annotated[int, Meta(ge=0)] = 0
    """micro-dollars"""
    fees: Literal["kalshi"] = "kalshi"
    """the fee schedule: Kalshi's published one (``actors.fees.KalshiFees()``)"""
    latency_ms: Annotated[int, Meta(ge=0, le=60_000)] = 50
    """paper: event time from a decision to the simulated venue"""
    queue_model: Literal["conservative", "proportional", "share", "orders"] = "conservative"
    policy: Annotated[str, Meta(pattern=r"^(rule|flow|random(:[0-9]+)?)$")] = "rule"
    """the four policies at the start: ``rule`` = ``policies.rules.baselines()``, ``flow`` = the signed-flow rules
    (``policies.flow``), ``random[:SEED]`` = uniform random (deterministic), as :attr:`PolicyProvider.named` gives them; a trained model enters as ``ModelLoaded`` inputs"""
    seed: Annotated[int, Meta(ge=0, le=2**63 - 1)] = 0
    prefix: str = "t"
    """client order id prefix of our orders, unique per session"""
    books_per_node: Annotated[int, Meta(ge=0)] = 0
    """markets whose books one node (one actor) hosts; 0: one per market up to 16 markets, else 8 nodes"""
    execution: Literal["paper", "venue"] = "paper"
    """``paper``: the paper matcher fills our orders; ``venue``: they are sent to the venue (the execution node
    is the :class:`~actors.router.Router`, the driver's :class:`~runtime.venues.kalshi.gateway.OrderGateway`
    sends its work list; fills come back as inputs). A log written before this field existed is ``paper``."""
    rate_limits: Literal["none", "basic", "advanced", "premier", "paragon", "prime"] = "none"
    """paper: the Kalshi tier whose order rate the paper matcher enforces in event time (:mod:`actors.limits`; an
    order past it is rejected ``rate_limited``); ``none``: no limit, what a log written before this field existed
    ran with"""
    shadow: bool = False
    """``venue`` execution: a paper matcher with this spec's paper settings shadows our live orders (the ``shadow``
    node, :mod:`actors.shadow`): what it would have filled is logged beside the venue's fills (``ShadowFilled``,
    ``ShadowQueued``), never in the ledger — what ``tape fidelity`` measures"""
    cancel_ahead_pct: Annotated[int, Meta(ge=0, le=100)] = 0
    """paper, ``queue_model = "share"``: the percent of a cancel at a resting order's price taken from ahead of it"""
    pacing: Literal["none", "basic", "advanced", "premier", "paragon", "prime"] = "none"
    """paper: the Kalshi tier our REST client paces itself to, which the paper matcher models: orders and cancels
    wait for its write bucket before reaching the simulated venue (``none``: they never wait)"""
    profile: str = ""
    """the name of the paper profile the paper settings came from (``[paper] profile``, :mod:`config.profiles`);
    the settings themselves are the fields above, so a replay needs nothing but the log"""

    def __post_init__(self) -> None:
        if not self.markets or len(set(self.markets)) != len(self.markets):
            raise ValueError(f"session spec: markets must be distinct and at least one, got {self.markets}")
        if self.shadow and self.execution != "venue":
            raise ValueError("session spec: shadow execution needs live orders (execution = 'venue'): a paper "
                             "session's matcher is already the paper side")


# Fields SessionStarted carries itself; the rest go into the session_spec command.
_IN_STARTED = ("markets", "starting_cash", "seed")


def session_inputs(spec: SessionSpec, ts_ns: int, *, session_id: str, mode: SessionMode = "paper",
                   venue: str = "sim", config_hash: str = "", code_version: str = "") -> list[tuple[int, Event]]:
    """The first input batch of a session: ``SessionStarted`` and the ``session_spec`` operator command."""
    started = SessionStarted(session_id=session_id, mode=mode, venue=venue, seed=spec.seed, config_hash=config_hash,
                             code_version=code_version, markets=spec.markets, starting_cash=spec.starting_cash)
    args = tuple((f, str(getattr(spec, f))) for f in spec.__struct_fields__ if f not in _IN_STARTED)
    return [(ts_ns, started), (ts_ns, OperatorCommand(command=SPEC_COMMAND, args=args))]


class SpecMissingError(ValueError):
    """A log that does not start with ``session_started`` and the ``session_spec`` command."""


def spec_from_log(records: Sequence[Record]) -> SessionSpec:
    """The session's spec from its first two records (``session_inputs``); raises :class:`SpecMissingError`."""
    if len(records) < 2 or type(records[0].event) is not SessionStarted:
        raise SpecMissingError("the log does not start with session_started: not a sequenced session")
    started, command = records[0].event, records[1].event
    if type(command) is not OperatorCommand or command.command != SPEC_COMMAND:
        raise SpecMissingError(f"seq 2 is not the {SPEC_COMMAND!r} operator command: this session was not "
                               "written by the sequencer (its topology cannot be rebuilt)")
    fields = dict(command.args) | {f: getattr(started, f) for f in _IN_STARTED}
    try:
        return msgspec.convert(fields, SessionSpec, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise SpecMissingError(f"seq 2: the {SPEC_COMMAND!r} command does not hold a valid spec: {exc}") from None


@dataclass(frozen=True)
class PolicyProvider:
    """What the orchestrator needs from the policies, injected (module docstring): picklable, as a node's ``build``
    is, so its functions must be module-level ones."""

    named: Callable[[str], Mapping[Role, Any]]
    """the policy per role that a name (``SessionSpec.policy``) stands for"""
    load: Callable[[ModelLoaded], Any]
    """the orchestrator's loader: the policy a ``ModelLoaded`` names"""
    env_vars: tuple[str, ...] = ()
    """environment variables ``named`` and ``load`` read (where models are): a replay on Ray forwards them to its
    workers"""


# --- nodes ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    """One state machine of the topology: how to build it (or restore it from a snapshot) and what it receives.

    ``types`` are the event types it receives; a node with ``markets`` receives the events of ``types`` that
    name one of them (``event.market``, or ``SeqGapDetected.markets``). ``build`` and ``restore`` are
    picklable (they cross to Ray actors).
    """

    name: str
    build: Callable[[], StateMachine]
    restore: Callable[[bytes], StateMachine]
    types: frozenset[type]
    markets: tuple[str, ...] = ()


_MARKET_DATA = (BookSnapshot, BookDelta, PublicTrade, MarketLifecycle, SeqGapDetected, BookResynced, MarketInfo)
_ORDER_EVENTS = (OrderIntent, OrderAccepted, OrderRejected, OrderCanceled, OrderExpired, OrderFilled, CancelRequested)


def topology(spec: SessionSpec, policies: PolicyProvider) -> tuple[Node, ...]:
    """The nodes of a session, in their fixed order (see the module docstring); the orchestrator's policies from
    ``policies``."""
    book_types = frozenset({BookSnapshot, BookDelta, BookResynced, SeqGapDetected})
    per = books_per_node(spec)
    if per == 1:
        books = tuple(Node(f"book:{m}", partial(OrderBook, m), _restore_book, book_types, markets=(m,))
                      for m in spec.markets)
    else:
        shards = [spec.markets[i : i + per] for i in range(0, len(spec.markets), per)]
        books = tuple(Node(f"books:{shard[0]}..{shard[-1]}", partial(BookShard, shard), _restore_shard, book_types,
                           markets=shard) for shard in shards)
    return (
        *books,
        Node("cash", partial(_cash, spec), partial(_restore_cash, spec),
             frozenset({SessionStarted, CashDeposited, OrderIntent, OrderFilled, OrderRejected, OrderCanceled,
                        OrderExpired, MarketLifecycle, AmendRequested, OrderAmended, AmendRejected, MarketInfo})),
        _execution(spec),
        Node("fills", Positions, _restore_positions, frozenset({OrderFilled, MarketLifecycle})),
        Node("orchestrator", partial(_orchestrator, spec, policies), partial(_restore_orchestrator, spec, policies),
             frozenset({*_MARKET_DATA, *_ORDER_EVENTS, TimerFired, ModelLoaded, SessionStarted, CashDeposited,
                        OperatorCommand})),
        *((Node("shadow", partial(_shadow, spec), partial(_restore_shadow, spec), SHADOW_TYPES),) if spec.shadow else ()),
    )


ROUTER_TYPES = frozenset({OrderIntent, CashReserved, CancelRequested, OrderAccepted, OrderRejected, OrderCanceled,
                          OrderExpired, OrderFilled, OrderStatusReported, AmendRequested, OrderAmended, AmendRejected})
"""what :class:`~actors.router.Router` folds: the execution node's events in ``venue`` mode"""


SHADOW_TYPES = frozenset({*_MARKET_DATA, TimerFired, OrderIntent, CashReserved, OrderRejected, CancelRequested,
                          OrderFilled, QueuePositionReported})
"""what the shadow execution folds: the paper execution node's events, the venue's fills of our orders and its
reports of their queue positions"""


def _paper(spec: SessionSpec) -> dict[str, Any]:
    """The paper matcher's settings in a spec (a paper profile's fields)."""
    return {"latency_ns": spec.latency_ms * _MS, "queue_model": spec.queue_model, "cancel_ahead_pct": spec.cancel_ahead_pct,
            "pacing": None if spec.pacing == "none" else spec.pacing}


def _shadow(spec: SessionSpec) -> ShadowExecution:
    return ShadowExecution(_fees(spec).trade_fee, prefix=spec.prefix, **_paper(spec))


def _restore_shadow(spec: SessionSpec, data: bytes) -> ShadowExecution:
    return ShadowExecution.restore(msgspec.msgpack.decode(data, type=MatcherSnapshot), _fees(spec).trade_fee,
                                   prefix=spec.prefix, **_paper(spec))


def _execution(spec: SessionSpec) -> Node:
    """The execution node: the paper matcher, or (``spec.execution == "venue"``) the router."""
    if spec.execution == "venue":
        return Node("execution", Router, _restore_router, ROUTER_TYPES)
    return Node("execution", partial(_matcher, spec), partial(_restore_matcher, spec),
                frozenset({*_MARKET_DATA, TimerFired, OrderIntent, CashReserved, OrderRejected, CancelRequested}))


def _fees(spec: SessionSpec) -> KalshiFees:
    return KalshiFees()  # the only schedule so far (``spec.fees == "kalshi"``)


def _cash(spec: SessionSpec) -> InformedCashPool:
    return InformedCashPool(_fees(spec))


def _matcher(spec: SessionSpec) -> PaperMatcher:
    return PaperMatcher(_fees(spec).trade_fee, **_paper(spec),
                        limits=_limits(spec))


def _limits(spec: SessionSpec) -> str | None:
    return None if spec.rate_limits == "none" else spec.rate_limits


def _orchestrator(spec: SessionSpec, policies: PolicyProvider) -> Orchestrator:
    # (imported here: the orchestrator folds the policies' data types, so importing it loads policies.base; the
    # kernel's modules load no policies module until a session's orchestrator is built)
    from actors.orchestrator import Orchestrator

    return Orchestrator(spec.markets, policies.named(spec.policy), fees=_fees(spec), prefix=spec.prefix,
                        loader=policies.load)


def books_per_node(spec: SessionSpec) -> int:
    """Markets per book node: ``spec.books_per_node``, or when 0, one per market up to
    :data:`SHARD_ABOVE` markets and otherwise as many as make :data:`BOOK_SHARDS` nodes."""
    if spec.books_per_node:
        return spec.books_per_node
    n = len(spec.markets)
    return 1 if n <= SHARD_ABOVE else -(-n // BOOK_SHARDS)


def _restore_shard(data: bytes) -> BookShard:
    return BookShard.restore(msgspec.msgpack.decode(data, type=BookShardSnapshot))


def _restore_book(data: bytes) -> OrderBook:
    return OrderBook.restore(msgspec.msgpack.decode(data, type=BookState))


def _restore_cash(spec: SessionSpec, data: bytes) -> InformedCashPool:
    return InformedCashPool.restore(msgspec.msgpack.decode(data, type=InformedCashSnapshot), _fees(spec))


def _restore_matcher(spec: SessionSpec, data: bytes) -> PaperMatcher:
    return PaperMatcher.restore(msgspec.msgpack.decode(data, type=MatcherSnapshot), _fees(spec).trade_fee,
                                **_paper(spec), limits=_limits(spec))


def _restore_router(data: bytes) -> Router:
    return Router.restore(msgspec.msgpack.decode(data, type=RouterSnapshot))


def _restore_positions(data: bytes) -> Positions:
    return Positions.restore(msgspec.msgpack.decode(data, type=PositionsSnapshot))


def _restore_orchestrator(spec: SessionSpec, policies: PolicyProvider, data: bytes) -> Orchestrator:
    from actors.orchestrator import Orchestrator, OrchestratorSnapshot  # (see _orchestrator)

    return Orchestrator.restore(msgspec.msgpack.decode(data, type=OrchestratorSnapshot), policies.named(spec.policy),
                                fees=_fees(spec), loader=policies.load)


def snapshot_bytes(machine: StateMachine) -> bytes:
    """A machine's ``snapshot()`` as msgpack (what a node's ``restore`` takes)."""
    return msgspec.msgpack.encode(machine.snapshot())


# --- routing -------------------------------------------------------------------------------------------------
class Routes:
    """``event -> indices of the nodes that receive it``, ascending, precomputed per type (and market)."""

    __slots__ = ("_keyed", "_plain")

    def __init__(self, nodes: Sequence[Node]) -> None:
        global_: dict[type, list[int]] = {}
        by_market: dict[type, dict[str, list[int]]] = {}
        for i, node in enumerate(nodes):
            for t in node.types:
                if not node.markets:
                    global_.setdefault(t, []).append(i)
                for market in node.markets:
                    by_market.setdefault(t, {}).setdefault(market, []).append(i)
        self._plain: dict[type, tuple[int, ...]] = {t: tuple(ix) for t, ix in global_.items() if t not in by_market}
        self._keyed: dict[type, tuple[tuple[int, ...], dict[str, tuple[int, ...]]]] = {
            t: (tuple(global_.get(t, ())), {m: tuple(sorted(global_.get(t, []) + ix)) for m, ix in markets.items()})
            for t, markets in by_market.items()
        }

    def targets(self, event: Any) -> tuple[int, ...]:
        """The nodes ``event`` goes to, in node order (empty if none)."""
        t = type(event)
        plain = self._plain.get(t)
        if plain is not None:
            return plain
        keyed = self._keyed.get(t)
        if keyed is None:
            return ()
        default, markets = keyed
        if t is SeqGapDetected:
            return tuple(sorted({*default, *(i for m in event.markets for i in markets.get(m, ()))}))
        return markets.get(event.market, default)

    def split(self, records: Iterable[Record], n: int) -> list[list[Record]]:
        """``records`` divided among ``n`` nodes, each list in seq order."""
        out: list[list[Record]] = [[] for _ in range(n)]
        targets = self.targets
        for r in records:
            for i in targets(r.event):
                out[i].append(r)
        return out
