"""Kalshi's wire format as msgspec Structs: WebSocket commands, replies and data, and REST bodies.

These Structs mirror the JSON exactly (field names are Kalshi's) and hold the values as they arrived:
a price, count or money field is typed :data:`Num` (``str | int | float``, because some clients see
numbers where the spec says strings) and is turned into exact integers only by the conversion in
:mod:`.codec` and :mod:`.rest`, through :mod:`runtime.units`. Unknown fields are ignored; a field Kalshi
may omit is optional here, and the conversion says which ones it needs.

Fields of the legacy format (integer cents ``yes_price`` / ``price`` / ``[[cents, qty]]`` and integer
counts without ``_fp``) are declared too: a frame that carries only them is read when a decoder is built
with ``legacy=True``; a transition-era frame that carries them beside the ``_dollars`` / ``_fp`` ones is
read always, the fixed-point fields winning and the legacy ones checked against them.

Timestamps: every data message reads ``ts_ms`` (Unix ms) and ``ts`` (:data:`Ts`: Unix seconds, or an
ISO-8601 string); :mod:`.convert` turns either into the venue time, ``ts_ms`` winning.

Encoding: optional fields left at their default are omitted (``omit_defaults``), so what we send has
exactly the keys we set; ``use_yes_price`` has no default and is always sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, Union

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

__all__ = [
    "WS_COMMANDS",
    "WS_MESSAGES",
    "Num",
    "WsCommand",
    "WsMessage",
]

Num: TypeAlias = str | int | float  # a decimal that may arrive as a string or a JSON number
Int: TypeAlias = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]  # any integer the log can hold
Seconds: TypeAlias = Annotated[int, Meta(ge=-(2**63) // 1000, le=(2**63 - 1) // 1000)]  # still an int64 in ms
Ts: TypeAlias = Seconds | str  # ``ts``: Unix seconds (trade, ticker) or ISO-8601 with a zone (seen on deltas)
Pair: TypeAlias = tuple[Num, Num]  # [price, count] of one book level
YesNo = Literal["yes", "no"]
BidAsk = Literal["bid", "ask"]
TimeInForceWire = Literal["good_till_canceled", "immediate_or_cancel", "fill_or_kill"]
LifecycleEvent = Literal["created", "activated", "deactivated", "close_date_updated", "determined", "settled",
                         "price_level_structure_updated", "metadata_updated"]
MARKET_TRANSITIONS: frozenset[str] = frozenset(  # the lifecycle events that are a tape MarketLifecycle
    {"created", "activated", "deactivated", "close_date_updated", "determined", "settled"})
OrderStatusWire = Literal["resting", "canceled", "executed", "pending"]


class _Body(Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """A JSON object of Kalshi's: unknown keys ignored, unset keys not sent."""


class _Frame(_Body, tag_field="type"):
    """A WebSocket frame from the server, tagged by its ``type``."""


class _Command(_Body, tag_field="cmd"):
    """A WebSocket command from the client, tagged by its ``cmd``."""


# --- WebSocket commands (client -> server) -----------------------------------------------------------
class SubscribeParams(Struct, frozen=True, kw_only=True, gc=False):
    """``subscribe`` params. ``use_yes_price`` is always sent: Kalshi says its default will flip."""

    channels: list[str]
    market_ticker: str | UnsetType = UNSET
    market_tickers: list[str] | UnsetType = UNSET
    use_yes_price: bool = False


class Subscribe(_Command, tag="subscribe", kw_only=True):
    id: Int
    params: SubscribeParams


class UnsubscribeParams(_Body, kw_only=True):
    sids: list[Int]


class Unsubscribe(_Command, tag="unsubscribe", kw_only=True):
    id: Int
    params: UnsubscribeParams


class ListSubscriptions(_Command, tag="list_subscriptions", kw_only=True):
    id: Int
    params: dict[str, Any] | None = None


class UpdateSubscriptionParams(_Body, kw_only=True):
    """``update_subscription`` params: exactly one sid (in ``sids`` or ``sid``), an action, and markets."""

    action: Literal["add_markets", "delete_markets", "get_snapshot"]
    sids: list[Int] | None = None
    sid: Int | None = None
    market_ticker: str | None = None
    market_tickers: list[str] | None = None

    def sid_list(self) -> list[int]:
        """Every sid the command names (Kalshi refuses anything but exactly one, with error 12)."""
        return [*(self.sids or ()), *(() if self.sid is None else (self.sid,))]


