"""The event schema: every input and every derived event of a tape session.

Events are frozen, tagged msgspec Structs encoded as arrays (``array_like``): compact on disk and fast
to encode and decode. Units are exact integers (:mod:`runtime.units`): prices in 1/10,000 dollar,
counts in 1/100 contract, money in micro-dollars; venue timestamps in Unix milliseconds.

A log record is ``Record(seq, ts_ns, event)``: ``seq`` is assigned by the session's one sequencer,
``ts_ns`` is event time (the receive time stamped at the edge for an input, the cause's time for a
derived event). Every derived event carries ``cause_seq``; events that are inputs when trading live
and derived on paper (acceptances, fills) carry it as optional.

Schema evolution (``SCHEMA_VERSION`` is written into every segment and session):

* a new field is appended at the end of its Struct with a default, so old records still decode;
* a field is never removed, reordered or retyped in place. A breaking change defines a new Struct with
  a new tag (``"order_filled.2"``), keeps the old one in :data:`LEGACY_EVENTS` and registers an
  upcaster in :data:`UPCASTERS` that turns the old event into the new; :func:`upcast` applies it on read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeAlias, Union

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Event",
    "Level",
    "Record",
    "event_type",
    "is_derived",
    "upcast",
]

SCHEMA_VERSION = 1

# --- field types ------------------------------------------------------------------------------------
Price = Annotated[int, Meta(ge=0, le=10_000, description="1/10,000 dollar")]
Count = Annotated[int, Meta(ge=0, description="1/100 contract")]
SignedCount = Annotated[int, Meta(description="1/100 contract, signed")]
Money = Annotated[int, Meta(description="micro-dollars, signed")]
Seq = Annotated[int, Meta(ge=1)]
Level = tuple[Price, Count]  # (price, resting count)

YesNo = Literal["yes", "no"]
BookSide = Literal["bid", "ask"]  # side on the YES leg: buy YES / sell NO = bid; buy NO / sell YES = ask
TimeInForce = Literal["gtc", "ioc", "fok"]
Role = Literal["signal", "sizing", "entry", "exit"]
RejectReason = Literal[
    "insufficient_cash",
    "invalid_price",
    "invalid_count",
    "unknown_market",
    "market_closed",
    "book_stale",
    "post_only_would_cross",
    "fok_unfillable",
    "duplicate_client_order_id",
    "reduce_only_violation",
    "rate_limited",
    "venue_rejected",
    "risk_limit",
    "order_not_open",  # appended: an amend of an order that is not (or no longer) resting
    "amend_pending",  # appended: an amend of an order while its last amend is still on its way
]
LifecycleKind = Literal[
    "created", "activated", "deactivated", "close_date_updated", "determined", "settled"
]
MarketResult = Literal["yes", "no", "scalar", "void"]
VenueOrderStatus = Literal["resting", "canceled", "executed", "pending"]  # Kalshi's order statuses
SessionMode = Literal["live", "paper", "record", "synth", "replay", "demo", "bench"]


class _Event(Struct, frozen=True, array_like=True, gc=False, tag_field="type"):
    """Base of all events: frozen, array-encoded, tagged by a snake_case name."""


def _tag(name: str) -> dict[str, Any]:
    return {"tag": name}


# --- market data (inputs) -----------------------------------------------------------------------------
class BookSnapshot(_Event, **_tag("book_snapshot")):
    """A market's whole book; replaces it. Both sides are bids, as Kalshi sends them."""

    market: str
    yes_bids: tuple[Level, ...] = ()
    no_bids: tuple[Level, ...] = ()
    sid: int | None = None
    venue_seq: int | None = None
    venue_ts_ms: int | None = None


class BookDelta(_Event, **_tag("book_delta")):
    """A signed change of resting size at one level of one side; the level is removed at zero."""

    market: str
    side: YesNo
    price: Price
    delta: SignedCount
    sid: int | None = None
    venue_seq: int | None = None
    client_order_id: str | None = None
    venue_ts_ms: int | None = None


class PublicTrade(_Event, **_tag("public_trade")):
    """A trade printed on the venue's public tape (``yes_price``; the NO price is 1 - it)."""

    market: str
    trade_id: str
    yes_price: Price
    count: Count
    taker_side: YesNo
    sid: int | None = None
    venue_seq: int | None = None
    venue_ts_ms: int | None = None


class MarketLifecycle(_Event, **_tag("market_lifecycle")):
    """A market opened, closed, moved its close, was determined or settled (with its result)."""

    market: str
    kind: LifecycleKind
    result: MarketResult | None = None
    settlement_value: Price | None = None  # YES payout per contract, for determined / settled
    close_ts_ms: int | None = None
    venue_ts_ms: int | None = None


# --- session ----------------------------------------------------------------------------------------
class SessionStarted(_Event, **_tag("session_started")):
    session_id: str
    mode: SessionMode
    venue: str
    seed: int
    config_hash: str
    code_version: str
    schema_version: int = SCHEMA_VERSION
    markets: tuple[str, ...] = ()
    starting_cash: Money = 0


class SessionEnded(_Event, **_tag("session_ended")):
    reason: str = "completed"


class SessionCrashed(_Event, **_tag("session_crashed")):
    """Recorded by the next writer when it finds the previous one died without ending the session."""

    error: str
    last_seq: int = 0


class SessionRecovered(_Event, **_tag("session_recovered")):
    """The session goes on after a crash; ``truncated_bytes`` of torn tail were dropped on open."""

    last_seq: int
    truncated_bytes: int = 0


# --- venue health -----------------------------------------------------------------------------------
class SeqGapDetected(_Event, **_tag("seq_gap_detected")):
    """A venue subscription skipped sequence numbers; its books are stale until resynced."""

    sid: int
    expected: int
    received: int
    markets: tuple[str, ...] = ()


class BookResynced(_Event, **_tag("book_resynced")):
    market: str
    sid: int | None = None


class BookInconsistent(_Event, **_tag("book_inconsistent")):
    """A delta would have made a level negative; the book is stale until resynced (never clamped)."""

    market: str
    side: YesNo
    price: Price
    delta: SignedCount
    resting: Count
    cause_seq: Seq


class VenueError(_Event, **_tag("venue_error")):
    where: str
    message: str
    code: int | None = None


class MalformedInput(_Event, **_tag("malformed_input")):
    """Bytes from outside that could not be parsed, kept verbatim with the parse error."""

    source: str
    raw: bytes
    error: str


# --- time and operators -----------------------------------------------------------------------------
class TimerFired(_Event, **_tag("timer_fired")):
    name: str
    due_ns: int


class OperatorCommand(_Event, **_tag("operator_command")):
    command: str
    args: tuple[tuple[str, str], ...] = ()


# --- orders -----------------------------------------------------------------------------------------
class OrderIntent(_Event, **_tag("order_intent")):
    """A decision to place an order on the YES leg, before any check or routing."""

    cause_seq: Seq
    client_order_id: str
    market: str
    side: BookSide
    price: Price
    count: Count
    tif: TimeInForce = "gtc"
    post_only: bool = False
    reduce_only: bool = False
    expiration_ts_ms: int | None = None


class OrderAccepted(_Event, **_tag("order_accepted")):
    client_order_id: str
    order_id: str
    market: str
    cause_seq: Seq | None = None
    venue_ts_ms: int | None = None


class OrderRejected(_Event, **_tag("order_rejected")):
    client_order_id: str
    market: str
    reason: RejectReason
    detail: str = ""
    cause_seq: Seq | None = None


class CancelRequested(_Event, **_tag("cancel_requested")):
    cause_seq: Seq
    client_order_id: str
    order_id: str | None = None