class UpdateSubscription(_Command, tag="update_subscription", kw_only=True):
    id: Int
    params: UpdateSubscriptionParams


WsCommand: TypeAlias = Union[Subscribe, Unsubscribe, ListSubscriptions, UpdateSubscription]  # noqa: UP007


# --- WebSocket replies (server -> client) ------------------------------------------------------------
class SubscribedMsg(_Body, kw_only=True):
    channel: str
    sid: Int


class Subscribed(_Frame, tag="subscribed", kw_only=True):
    """One per channel of a ``subscribe`` command."""

    id: Int | None = None
    msg: SubscribedMsg


class Ok(_Frame, tag="ok", kw_only=True):
    """Success of ``update_subscription`` or ``list_subscriptions``; ``msg`` is kept as it came."""

    id: Int | None = None
    sid: Int | None = None
    seq: Int | None = None
    msg: Any = None


class Unsubscribed(_Frame, tag="unsubscribed", kw_only=True):
    id: Int | None = None
    sid: Int | None = None
    seq: Int | None = None


class ErrorMsg(_Body, kw_only=True):
    code: Int
    msg: str = ""


class Error(_Frame, tag="error", kw_only=True):
    """A command failed, or (without ``id``) a subscription broke: see :mod:`.codec`'s error codes.
    ``sid`` names the subscription when the server sends it (not documented; read when present)."""

    id: Int | None = None
    msg: ErrorMsg
    sid: Int | None = None


# --- WebSocket data (server -> client) ---------------------------------------------------------------
class OrderbookSnapshotMsg(_Body, kw_only=True):
    """Both sides are bids; a side's key is omitted when it is empty. ``yes_dollars`` / ``no_dollars``
    (the REST names) are read when the ``_fp`` keys are absent; ``yes`` / ``no`` are legacy cents."""

    market_ticker: str
    market_id: str | None = None
    yes_dollars_fp: list[Pair] | None = None
    no_dollars_fp: list[Pair] | None = None
    yes_dollars: list[Pair] | None = None
    no_dollars: list[Pair] | None = None
    yes: list[tuple[Int, Int]] | None = None
    no: list[tuple[Int, Int]] | None = None
    ts_ms: Int | None = None
    ts: Ts | None = None


class OrderbookSnapshot(_Frame, tag="orderbook_snapshot", kw_only=True):
    sid: Int
    seq: Int | None = None
    msg: OrderbookSnapshotMsg


class OrderbookDeltaMsg(_Body, kw_only=True):
    market_ticker: str
    market_id: str | None = None
    price_dollars: Num | None = None
    delta_fp: Num | None = None
    side: YesNo
    client_order_id: str | None = None  # only on the frames sent to the owner of the order that caused it
    ts_ms: Int | None = None
    price: Int | None = None  # legacy cents
    delta: Int | None = None  # legacy contracts
    ts: Ts | None = None


class OrderbookDelta(_Frame, tag="orderbook_delta", kw_only=True):
    sid: Int
    seq: Int | None = None
    msg: OrderbookDeltaMsg


class TradeMsg(_Body, kw_only=True):
    trade_id: str
    market_ticker: str
    yes_price_dollars: Num | None = None
    no_price_dollars: Num | None = None
    count_fp: Num | None = None
    taker_outcome_side: YesNo | None = None
    taker_book_side: BidAsk | None = None
    taker_side: YesNo | None = None  # deprecated
    ts_ms: Int | None = None
    yes_price: Int | None = None  # legacy cents
    count: Int | None = None  # legacy contracts
    ts: Ts | None = None  # deprecated: Unix seconds
    no_price: Int | None = None  # legacy cents


class Trade(_Frame, tag="trade", kw_only=True):
    sid: Int
    seq: Int | None = None
    msg: TradeMsg


class FillMsg(_Body, kw_only=True):
    """A private fill (the REST fills item is :class:`PortfolioFill`)."""

    trade_id: str
    order_id: str
    client_order_id: str | None = None
    market_ticker: str | None = None
    ticker: str | None = None
    is_taker: bool
    yes_price_dollars: Num | None = None
    count_fp: Num | None = None
    fee_cost: Num | None = None
    post_position_fp: Num | None = None
    outcome_side: YesNo | None = None
    book_side: BidAsk | None = None
    side: YesNo | None = None  # deprecated
    action: Literal["buy", "sell"] | None = None  # deprecated
    purchased_side: YesNo | None = None  # deprecated
    ts_ms: Int | None = None
    yes_price: Int | None = None  # legacy cents
    count: Int | None = None  # legacy contracts
    post_position: Int | None = None  # legacy contracts
    ts: Ts | None = None


class Fill(_Frame, tag="fill", kw_only=True):
    sid: Int
    msg: FillMsg


class UserOrderMsg(_Body, kw_only=True):
    """One of our orders as the venue sees it (the REST orders item is :class:`PortfolioOrder`).

    ``side`` is ``bid``/``ask`` on the YES leg (V2), or ``yes``/``no`` with ``action`` (older shape)."""

    order_id: str
    client_order_id: str | None = None
    ticker: str | None = None
    market_ticker: str | None = None
    status: OrderStatusWire
    side: Literal["bid", "ask", "yes", "no"]
    action: Literal["buy", "sell"] | None = None
    yes_price_dollars: Num | None = None
    no_price_dollars: Num | None = None
    initial_count_fp: Num | None = None
    fill_count_fp: Num | None = None
    remaining_count_fp: Num | None = None
    ts_ms: Int | None = None
    yes_price: Int | None = None  # legacy cents
    initial_count: Int | None = None  # legacy contracts
    fill_count: Int | None = None  # legacy contracts
    remaining_count: Int | None = None  # legacy contracts
    ts: Ts | None = None


class UserOrder(_Frame, tag="user_order", kw_only=True):
    sid: Int
    msg: UserOrderMsg


class MarketPositionMsg(_Body, kw_only=True):
    """Our position in one market (the REST positions item is :class:`PortfolioPosition`); ``ticker`` and
    ``market_exposure_dollars`` are read when the WebSocket names are absent."""

    market_ticker: str | None = None
    ticker: str | None = None
    position_fp: Num | None = None
    position_cost_dollars: Num | None = None
    market_exposure_dollars: Num | None = None
    realized_pnl_dollars: Num | None = None
    fees_paid_dollars: Num | None = None
    ts_ms: Int | None = None
    position: Int | None = None  # legacy contracts
    ts: Ts | None = None


class MarketPosition(_Frame, tag="market_position", kw_only=True):
    sid: Int
    msg: MarketPositionMsg


class MarketLifecycleMsg(_Body, kw_only=True):
    """``close_ts`` is Unix seconds (Kalshi's lifecycle timestamps are); ``close_ts_ms`` wins if both
    are present. ``settlement_value`` is dollars (legacy: integer cents). ``price_level_structure_updated``
    and ``metadata_updated`` (Kalshi's AsyncAPI spec) change no market state the runtime tracks."""

    market_ticker: str
    event_type: LifecycleEvent
    result: str | None = None
    settlement_value: Num | None = None
    settlement_value_dollars: Num | None = None
    close_ts: Seconds | None = None
    close_ts_ms: Int | None = None
    ts_ms: Int | None = None
    ts: Ts | None = None


class MarketLifecycleV2(_Frame, tag="market_lifecycle_v2", kw_only=True):
    sid: Int
    seq: Int | None = None
    msg: MarketLifecycleMsg


class EventLifecycleMsg(_Body, kw_only=True):
    """A Kalshi *event* (a group of markets) was created; it arrives on the ``market_lifecycle_v2`` channel.
    The spec names the subtitle ``subtitle``, Kalshi's example ``sub_title``: either is read.
    ``strike_date`` is Unix seconds in Kalshi's example and an ISO-8601 string in its REST Event."""

    event_ticker: str
    series_ticker: str = ""
    title: str = ""
    subtitle: str | None = None
    sub_title: str | None = None
    collateral_return_type: str = ""
    strike_date: Ts | None = None
    strike_period: str | None = None
    ts_ms: Int | None = None
    ts: Ts | None = None


class EventLifecycle(_Frame, tag="event_lifecycle", kw_only=True):
    sid: Int
    seq: Int | None = None
    msg: EventLifecycleMsg