class OrderCanceled(_Event, **_tag("order_canceled")):
    client_order_id: str
    order_id: str
    canceled_count: Count
    reason: str = "requested"
    cause_seq: Seq | None = None
    venue_ts_ms: int | None = None


class OrderExpired(_Event, **_tag("order_expired")):
    client_order_id: str
    order_id: str
    expired_count: Count
    cause_seq: Seq | None = None
    venue_ts_ms: int | None = None


class OrderTransitionRefused(_Event, **_tag("order_transition_refused")):
    """A venue event that the order's lifecycle does not allow (a cancel after the fill, a fill beyond
    what remains, an event for an order never placed): recorded, and not applied to the order."""

    client_order_id: str
    from_state: str  # the order's state, or "unknown"
    to_state: str  # the state the event would have moved it to
    cause_seq: Seq
    detail: str = ""


class OrderStatusReported(_Event, **_tag("order_status_reported")):
    """The venue's view of one of our orders (a ``user_order`` update or a REST order read), for the
    states no other event names: resting with fills, executed, pending. Fills themselves arrive as
    :class:`OrderFilled` (they carry the trade id, price and fee); this event only reports counts."""

    client_order_id: str
    order_id: str
    market: str
    status: VenueOrderStatus
    side: BookSide
    price: Price
    fill_count: Count
    remaining_count: Count
    initial_count: Count | None = None
    venue_ts_ms: int | None = None


# --- fills, cash, positions -------------------------------------------------------------------------
class OrderFilled(_Event, **_tag("order_filled")):
    """One of our orders traded; ``trade_id`` is the dedupe key, ``price`` is on the YES leg.

    ``fee`` is the fill's trade fee (the fee model's, rounded up to $0.0001); the cash pool applies the
    member's balance rounding to it. A venue fee that already includes that rounding is fine too.
    """

    trade_id: str
    order_id: str
    client_order_id: str
    market: str
    side: BookSide
    price: Price
    count: Count
    fee: Money
    is_taker: bool
    post_position: SignedCount | None = None
    cause_seq: Seq | None = None
    venue_ts_ms: int | None = None


class FillDuplicated(_Event, **_tag("fill_duplicated")):
    """A fill whose trade id was already applied; it changed nothing."""

    trade_id: str
    cause_seq: Seq


class CashDeposited(_Event, **_tag("cash_deposited")):
    amount: Money
    note: str = ""


class CashReserved(_Event, **_tag("cash_reserved")):
    client_order_id: str
    amount: Money
    cause_seq: Seq


class CashReleased(_Event, **_tag("cash_released")):
    client_order_id: str
    amount: Money
    cause_seq: Seq


class CashSettled(_Event, **_tag("cash_settled")):
    market: str
    amount: Money
    cause_seq: Seq


class PositionChanged(_Event, **_tag("position_changed")):
    """Signed position (+YES / -NO) after a fill or settlement, with its running PnL and fees."""

    market: str
    position: SignedCount
    cost_basis: Money
    realized_pnl: Money
    fees: Money
    cause_seq: Seq


class PositionReported(_Event, **_tag("position_reported")):
    """The venue's view of our position in one market (``market_position`` or a REST positions read):
    signed count (+YES / -NO) and, when the venue sends them, its cost, realized PnL and fees."""

    market: str
    position: SignedCount
    cost: Money | None = None
    realized_pnl: Money | None = None
    fees_paid: Money | None = None
    venue_ts_ms: int | None = None


# --- policies ---------------------------------------------------------------------------------------
class ModelLoaded(_Event, **_tag("model_loaded")):
    role: Role
    model_id: str
    version_hash: str
    source: str = ""


class PolicyDecided(_Event, **_tag("policy_decided")):
    """A policy's output as of ``cause_seq``, with the model or rule version that produced it."""

    cause_seq: Seq
    role: Role
    market: str
    action: str
    version: str
    score: float | None = None
    size: Count | None = None
    price: Price | None = None


# --- appended after schema version 1's first release (new types go at the end of the union) ----------
class EventLifecycle(_Event, **_tag("event_lifecycle")):
    """A venue *event* — Kalshi's group of markets, such as one election — was created (Kalshi's
    ``event_lifecycle`` message, on the ``market_lifecycle_v2`` channel). Kept for the record; no state
    machine acts on it. ``strike_date_ms`` is the date the event is about, in Unix ms."""

    event_ticker: str
    series_ticker: str = ""
    title: str = ""
    subtitle: str = ""
    collateral_return_type: str = ""
    strike_date_ms: int | None = None
    strike_period: str | None = None
    venue_ts_ms: int | None = None


class AmendRequested(_Event, **_tag("amend_requested")):
    """A decision to change a resting order's limit ``price`` and its ``count`` — the new *total*: what has filled
    plus what is to rest, Kalshi's amend ``count``. The same price and a smaller count is a decrease (the order
    keeps its place in the queue); a new price or a larger count sends it to the back. It is absolute, so
    applying it twice changes nothing more: a retry can never double it. The cash pool answers with
    ``CashReserved`` (``cause_seq`` = this event's seq; the amount may be 0) or ``AmendRejected``."""

    cause_seq: Seq
    client_order_id: str
    price: Price
    count: Count
    order_id: str | None = None


class OrderAmended(_Event, **_tag("order_amended")):
    """The venue applied an amend: the order's limit is now ``price`` and its total ``count`` (filled plus
    resting) is ``count``; what rests is ``count`` less its fills. ``remaining_count`` is what the venue said
    rests, as of ``venue_ts_ms`` (kept for the record; fills are counted from ``OrderFilled``)."""

    client_order_id: str
    order_id: str
    price: Price
    count: Count
    remaining_count: Count | None = None
    cause_seq: Seq | None = None
    venue_ts_ms: int | None = None


class AmendRejected(_Event, **_tag("amend_rejected")):
    """An amend was refused — by the cash pool (``insufficient_cash``, or another amend of the order is still
    on its way), or by the venue — and the order stays as it was."""

    client_order_id: str
    reason: RejectReason
    detail: str = ""
    cause_seq: Seq | None = None


class MarketInfo(_Event, **_tag("market_info")):
    """What the state machines need to know of a market, read from the venue's market definition (Kalshi's
    ``GET /markets/{ticker}`` and its series, ``GET /series/{series_ticker}``) when the session subscribes to
    it, and again when its close moves (``close_date_updated``): an input, logged before the market's first
    book snapshot, so fees and price checks come from the log and a replay needs nothing outside it.

    ``price_ranges`` are the market's valid prices beyond whole cents, ``(start, end, step)`` in 1/10,000
    dollar, ends inclusive (Kalshi's ``price_ranges``; empty: unknown, whole cents only). ``fee_type`` is the
    series' (``quadratic``, ``quadratic_with_maker_fees``, ``quadratic_with_combo_maker_fees``, ``flat``; ""
    unknown) and ``fee_multiplier_ppm`` its ``fee_multiplier`` in parts per million (None: unknown). Times
    are Unix ms; the rules' texts are clipped (:data:`MARKET_RULES_MAX` characters). ``source`` names the
    venue that said so."""

    market: str
    series: str = ""
    market_type: str = ""  # binary | scalar
    price_level_structure: str = ""
    price_ranges: tuple[tuple[Price, Price, Price], ...] = ()
    fee_type: str = ""
    fee_multiplier_ppm: Annotated[int, Meta(ge=0)] | None = None
    fee_waiver_until_ms: int | None = None
    close_ts_ms: int | None = None
    latest_expiration_ts_ms: int | None = None
    settlement_timer_s: int | None = None
    can_close_early: bool | None = None
    rules_primary: str = ""
    rules_secondary: str = ""
    source: str = ""