class TickerMsg(_Body, kw_only=True):
    """One market's top of book, last price, volume and open interest (``ticker`` channel). The legacy
    integer fields (cents, contracts) are the transition-era twins of the ``_dollars`` / ``_fp`` ones."""

    market_ticker: str
    market_id: str | None = None
    price_dollars: Num | None = None
    yes_bid_dollars: Num | None = None
    yes_ask_dollars: Num | None = None
    yes_bid_size_fp: Num | None = None
    yes_ask_size_fp: Num | None = None
    last_trade_size_fp: Num | None = None
    volume_fp: Num | None = None
    open_interest_fp: Num | None = None
    dollar_volume: Int | None = None
    dollar_open_interest: Int | None = None
    ts_ms: Int | None = None
    ts: Ts | None = None
    price: Int | None = None  # legacy cents
    yes_bid: Int | None = None  # legacy cents
    yes_ask: Int | None = None  # legacy cents
    volume: Int | None = None  # legacy contracts
    open_interest: Int | None = None  # legacy contracts


class Ticker(_Frame, tag="ticker", kw_only=True):
    """No ``seq`` (kalshi-protocol.md); read if it comes."""

    sid: Int
    seq: Int | None = None
    msg: TickerMsg


WsMessage: TypeAlias = Union[  # noqa: UP007 - msgspec needs a runtime Union of the tagged Structs
    OrderbookSnapshot,
    OrderbookDelta,
    Trade,
    Fill,
    UserOrder,
    MarketPosition,
    MarketLifecycleV2,
    EventLifecycle,
    Ticker,
    Subscribed,
    Ok,
    Unsubscribed,
    Error,
]

WS_MESSAGES = msgspec.json.Decoder(WsMessage)  # every frame the server sends, built once
WS_COMMANDS = msgspec.json.Decoder(WsCommand)  # every command a client sends, built once
WS_TYPES: frozenset[str] = frozenset(c.__struct_config__.tag for c in WsMessage.__args__)  # type: ignore[attr-defined]


class Envelope(Struct, frozen=True, gc=False):
    """The three keys of any frame, read loosely to say where a frame that failed to decode belongs."""

    type: Any = None
    sid: Any = None
    seq: Any = None


ENVELOPE = msgspec.json.Decoder(Envelope)


# --- REST ---------------------------------------------------------------------------------------------
# The shapes of Kalshi's OpenAPI spec (its SDK, ``kalshi-python-sync``, is the executable form; a test drives
# the local exchange through it). The exchange writes every field the spec requires; our client reads what
# the runtime needs and says which field is missing, naming the endpoint, when one it needs is not there.
class CreateOrderV2Request(_Body, kw_only=True):
    """``POST /portfolio/events/orders``: a limit order on the YES leg."""

    ticker: str
    side: BidAsk
    count: Num
    price: Num
    time_in_force: TimeInForceWire | UnsetType = UNSET  # always sent by us; read as good_till_canceled if absent
    client_order_id: str | None = None
    self_trade_prevention_type: str | None = None
    post_only: bool = False
    reduce_only: bool = False
    expiration_time: Seconds | None = None  # Unix seconds; only with good_till_canceled (the spec's name)
    order_group_id: str | None = None  # the order group it belongs to (its contracts limit applies)


class CreateOrderV2Response(_Body, kw_only=True):
    """The V2 create reply (the spec: ``order_id``, ``fill_count``, ``remaining_count``, ``ts_ms`` required)."""

    order_id: str | None = None
    client_order_id: str | None = None
    fill_count: Num | None = None
    remaining_count: Num | None = None
    average_fill_price: Num | None = None
    average_fee_paid: Num | None = None
    ts_ms: Int | None = None


class BatchCreateOrdersV2Request(_Body, kw_only=True):
    """``POST /portfolio/events/orders/batched``."""

    orders: list[CreateOrderV2Request]


class ErrorDetail(_Body, kw_only=True):
    code: str | Int | None = None
    message: str | None = None
    details: Any = None


class BatchCreateItem(_Body, kw_only=True):
    """One order of a batch create reply, flat: the create reply's fields, or its ``error``."""

    order_id: str | None = None
    client_order_id: str | None = None
    fill_count: Num | None = None
    remaining_count: Num | None = None
    average_fill_price: Num | None = None
    average_fee_paid: Num | None = None
    ts_ms: Int | None = None
    error: ErrorDetail | None = None


class BatchCreateOrdersV2Response(_Body, kw_only=True):
    orders: list[BatchCreateItem]


class CancelOrderV2Response(_Body, kw_only=True):
    """``DELETE /portfolio/events/orders/{order_id}``: ``reduced_by`` is the count taken off the book (fp)."""

    order_id: str | None = None
    client_order_id: str | None = None
    reduced_by: Num | None = None
    ts_ms: Int | None = None


class BatchCancelOrderId(_Body, kw_only=True):
    order_id: str


class BatchCancelOrdersRequest(_Body, kw_only=True):
    """``DELETE /portfolio/events/orders/batched``: ``orders`` of ``{"order_id"}``."""

    orders: list[BatchCancelOrderId]


class BatchCancelItem(_Body, kw_only=True):
    """One order of a batch cancel reply: the cancel reply's fields (``reduced_by`` is ``"0.00"`` with an
    ``error``)."""

    order_id: str
    client_order_id: str | None = None
    reduced_by: Num | None = None
    ts_ms: Int | None = None
    error: ErrorDetail | None = None


class BatchCancelOrdersResponse(_Body, kw_only=True):
    """``DELETE /portfolio/events/orders/batched``."""

    orders: list[BatchCancelItem]


class PortfolioOrder(_Body, kw_only=True):
    """An item of ``GET /portfolio/orders`` (and ``order`` of ``/portfolio/orders/{order_id}``): the spec's
    ``Order``. ``book_side`` is the side on the YES leg (``outcome_side`` yes for a bid, no for an ask);
    ``side`` / ``action`` are the deprecated outcome side and direction. Times are ISO-8601."""

    order_id: str
    user_id: str | None = None
    client_order_id: str | None = None
    ticker: str | None = None
    side: YesNo | None = None  # deprecated
    action: Literal["buy", "sell"] | None = None  # deprecated
    outcome_side: YesNo | None = None
    book_side: BidAsk | None = None
    type: str | None = None
    status: OrderStatusWire
    yes_price_dollars: Num | None = None
    no_price_dollars: Num | None = None
    fill_count_fp: Num | None = None
    remaining_count_fp: Num | None = None
    initial_count_fp: Num | None = None
    taker_fill_cost_dollars: Num | None = None
    maker_fill_cost_dollars: Num | None = None
    taker_fees_dollars: Num | None = None
    maker_fees_dollars: Num | None = None
    expiration_time: str | None = None
    created_time: str | None = None
    last_update_time: str | None = None
    self_trade_prevention_type: str | None = None
    yes_price: Int | None = None  # legacy cents
    fill_count: Int | None = None  # legacy contracts
    remaining_count: Int | None = None  # legacy contracts
    initial_count: Int | None = None  # legacy contracts
    order_group_id: str | None = None


class OrdersResponse(_Body, kw_only=True):
    """``GET /portfolio/orders``."""

    orders: list[PortfolioOrder]
    cursor: str | None = None


class OrderResponse(_Body, kw_only=True):
    """``GET /portfolio/orders/{order_id}``."""

    order: PortfolioOrder


class OrderQueuePosition(_Body, kw_only=True):
    """An item of ``GET /portfolio/orders/queue_positions``: the contracts ahead of a resting order at its price
    (``queue_position`` whole contracts, ``queue_position_fp`` with the ``_fp`` precision)."""

    order_id: str
    market_ticker: str
    queue_position: int
    queue_position_fp: str | None = None


class QueuePositionsResponse(_Body, kw_only=True):
    """``GET /portfolio/orders/queue_positions`` (``market_tickers`` or ``event_ticker``)."""

    queue_positions: list[OrderQueuePosition] | None = None


class PortfolioFill(_Body, kw_only=True):
    """An item of ``GET /portfolio/fills``: the spec's ``Fill`` (no ``client_order_id``: the order's id
    names the order). ``yes_price_dollars`` is the YES-leg price; ``ts`` Unix seconds, ``created_time`` ISO-8601."""

    fill_id: str | None = None
    exchange_index: Int | None = None
    trade_id: str
    order_id: str
    ticker: str | None = None
    market_ticker: str | None = None
    side: YesNo | None = None  # deprecated
    action: Literal["buy", "sell"] | None = None  # deprecated
    outcome_side: YesNo | None = None
    book_side: BidAsk | None = None
    count_fp: Num | None = None
    yes_price_dollars: Num | None = None
    no_price_dollars: Num | None = None
    is_taker: bool
    created_time: str | None = None
    fee_cost: Num | None = None
    ts: Seconds | None = None
    yes_price: Int | None = None  # legacy cents
    count: Int | None = None  # legacy contracts