class ShadowFilled(_Event, **_tag("shadow_filled")):
    """A fill the paper matcher would have made for one of our live orders: the shadow execution beside live
    orders (:mod:`actors.shadow`). Never a fill of the ledger: no cash, position or policy folds it; it is
    what ``tape fidelity`` compares with the venue's own fills of the same order."""

    client_order_id: str
    market: str
    side: BookSide
    price: Price
    count: Count
    fee: Money
    is_taker: bool
    cause_seq: Seq


class ShadowQueued(_Event, **_tag("shadow_queued")):
    """The shadow execution's copy of one of our orders came to rest: ``ahead`` is the size it queues behind
    (the paper matcher's queue position), ``rested`` what rests of it."""

    client_order_id: str
    market: str
    ahead: Count
    rested: Count
    cause_seq: Seq


class QueuePositionReported(_Event, **_tag("queue_position_reported")):
    """The venue's word on one of our resting orders' place in its queue: ``ahead`` contracts must trade or
    cancel before it fills (Kalshi's ``GET /portfolio/orders/queue_positions``); an input."""

    client_order_id: str
    order_id: str
    market: str
    ahead: Count
    venue_ts_ms: int | None = None


MARKET_RULES_MAX = 2_000
"""the most characters of a market's rules text a ``MarketInfo`` keeps"""


Event: TypeAlias = Union[  # noqa: UP007 - msgspec needs a runtime Union of the tagged Structs
    BookSnapshot,
    BookDelta,
    PublicTrade,
    MarketLifecycle,
    SessionStarted,
    SessionEnded,
    SessionCrashed,
    SessionRecovered,
    SeqGapDetected,
    BookResynced,
    BookInconsistent,
    VenueError,
    MalformedInput,
    TimerFired,
    OperatorCommand,
    OrderIntent,
    OrderAccepted,
    OrderRejected,
    CancelRequested,
    OrderCanceled,
    OrderExpired,
    OrderTransitionRefused,
    OrderStatusReported,
    OrderFilled,
    FillDuplicated,
    CashDeposited,
    CashReserved,
    CashReleased,
    CashSettled,
    PositionChanged,
    PositionReported,
    ModelLoaded,
    PolicyDecided,
    EventLifecycle,
    AmendRequested,
    OrderAmended,
    AmendRejected,
    MarketInfo,
    ShadowFilled,
    ShadowQueued,
    QueuePositionReported,
]


class Record(Struct, frozen=True, array_like=True, gc=False):
    """One entry of a session's log."""

    seq: Annotated[int, Meta(ge=1, le=2**63 - 1)]
    ts_ns: Annotated[int, Meta(ge=0, le=2**63 - 1)]
    event: Event


EVENT_TYPES: dict[str, type[_Event]] = {
    cls.__struct_config__.tag: cls for cls in Event.__args__  # type: ignore[attr-defined]
}

# Breaking changes keep their old Struct here, keyed by its tag, with an upcaster to the new event.
LEGACY_EVENTS: dict[str, type[Struct]] = {}
UPCASTERS: dict[type[Struct], Callable[[Any], _Event]] = {}


def event_type(event: Struct) -> str:
    """The tag of an event (``"book_delta"``)."""
    return event.__struct_config__.tag  # type: ignore[return-value]


def is_derived(event: Struct) -> bool:
    """True if the event was produced by a state machine (it names the seq that caused it)."""
    return getattr(event, "cause_seq", None) is not None


def upcast(event: Any) -> _Event:
    """Turn an event of a retired schema version into its current form (identity for current events)."""
    while (step := UPCASTERS.get(type(event))) is not None:
        event = step(event)
    return event


def to_builtins(record: Record) -> dict[str, Any]:
    """A record as plain JSON-able data with named fields (for ``tape log cat --json``)."""
    event = record.event
    fields = {f: getattr(event, f) for f in event.__struct_fields__}
    out: dict[str, Any] = {"seq": record.seq, "ts_ns": record.ts_ns, "type": event_type(event)}
    out.update(msgspec.to_builtins(fields))
    return out