class FillsResponse(_Body, kw_only=True):
    """``GET /portfolio/fills``."""

    fills: list[PortfolioFill]
    cursor: str | None = None


class PortfolioPosition(_Body, kw_only=True):
    """An item of ``market_positions`` of ``GET /portfolio/positions``: the spec's ``MarketPosition``
    (``market_exposure_dollars`` is what the position cost; ``last_updated_ts`` ISO-8601)."""

    ticker: str
    exchange_index: Int | None = None
    total_traded_dollars: Num | None = None
    position_fp: Num | None = None
    market_exposure_dollars: Num | None = None
    realized_pnl_dollars: Num | None = None
    fees_paid_dollars: Num | None = None
    last_updated_ts: str | None = None
    position: Int | None = None  # legacy contracts


class EventPosition(_Body, kw_only=True):
    """An item of ``event_positions`` (the runtime does not read them)."""

    event_ticker: str
    total_cost_dollars: Num | None = None
    total_cost_shares_fp: Num | None = None
    event_exposure_dollars: Num | None = None
    realized_pnl_dollars: Num | None = None
    fees_paid_dollars: Num | None = None


class PositionsResponse(_Body, kw_only=True):
    """``GET /portfolio/positions``."""

    market_positions: list[PortfolioPosition]
    event_positions: list[EventPosition]
    cursor: str | None = None


class BalanceResponse(_Body, kw_only=True):
    """``GET /portfolio/balance``: ``balance`` and ``portfolio_value`` in cents, ``balance_dollars``,
    ``updated_ts`` (Unix seconds)."""

    balance: Int | None = None
    balance_dollars: Num | None = None
    portfolio_value: Int | None = None
    updated_ts: Int | None = None


# --- REST: markets -----------------------------------------------------------------------------------
class PriceRange(_Body, kw_only=True):
    """Valid prices from ``start`` to ``end`` (dollars, inclusive) in steps of ``step``."""

    start: Num
    end: Num
    step: Num


class Market(_Body, kw_only=True):
    """The spec's ``Market``: every field it requires, and the optional ones the exchange knows. Times are
    ISO-8601; prices dollars, sizes, volume and open interest fp."""

    ticker: str
    event_ticker: str | None = None
    market_type: str | None = None
    title: str | None = None
    subtitle: str | None = None
    yes_sub_title: str | None = None
    no_sub_title: str | None = None
    created_time: str | None = None
    updated_time: str | None = None
    open_time: str | None = None
    close_time: str | None = None
    expected_expiration_time: str | None = None
    expiration_time: str | None = None
    latest_expiration_time: str | None = None
    settlement_timer_seconds: Int | None = None
    status: str | None = None
    yes_bid_dollars: Num | None = None
    yes_bid_size_fp: Num | None = None
    yes_ask_dollars: Num | None = None
    yes_ask_size_fp: Num | None = None
    no_bid_dollars: Num | None = None
    no_ask_dollars: Num | None = None
    last_price_dollars: Num | None = None
    volume_fp: Num | None = None
    volume_24h_fp: Num | None = None
    result: str | None = None
    can_close_early: bool | None = None
    open_interest_fp: Num | None = None
    notional_value_dollars: Num | None = None
    previous_yes_bid_dollars: Num | None = None
    previous_yes_ask_dollars: Num | None = None
    previous_price_dollars: Num | None = None
    settlement_value_dollars: Num | None = None
    settlement_ts: str | None = None
    settlement_bounds_type: str | None = None
    expiration_value: str | None = None
    rules_primary: str | None = None
    rules_secondary: str | None = None
    price_level_structure: str | None = None
    price_ranges: list[PriceRange] | None = None
    fee_waiver_expiration_time: str | None = None


class MarketResponse(_Body, kw_only=True):
    """``GET /markets/{ticker}``."""

    market: Market


class MarketsResponse(_Body, kw_only=True):
    """``GET /markets``."""

    markets: list[Market]
    cursor: str | None = None


class OrderbookFp(_Body, kw_only=True):
    """Ascending price, best bid last; both sides are bids."""

    yes_dollars: list[Pair] | None = None
    no_dollars: list[Pair] | None = None


class OrderbookLegacy(_Body, kw_only=True):
    yes: list[tuple[Int, Int]] | None = None
    no: list[tuple[Int, Int]] | None = None


class OrderbookResponse(_Body, kw_only=True):
    """``GET /markets/{ticker}/orderbook``: ``orderbook_fp`` (legacy: ``orderbook`` in cents)."""

    orderbook_fp: OrderbookFp | None = None
    orderbook: OrderbookLegacy | None = None


# --- amend, decrease, order groups (the spec's V2 shapes) -------------------------------------------------
class AmendOrderV2Request(_Body, kw_only=True):
    """``POST /portfolio/events/orders/{order_id}/amend``: the order's ``ticker`` and ``side`` (both required, and
    unchanged), its new ``price`` and its new ``count`` — the total it may fill, what has filled plus what is to
    rest. ``client_order_id`` names the order's current one; ``updated_client_order_id`` gives it a new one.
    ``expiration_time``: absent keeps the expiry, 0 removes it, else a new one (Unix seconds)."""

    ticker: str
    side: BidAsk
    price: Num
    count: Num
    client_order_id: str | None = None
    updated_client_order_id: str | None = None
    expiration_time: Seconds | None = None


class AmendOrderV2Response(_Body, kw_only=True):
    """The amend reply (the spec requires ``order_id`` and ``ts_ms``; the counts are optional)."""

    order_id: str | None = None
    client_order_id: str | None = None
    remaining_count: Num | None = None
    fill_count: Num | None = None
    average_fill_price: Num | None = None
    average_fee_paid: Num | None = None
    ts_ms: Int | None = None


class DecreaseOrderV2Request(_Body, kw_only=True):
    """``POST /portfolio/events/orders/{order_id}/decrease``: exactly one of ``reduce_by`` (take that many off what
    rests) or ``reduce_to`` (leave that many resting; 0 cancels)."""

    reduce_by: Num | None = None
    reduce_to: Num | None = None
    market_ticker: str | None = None


class DecreaseOrderV2Response(_Body, kw_only=True):
    """The decrease reply (the spec requires ``order_id``, ``remaining_count`` and ``ts_ms``)."""

    order_id: str | None = None
    client_order_id: str | None = None
    remaining_count: Num | None = None
    ts_ms: Int | None = None


class CreateOrderGroupRequest(_Body, kw_only=True):
    """``POST /portfolio/order_groups/create``: the most contracts the group's orders may match in a rolling
    15 seconds (``contracts_limit`` whole contracts, or ``contracts_limit_fp``; both must then agree)."""

    contracts_limit: Int | None = None
    contracts_limit_fp: Num | None = None
    subaccount: Int | None = None


class CreateOrderGroupResponse(_Body, kw_only=True):
    order_group_id: str | None = None
    subaccount: Int | None = None


class UpdateOrderGroupLimitRequest(_Body, kw_only=True):
    """``PUT /portfolio/order_groups/{order_group_id}/limit``."""

    contracts_limit: Int | None = None
    contracts_limit_fp: Num | None = None


class OrderGroupResponse(_Body, kw_only=True):
    """``GET /portfolio/order_groups/{order_group_id}``: its order ids and whether it auto-cancels."""

    is_auto_cancel_enabled: bool | None = None
    contracts_limit_fp: Num | None = None
    orders: list[str] | None = None


class OrderGroupItem(_Body, kw_only=True):
    id: str | None = None
    contracts_limit_fp: Num | None = None
    is_auto_cancel_enabled: bool | None = None


class OrderGroupsResponse(_Body, kw_only=True):
    """``GET /portfolio/order_groups``."""

    order_groups: list[OrderGroupItem] | None = None


class EmptyResponse(_Body, kw_only=True):
    """``{}``: the reply of delete, reset, trigger and limit of an order group."""


class ErrorBody(_Body, kw_only=True):
    """An error reply: ``{"code", "message", "details"}``, the same nested under ``error``, or ``error`` as plain
    text (Kalshi's 429: ``{"error": "too many requests"}``)."""

    code: str | Int | None = None
    message: str | None = None
    details: Any = None
    error: ErrorDetail | str | None = None
