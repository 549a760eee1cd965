"""The local exchange's network shell: Kalshi's REST API and WebSocket, on one aiohttp port, around an
:class:`.exchange.Exchange` — so that the runtime runs, and is tested, offline.

REST under ``/trade-api/v2`` and the WebSocket at ``/trade-api/ws/v2``; every body is written by the
Kalshi codec (:mod:`..kalshi.codec`, :mod:`..kalshi.rest`, :mod:`..kalshi.messages`).

**Time.** A clock task advances the exchange every few milliseconds to ``start + elapsed wall time ×
speed`` and fans what happened out to the subscriptions. Each tick runs at most ``tick_actions`` model
actions, so a server asked to go faster than it can falls behind (its time lags) instead of stalling.
:meth:`ExchangeServer.pause` stops the market's time (commands still act, at the paused time);
:meth:`~ExchangeServer.resume` goes on from there.

**Authentication.** With a :class:`~..kalshi.auth.Verifier`, every REST request and the WebSocket upgrade
must carry valid ``KALSHI-ACCESS-KEY`` / ``-TIMESTAMP`` / ``-SIGNATURE`` headers (the signature over
timestamp + METHOD + path without query, within 30 s of the server's clock), else 401 with an error body.
The account is the key id. Without a verifier (trust mode) anything goes and the account is the key
header, or ``"trust"``.

**WebSocket** (``kalshi-protocol.md``): ``subscribe`` (channels ``orderbook_delta``, ``trade``, ``fill``,
``user_orders`` — ``user_order`` is read as it —, ``market_positions``, ``market_lifecycle_v2``, with
``market_ticker`` / ``market_tickers`` and ``use_yes_price``, default false), ``unsubscribe``,
``list_subscriptions`` and ``update_subscription`` (``add_markets``, ``delete_markets``, ``get_snapshot``).
One ``subscribed`` reply per channel, with a new sid (per connection, from 1); an ``orderbook_delta``
subscription first gets one ``orderbook_snapshot`` per market. ``seq`` counts per sid on book and trade
frames, from 1; the ``ok`` reply of ``update_subscription`` carries none (clients disagree on whether it
would be the sid's last seq or a new one). Private channels carry only the connection's own account's events; without tickers a
channel other than the order book carries every market. A Ping control frame (payload ``heartbeat``)
goes out every ``ping_interval_s``. Commands are read from text or binary frames. Errors, with Kalshi's
codes (its AsyncAPI documentation):

====  ===================================================================================================
1     the frame is not a JSON object
2     ``params`` missing
3     ``channels`` missing or empty
4     ``sids`` missing or empty (unsubscribe)
5     unknown ``cmd``
7     unknown sid
8     unknown channel
11    any other invalid parameter: a field of the wrong type, an unknown market ticker
12    ``update_subscription`` names more than one sid
13    ``get_snapshot`` on a channel other than the order book
14    order book subscription, or adding/removing markets, without market tickers
15    ``action`` missing
25    terminal, for one subscription (``sid`` in the frame): the connection's send queue is full (a slow
      client) or the ``error25`` fault; the subscription is dropped — resubscribe
====  ===================================================================================================

A slow client never stalls the exchange: each connection has a bounded send queue (``queue_limit``
frames); a data frame that finds it full ends its subscription with error 25 instead.

**REST** (JSON; errors are ``{"code", "message", "details"}``, with the status and codes of
:mod:`.exchange`, plus 400 ``bad_request`` for a body or query that cannot be read, 401 ``unauthorized``,
404 ``not_found``): ``POST /portfolio/events/orders`` (201), ``DELETE /portfolio/events/orders/{order_id}``,
``POST /portfolio/events/orders/batched`` (up to 20 orders; 201), ``DELETE /portfolio/events/orders/batched``
(``{"ids": [...]}`` or ``{"orders": [{"order_id"}]}``), ``GET /portfolio/orders`` (``ticker``, ``status``),
``GET /portfolio/orders/{order_id}``, ``GET /portfolio/fills`` (``ticker``, ``order_id``, ``min_ts`` in Unix
seconds — milliseconds if above 10^12), ``GET /portfolio/positions`` (``ticker``), ``GET /portfolio/balance``,
``GET /markets`` (``tickers``, ``status``: unopened / open / closed / settled), ``GET /markets/{ticker}``,
``GET /markets/{ticker}/orderbook`` (``depth``). Lists take ``limit`` (1–1000, default 100) and ``cursor``:
orders and fills newest first, markets and positions by ticker; a cursor stays valid as new items arrive.

**Faults** (:mod:`.faults`): the server's default, or per WebSocket connection ``?faults=SPEC``, or per
REST request the header ``X-Tape-Faults`` (``slow_ms`` only).

Logged with structlog (``exchange.server``); key ids are logged, signatures and key material never.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import msgspec
from aiohttp import WSMsgType, web

from runtime.events import (
    BookDelta,
    BookSnapshot,
    Event,
    MalformedInput,
    MarketLifecycle,
    OrderFilled,
    OrderStatusReported,
    PositionReported,
    PublicTrade,
)
from runtime.logger import get_logger
from runtime.units import PRICE_MAX, format_count, format_price

from ..kalshi import codec, rest
from ..kalshi import convert as cv
from ..kalshi import messages as m
from ..kalshi.auth import HEADER_KEY, Verifier
from .exchange import PUBLIC, CommandResult, Entry, Exchange, ExchangeError, MarketInfo
from .faults import FaultError, Faults, FaultState

__all__ = ["API_PREFIX", "FAULTS_HEADER", "WS_PATH", "ExchangeServer"]

API_PREFIX: Final = "/trade-api/v2"
WS_PATH: Final = "/trade-api/ws/v2"
FAULTS_HEADER: Final = "X-Tape-Faults"

# WebSocket error codes (Kalshi's numbering; 10, 12, 14 and 25 are the codec's)
UNABLE_TO_PROCESS: Final = 1
PARAMS_REQUIRED: Final = 2
CHANNELS_REQUIRED: Final = 3
SIDS_REQUIRED: Final = 4
UNKNOWN_COMMAND: Final = 5
UNKNOWN_SID: Final = 7
UNKNOWN_CHANNEL: Final = 8
INVALID_PARAMETER: Final = 11
UNSUPPORTED_ACTION: Final = 13
ACTION_REQUIRED: Final = 15

BOOK, TRADE, FILL, ORDERS, POSITIONS, LIFECYCLE = (
    "orderbook_delta", "trade", "fill", "user_orders", "market_positions", "market_lifecycle_v2")
CHANNELS: Final = (BOOK, TRADE, FILL, ORDERS, POSITIONS, LIFECYCLE)
_ALIASES: Final = {"user_order": ORDERS, "market_position": POSITIONS}
_PRIVATE: Final = frozenset({FILL, ORDERS, POSITIONS})
_CHANNEL_OF: Final[dict[type, str]] = {BookSnapshot: BOOK, BookDelta: BOOK, PublicTrade: TRADE, MarketLifecycle: LIFECYCLE,
                                       OrderFilled: FILL, OrderStatusReported: ORDERS, PositionReported: POSITIONS}
_WIRE_TYPE: Final[dict[type, str]] = {BookSnapshot: "orderbook_snapshot", BookDelta: "orderbook_delta", PublicTrade: "trade",
                                      MarketLifecycle: "market_lifecycle_v2", OrderFilled: "fill",
                                      OrderStatusReported: "user_order", PositionReported: "market_position"}
_MARKET_STATUS: Final = {"unopened": ("initialized",), "open": ("active",), "closed": ("closed", "determined"),
                         "settled": ("settled",)}
_ORDER_STATUS: Final = frozenset({"resting", "canceled", "executed"})
MAX_LIMIT: Final = 1_000
DEFAULT_LIMIT: Final = 100
MAX_BATCH: Final = 20
_ABORT: Final = object()  # a queue marker: close the connection abruptly here (the drop fault)
_NS: Final = 1_000_000_000
_OWNER: Final = web.RequestKey("owner", str)  # the account a request acts for



def _log() -> Any:
    """The server's logger, looked up when used (so that logging configured after import applies)."""
    return get_logger("exchange.server")


T = TypeVar("T")


class _Sub:
    """One subscription of one connection."""

    __slots__ = ("channel", "live", "markets", "seq", "seqd", "sid", "use_yes_price")

    def __init__(self, sid: int, channel: str, markets: set[str] | None, use_yes_price: bool) -> None:
        self.sid = sid
        self.channel = channel
        self.markets = markets  # None: every market
        self.use_yes_price = use_yes_price
        self.seqd = channel in (BOOK, TRADE)
        self.seq = 0
        self.live = True

    def wants(self, market: str) -> bool:
        return self.markets is None or market in self.markets


class _Conn:
    """One WebSocket connection: its subscriptions, its bounded send queue and writer, its faults."""

    def __init__(self, ws: web.WebSocketResponse, transport: Any, owner: str, faults: Faults, limit: int,
                 market_ids: dict[str, str]) -> None:
        self.ws = ws
        self.market_ids = market_ids
        self.transport = transport
        self.owner = owner
        self.faults = faults
        self.fault = FaultState(faults) if faults.any else None
        self.limit = limit
        self.subs: dict[int, _Sub] = {}
        self.by_channel: dict[str, list[_Sub]] = {c: [] for c in CHANNELS}
        self.next_sid = 1
        self.queue: deque[bytes | object] = deque()  # frames, and perhaps _ABORT
        self.wake = asyncio.Event()
        self.closing = False
        self.sent = 0  # frames written

    # --- queueing ------------------------------------------------------------------------------------
    def reply(self, message: msgspec.Struct) -> None:
        """A reply or error: never refused by the bound (it is small and answers the client)."""
        self._put(codec.encode(message))

    def _put(self, frame: bytes | object) -> None:
        if self.closing:
            return
        self.queue.append(frame)
        if not self.wake.is_set():
            self.wake.set()

    def data(self, sub: _Sub, event: Event) -> None:
        """Queue the data frame of ``event`` on ``sub``, applying the connection's faults."""
        if self.closing or not sub.live:
            return
        kind = type(event)
        seq = None
        fault = self.fault
        if sub.seqd:
            sub.seq = seq = sub.seq + 1
            if fault is not None and kind is not BookSnapshot and fault.lose(sub.sid):
                return
        if len(self.queue) >= self.limit:
            _log().warning("send queue full: subscription dropped", owner=self.owner, sid=sub.sid,
                           channel=sub.channel, queued=len(self.queue))
            self.end(sub, codec.BUFFER_OVERFLOW, "Subscription buffer overflow: the client reads too slowly")
            return
        frame = codec.encode_event(event, sid=sub.sid, seq=seq, use_yes_price=sub.use_yes_price,
                                   market_id=self.market_ids.get(event.market) if sub.channel == BOOK else None)  # type: ignore[attr-defined]
        if fault is None:
            self.queue.append(frame)
            if not self.wake.is_set():
                self.wake.set()
            return
        for _ in range(fault.copies(kind is OrderFilled)):
            self._put(frame)
        action = fault.sent()
        bad = fault.malformed_after(frame, _WIRE_TYPE[kind], sub.sid)
        if bad is not None:
            self._put(bad)
        if action == "error25":
            self.end(sub, codec.BUFFER_OVERFLOW, "Subscription buffer overflow (injected fault)")
        elif action == "drop":
            self._put(_ABORT)
            self.closing = True

    def error(self, id: int | None, code: int, message: str) -> None:
        self.reply(m.Error(id=id, msg=m.ErrorMsg(code=code, msg=codec.clip(message))))

    # --- subscriptions ---------------------------------------------------------------------------------
    def add(self, channel: str, markets: set[str] | None, use_yes_price: bool) -> _Sub:
        sub = _Sub(self.next_sid, channel, markets, use_yes_price)
        self.next_sid += 1
        self.subs[sub.sid] = sub
        self.by_channel[channel].append(sub)
        return sub

    def remove(self, sub: _Sub) -> None:
        sub.live = False
        if self.subs.pop(sub.sid, None) is not None:
            self.by_channel[sub.channel].remove(sub)

    def end(self, sub: _Sub, code: int, message: str) -> None:
        """A terminal error for one subscription: it is dropped and told so (the frame names its sid)."""
        self.remove(sub)
        self.reply(m.Error(msg=m.ErrorMsg(code=code, msg=message), sid=sub.sid))

    # --- the writer ------------------------------------------------------------------------------------
    async def write(self) -> None:
        """Write queued frames in order until the connection closes (``slow_ms`` before each)."""
        ws, queue, wake = self.ws, self.queue, self.wake
        slow = self.faults.slow_ms / 1000
        text = WSMsgType.TEXT
        try:
            while True:
                if not queue:
                    wake.clear()
                    await wake.wait()
                    continue
                frame = queue.popleft()
                if frame is _ABORT:
                    _log().info("fault: connection dropped", owner=self.owner, frames=self.sent)
                    self.transport.abort()
                    return
                if slow:
                    await asyncio.sleep(slow)
                await ws.send_frame(frame, text)  # type: ignore[arg-type]
                self.sent += 1
        except (ConnectionError, RuntimeError):  # the peer went away (aiohttp raises both kinds)
            self.closing = True


class ExchangeServer:
    """Kalshi's REST API and WebSocket around an :class:`Exchange` (see the module docstring)."""

    def __init__(self, exchange: Exchange, *, host: str = "127.0.0.1", port: int = 0, verifier: Verifier | None = None,
                 speed: float = 1.0, faults: Faults | None = None, ping_interval_s: float = 10.0,
                 tick_s: float = 0.01, tick_actions: int = 2_000, queue_limit: int = 10_000) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if not ping_interval_s > 0 or not tick_s > 0 or tick_actions < 1 or queue_limit < 1:
            raise ValueError("ping_interval_s and tick_s must be positive; tick_actions and queue_limit at least 1")
        self.exchange = exchange
        self.host = host
        self.verifier = verifier
        self.speed = speed
        self.faults = faults or Faults()
        self.ping_interval_s = ping_interval_s
        self.tick_s = tick_s
        self.tick_actions = tick_actions
        self.queue_limit = queue_limit
        self._want_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._conns: list[_Conn] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clock_task: asyncio.Task[None] | None = None
        self._paused = False
        self._wall0 = 0.0
        self._sim0 = exchange.now_ns
        self.behind_ns = 0  # how far the exchange's time lags the clock's (0 when it keeps up)

    # --- lifecycle ---------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware], client_max_size=1 << 20)
        app.router.add_get(WS_PATH, self._ws_handler)
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
            ("POST", "/portfolio/events/orders/batched", self._batch_create),
            ("DELETE", "/portfolio/events/orders/batched", self._batch_cancel),
            ("POST", "/portfolio/events/orders", self._create),
            ("DELETE", "/portfolio/events/orders/{order_id}", self._cancel),
            ("GET", "/portfolio/orders", self._orders),
            ("GET", "/portfolio/orders/{order_id}", self._order),
            ("GET", "/portfolio/fills", self._fills),
            ("GET", "/portfolio/positions", self._positions),
            ("GET", "/portfolio/balance", self._balance),
            ("GET", "/markets", self._markets),
            ("GET", "/markets/{ticker}", self._market),
            ("GET", "/markets/{ticker}/orderbook", self._orderbook),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, API_PREFIX + path, handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._want_port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._wall0 = asyncio.get_running_loop().time()
        self._sim0 = self.exchange.now_ns
        self._tick()  # the markets open at once
        self._clock_task = asyncio.create_task(self._clock(), name="exchange-clock")
        _log().debug("exchange serving", rest=self.rest_url, ws=self.ws_url, markets=len(self.exchange.tickers),
                    speed=self.speed, auth="signed" if self.verifier else "trust", faults=str(self.faults) or None)

    async def stop(self) -> None:
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
            self._clock_task = None
        for conn in list(self._conns):
            conn.closing = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"server shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in list(self._tasks):
            task.cancel()
        _log().debug("exchange stopped")

    async def __aenter__(self) -> ExchangeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def pause(self) -> None:
        """Stop the market's time: no model action runs until :meth:`resume` (commands still act)."""
        if not self._paused:
            self._tick()
            self._paused = True

    def resume(self) -> None:
        """Let the market's time go on from where it was paused."""
        if self._paused:
            self._paused = False
            self._wall0 = asyncio.get_running_loop().time()
            self._sim0 = self.exchange.now_ns

    @property
    def paused(self) -> bool:
        return self._paused

    # --- the clock and the fan-out ---------------------------------------------------------------------------
    def _target_ns(self) -> int:
        elapsed = asyncio.get_running_loop().time() - self._wall0
        return self._sim0 + int(elapsed * self.speed * _NS)

    def _tick(self) -> bool:
        """Advance the exchange towards the clock's time; True if it could not catch up this tick."""
        if self._paused:
            return False
        target = self._target_ns()
        entries = self.exchange.advance(target, limit=self.tick_actions)
        self.behind_ns = target - self.exchange.now_ns
        self._publish(entries)
        return self.behind_ns > 0

    async def _clock(self) -> None:
        while True:
            try:
                behind = self._tick()
            except Exception:  # a bug in the core must not kill the clock silently
                _log().exception("exchange clock failed")
                raise
            await asyncio.sleep(0 if behind else self.tick_s)

    def _publish(self, entries: Iterable[Entry]) -> None:
        conns = self._conns
        if not conns:
            return
        for _, audience, events in entries:
            targets = conns if audience == PUBLIC else [c for c in conns if c.owner == audience]
            for event in events:
                channel = _CHANNEL_OF.get(type(event))
                if channel is None:
                    continue
                market = event.market  # type: ignore[attr-defined]
                for conn in targets:
                    subs = conn.by_channel[channel]
                    if subs:
                        for sub in subs[:]:  # a copy: a subscription may end while it is fed
                            if sub.markets is None or market in sub.markets:
                                conn.data(sub, event)

    def _act(self, command: Callable[[int], CommandResult]) -> CommandResult:
        """Run a command at the exchange's time now, and publish what it did."""
        self._tick()
        result = command(self.exchange.now_ns)
        self._publish(result.events)
        return result

    # --- authentication and the REST plumbing -------------------------------------------------------------
    def _authenticate(self, request: web.Request) -> tuple[str | None, str]:
        """(owner, why not): the owner is None when the request is refused."""
        headers = request.headers
        if self.verifier is None:
            return headers.get(HEADER_KEY) or "trust", ""
        why = self.verifier.check(headers, request.method, request.rel_url.raw_path, now_ms=int(time.time() * 1000))
        if why is not None:
            return None, why
        return headers[HEADER_KEY], ""

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        owner, why = self._authenticate(request)
        if owner is None:
            _log().warning("request refused", method=request.method, path=request.rel_url.raw_path, reason=why)
            return _error(401, "unauthorized", why)
        request[_OWNER] = owner
        slow_ms = self.faults.slow_ms
        spec = request.headers.get(FAULTS_HEADER)
        if spec is not None and request.path != WS_PATH:
            try:
                slow_ms = Faults.parse(spec).slow_ms
            except FaultError as exc:
                return _error(400, "bad_request", f"{FAULTS_HEADER}: {exc}")
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = _error(exc.status, "not_found" if exc.status == 404 else "bad_request",
                              f"{request.method} {request.rel_url.raw_path}: {exc.reason}")
        except _BadRequest as exc:
            response = _error(400, "bad_request", str(exc))
        except Exception:
            _log().exception("request failed", method=request.method, path=request.rel_url.raw_path)
            response = _error(500, "internal_error", "the exchange failed to answer; see its log")
        if slow_ms and request.path != WS_PATH:
            await asyncio.sleep(slow_ms / 1000)
        return response

    # --- REST: orders ----------------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        order = rest.decode_order_request(await request.read())
        if isinstance(order, MalformedInput):
            return _error(400, "bad_request", order.error)
        owner = request[_OWNER]
        result = self._act(lambda now: self.exchange.create_order(owner, order, now))
        if result.error is not None:
            return _refusal(result.error)
        o = result.order
        assert o is not None
        return _json(rest.created_body(o.order_id, o.client_order_id or None, o.fill_count, o.remaining_count,
                                       o.venue_ts_ms), 201)

    async def _cancel(self, request: web.Request) -> web.Response:
        owner, order_id = request[_OWNER], request.match_info["order_id"]
        result = self._act(lambda now: self.exchange.cancel_order(owner, order_id, now))
        if result.error is not None:
            return _refusal(result.error)
        o = result.order
        assert o is not None
        return _json(m.CancelOrderV2Response(order_id=o.order_id, client_order_id=o.client_order_id or None,
                                             reduced_by_fp=format_count(result.canceled), ts_ms=o.venue_ts_ms,
                                             order=cv.order_msg(o)))

    async def _batch_create(self, request: web.Request) -> web.Response:
        body = rest.decode_body(await request.read(), m.BatchCreateOrdersV2Request)
        if isinstance(body, MalformedInput):
            return _error(400, "bad_request", body.error)
        if not 1 <= len(body.orders) <= MAX_BATCH:
            return _error(400, "bad_request", f"orders: {len(body.orders)} orders; a batch holds 1 to {MAX_BATCH}")
        owner = request[_OWNER]
        items = []
        for i, wire in enumerate(body.orders):
            try:
                order = rest.order_request(wire, f"batch_create_orders_v2_request.orders[{i}]")
            except ValueError as exc:
                items.append(m.BatchCreateItem(client_order_id=wire.client_order_id,
                                               error=m.ErrorDetail(code="bad_request", message=str(exc), details="")))
                continue
            result = self._act(lambda now, order=order: self.exchange.create_order(owner, order, now))
            if result.error is not None:
                e = result.error
                items.append(m.BatchCreateItem(client_order_id=wire.client_order_id,
                                               error=m.ErrorDetail(code=e.code, message=e.message, details="")))
                continue
            o = result.order
            assert o is not None
            items.append(m.BatchCreateItem(client_order_id=o.client_order_id or None, order=m.CreateOrderV2Result(
                order_id=o.order_id, client_order_id=o.client_order_id or None, fill_count=format_count(o.fill_count),
                remaining_count=format_count(o.remaining_count), ts_ms=o.venue_ts_ms)))
        return _json(m.BatchCreateOrdersV2Response(orders=items), 201)

    async def _batch_cancel(self, request: web.Request) -> web.Response:
        body = rest.decode_body(await request.read(), _BatchCancel)
        if isinstance(body, MalformedInput):
            return _error(400, "bad_request", body.error)
        ids = [*(body.ids or ()), *(o.order_id for o in body.orders or ())]
        if not 1 <= len(ids) <= MAX_BATCH:
            return _error(400, "bad_request", f"ids: {len(ids)} order ids; a batch cancels 1 to {MAX_BATCH}")
        owner = request[_OWNER]
        items = []
        for order_id in ids:
            result = self._act(lambda now, order_id=order_id: self.exchange.cancel_order(owner, order_id, now))
            if result.error is not None:
                e = result.error
                items.append(m.BatchCancelItem(order_id=order_id,
                                               error=m.ErrorDetail(code=e.code, message=e.message, details="")))
                continue
            o = result.order
            assert o is not None
            items.append(m.BatchCancelItem(order_id=order_id, reduced_by_fp=format_count(result.canceled),
                                           order=cv.order_msg(o)))
        return _json(m.BatchCancelOrdersResponse(orders=items))

    async def _orders(self, request: web.Request) -> web.Response:
        q = request.query
        ticker, status = q.get("ticker"), q.get("status")
        if status is not None and status not in _ORDER_STATUS:
            raise _BadRequest(f"status: {status!r} is not one of canceled, executed, resting")
        items = self.exchange.orders(request[_OWNER])
        page, cursor = _newest_first(items, lambda o: (ticker is None or o.market == ticker)
                                     and (status is None or o.status == status), _limit(q), q.get("cursor"))
        return _json(rest.orders_body(page, cursor))

    async def _order(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        report = self.exchange.order(request[_OWNER], order_id)
        if report is None:
            return _error(404, "not_found", f"order {order_id!r} not found")
        return _json(_OrderResponse(order=cv.order_msg(report)))

    async def _fills(self, request: web.Request) -> web.Response:
        q = request.query
        ticker, order_id = q.get("ticker"), q.get("order_id")
        min_ms = _min_ts_ms(q.get("min_ts"))
        items = self.exchange.fills(request[_OWNER])
        page, cursor = _newest_first(items, lambda f: (ticker is None or f.market == ticker)
                                     and (order_id is None or f.order_id == order_id)
                                     and (min_ms is None or (f.venue_ts_ms or 0) >= min_ms), _limit(q), q.get("cursor"))
        return _json(rest.fills_body(page, cursor))

    async def _positions(self, request: web.Request) -> web.Response:
        q = request.query
        ticker = q.get("ticker")
        items = [p for p in self.exchange.positions(request[_OWNER]) if ticker is None or p.market == ticker]
        page, cursor = _by_ticker(items, lambda p: p.market, _limit(q), q.get("cursor"))
        return _json(rest.positions_body(page, cursor))

    async def _balance(self, request: web.Request) -> web.Response:
        return _json(rest.balance_body(self.exchange.balance(request[_OWNER])))

    # --- REST: markets ---------------------------------------------------------------------------------
    async def _markets(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status")
        if status is not None and status not in _MARKET_STATUS:
            raise _BadRequest(f"status: {status!r} is not one of {', '.join(_MARKET_STATUS)}")
        wanted = None if not q.get("tickers") else set(q["tickers"].split(","))
        self._tick()
        items = [i for i in self.exchange.markets() if (wanted is None or i.ticker in wanted)
                 and (status is None or i.status in _MARKET_STATUS[status])]
        page, cursor = _by_ticker(items, lambda i: i.ticker, _limit(q), q.get("cursor"))
        return _json(m.MarketsResponse(markets=[self._market_body(i) for i in page], cursor=cursor))

    async def _market(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        self._tick()
        info = self.exchange.market(ticker)
        if info is None:
            return _error(404, "not_found", f"market {ticker!r} not found")
        return _json(m.MarketResponse(market=self._market_body(info)))

    async def _orderbook(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        depth = _int_query(request.query, "depth", 0, 0, PRICE_MAX)
        self._tick()
        book = self.exchange.book(ticker)
        if book is None:
            return _error(404, "not_found", f"market {ticker!r} not found")
        if depth:
            book = BookSnapshot(book.market, tuple(sorted(book.yes_bids)[-depth:]), tuple(sorted(book.no_bids)[-depth:]))
        return _json(cv.book_to_rest(book))

    def _market_body(self, info: MarketInfo) -> m.Market:
        tick = info.tick
        grid = m.PriceRange(start=format_price(tick), end=format_price(PRICE_MAX - tick), step=format_price(tick))
        return m.Market(ticker=info.ticker, event_ticker=self.exchange.prefix, status=info.status, result=info.result,
                        price_ranges=[grid], close_time=_iso(info.close_ns))

    # --- WebSocket --------------------------------------------------------------------------------------
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        spec = request.query.get("faults")
        if spec is not None:
            try:
                faults = Faults.parse(spec)
            except FaultError as exc:
                return _error(400, "bad_request", f"?faults={spec}: {exc}")
        ws = web.WebSocketResponse(autoping=True, heartbeat=None, compress=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = _Conn(ws, request.transport, request[_OWNER], faults, self.queue_limit, self.exchange.market_ids)
        self._conns.append(conn)
        _log().debug("websocket connected", owner=conn.owner, faults=str(faults) or None)
        writer = self._spawn(conn.write(), "exchange-ws-writer")
        pinger = self._spawn(self._ping(conn), "exchange-ws-ping")
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    try:
                        self._command(conn, msg.data)
                    except Exception:  # a bug answering one command must not end the connection
                        _log().exception("websocket command failed", owner=conn.owner)
                        conn.error(None, UNABLE_TO_PROCESS, "the exchange failed to process the command")
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:  # the peer left, or the server stops: what is still queued has nobody to go to
            conn.closing = True
            if conn in self._conns:
                self._conns.remove(conn)
            pinger.cancel()
            writer.cancel()
            _log().debug("websocket closed", owner=conn.owner, frames=conn.sent, code=ws.close_code)
        return ws

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ping(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not conn.closing:
                await asyncio.sleep(self.ping_interval_s)
                await conn.ws.ping(b"heartbeat")

    def _command(self, conn: _Conn, raw: str | bytes) -> None:
        """Answer one client command; a bad one gets an ``error`` reply and changes nothing."""
        command = codec.decode_command(raw)
        if isinstance(command, codec.BadCommand):
            code = _bad_command_code(raw)
            _log().debug("bad websocket command", owner=conn.owner, code=code, error=command.error)
            conn.error(command.id, code, command.error)
            return
        self._tick()
        if isinstance(command, m.Subscribe):
            self._subscribe(conn, command)
        elif isinstance(command, m.Unsubscribe):
            self._unsubscribe(conn, command)
        elif isinstance(command, m.ListSubscriptions):
            conn.reply(m.Ok(id=command.id, msg=[_describe(s) for s in conn.subs.values()]))
        else:
            self._update(conn, command)

    def _markets_of(self, conn: _Conn, id: int, single: str | None, many: Sequence[str] | None) -> list[str] | None:
        """The tickers a command names (deduplicated, in order), or None after an error reply."""
        tickers = list(dict.fromkeys([*(many or ()), *(() if not single else (single,))]))
        unknown = [t for t in tickers if self.exchange.market(t) is None]
        if unknown:
            conn.error(id, INVALID_PARAMETER, f"market ticker {unknown[0]!r} not found")
            return None
        return tickers

    def _subscribe(self, conn: _Conn, command: m.Subscribe) -> None:
        p, id = command.params, command.id
        if not p.channels:
            conn.error(id, CHANNELS_REQUIRED, "Channels required")
            return
        channels = [_ALIASES.get(c, c) for c in p.channels]
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            conn.error(id, UNKNOWN_CHANNEL, f"Unknown channel name {unknown[0]!r}")
            return
        single = p.market_ticker if isinstance(p.market_ticker, str) else None
        many = p.market_tickers if isinstance(p.market_tickers, list) else None
        tickers = self._markets_of(conn, id, single, many)
        if tickers is None:
            return
        if BOOK in channels and not tickers:
            conn.error(id, codec.MARKET_TICKER_REQUIRED, "Market ticker required: orderbook_delta needs market tickers")
            return
        for channel in dict.fromkeys(channels):
            sub = conn.add(channel, set(tickers) if tickers else None, p.use_yes_price)
            conn.reply(m.Subscribed(id=id, msg=m.SubscribedMsg(channel=channel, sid=sub.sid)))
            if channel == BOOK:
                self._snapshots(conn, sub, tickers)
        _log().debug("subscribed", owner=conn.owner, channels=channels, markets=len(tickers))

    def _snapshots(self, conn: _Conn, sub: _Sub, tickers: Iterable[str]) -> None:
        for ticker in tickers:
            book = self.exchange.book(ticker)
            if book is not None:
                conn.data(sub, book)

    def _unsubscribe(self, conn: _Conn, command: m.Unsubscribe) -> None:
        sids = command.params.sids
        if not sids:
            conn.error(command.id, SIDS_REQUIRED, "Subscription IDs required")
            return
        unknown = [s for s in sids if s not in conn.subs]
        if unknown:
            conn.error(command.id, UNKNOWN_SID, f"Unknown subscription ID {unknown[0]}")
            return
        for sid in dict.fromkeys(sids):
            sub = conn.subs[sid]
            conn.remove(sub)
            conn.reply(m.Unsubscribed(id=command.id, sid=sid, seq=sub.seq if sub.seqd else None))

    def _update(self, conn: _Conn, command: m.UpdateSubscription) -> None:
        p, id = command.params, command.id
        sids = p.sid_list()
        if len(sids) != 1:
            conn.error(id, codec.MULTIPLE_SIDS, f"Exactly one subscription ID is required, got {len(sids)}")
            return
        sub = conn.subs.get(sids[0])
        if sub is None:
            conn.error(id, UNKNOWN_SID, f"Unknown subscription ID {sids[0]}")
            return
        tickers = self._markets_of(conn, id, p.market_ticker, p.market_tickers)
        if tickers is None:
            return
        if p.action == "get_snapshot":
            if sub.channel != BOOK:
                conn.error(id, UNSUPPORTED_ACTION, f"get_snapshot is for orderbook_delta, not {sub.channel}")
                return
            wanted = [t for t in tickers if sub.wants(t)] if tickers else sorted(sub.markets or ())
            conn.reply(m.Ok(id=id, sid=sub.sid, msg={"market_tickers": sorted(sub.markets or ())}))
            self._snapshots(conn, sub, wanted)
            return
        if not tickers:
            conn.error(id, codec.MARKET_TICKER_REQUIRED, f"Market ticker required: {p.action} needs market tickers")
            return
        if p.action == "add_markets":
            added = [t for t in tickers if sub.markets is not None and t not in sub.markets]
            if sub.markets is not None:
                sub.markets.update(tickers)
        else:
            added = []
            if sub.markets is None:  # a channel of every market becomes one of all the others
                sub.markets = set(self.exchange.tickers)
            sub.markets.difference_update(tickers)
        markets = sorted(self.exchange.tickers if sub.markets is None else sub.markets)
        conn.reply(m.Ok(id=id, sid=sub.sid, msg={"market_tickers": markets}))  # no seq: clients read it two ways
        if sub.channel == BOOK:
            self._snapshots(conn, sub, added)


# --- helpers -------------------------------------------------------------------------------------------------
class _BadRequest(Exception):
    """A query parameter that cannot be read: a 400 naming it."""


class _OrderId(msgspec.Struct, frozen=True):
    order_id: str


class _BatchCancel(msgspec.Struct, frozen=True, kw_only=True):
    """``DELETE /portfolio/events/orders/batched``: ``ids``, or ``orders`` of ``{"order_id"}``."""

    ids: list[str] | None = None
    orders: list[_OrderId] | None = None


class _OrderResponse(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /portfolio/orders/{order_id}``."""

    order: m.UserOrderMsg


def _json(body: msgspec.Struct, status: int = 200) -> web.Response:
    return web.Response(body=codec.encode(body), status=status, content_type="application/json")


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(rest.error_body(code, codec.clip(message)), status)


def _refusal(error: ExchangeError) -> web.Response:
    return _error(error.status, error.code, error.message)


def _iso(ns: int) -> str:
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1_000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond // 1000:03d}Z" if moment.microsecond else "Z")


def _int_query(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or not lo <= int(text) <= hi:
        raise _BadRequest(f"{name}: {text[:40]!r} is not a whole number from {lo} to {hi}")
    return int(text)


def _limit(query: Any) -> int:
    return _int_query(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)


def _min_ts_ms(text: str | None) -> int | None:
    """``min_ts`` in Unix seconds (Kalshi's unit), or milliseconds when it is above 10^12."""
    if text is None or text == "":
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise _BadRequest(f"min_ts: {text[:40]!r} is not Unix seconds (or milliseconds)")
    value = int(text)
    return value if value > 10**12 else value * 1000


def _newest_first(items: Sequence[T], keep: Callable[[T], bool], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """A page of ``items`` (oldest first) taken newest first. The cursor is the index below which the next
    page starts, so items added meanwhile (at the end) never shift a page."""
    start = len(items)
    if cursor:
        if not cursor.isascii() or not cursor.isdigit() or int(cursor) > len(items):
            raise _BadRequest(f"cursor: {cursor[:40]!r} is not a cursor of this list")
        start = int(cursor)
    page: list[T] = []
    i = start - 1
    while i >= 0 and len(page) < limit:
        if keep(items[i]):
            page.append(items[i])
        i -= 1
    more = any(keep(items[j]) for j in range(i, -1, -1))
    return page, str(i + 1) if more else None


def _by_ticker(items: Sequence[T], key: Callable[[T], str], limit: int, cursor: str | None) -> tuple[list[T], str | None]:
    """A page of ``items`` in ticker order after the cursor (the last ticker of the previous page)."""
    ordered = sorted(items, key=key)
    if cursor:
        ordered = [i for i in ordered if key(i) > cursor]
    page = ordered[:limit]
    return page, key(page[-1]) if len(ordered) > limit else None


def _describe(sub: _Sub) -> dict[str, Any]:
    out: dict[str, Any] = {"channel": sub.channel, "sid": sub.sid}
    if sub.markets is not None:
        out["market_tickers"] = sorted(sub.markets)
    return out


class _Loose(msgspec.Struct, frozen=True):
    cmd: Any = None
    params: Any = None


_LOOSE = msgspec.json.Decoder(_Loose)
_NEEDS: Final = {"subscribe": ("channels", CHANNELS_REQUIRED), "unsubscribe": ("sids", SIDS_REQUIRED),
                 "update_subscription": ("action", ACTION_REQUIRED)}
_COMMANDS: Final = frozenset({"subscribe", "unsubscribe", "list_subscriptions", "update_subscription"})


def _bad_command_code(raw: str | bytes) -> int:
    """The Kalshi error code for a command the codec could not read (see the module docstring)."""
    try:
        loose = _LOOSE.decode(raw)
    except (ValueError, RecursionError):
        return UNABLE_TO_PROCESS
    if loose.cmd not in _COMMANDS:
        return UNKNOWN_COMMAND
    need = _NEEDS.get(loose.cmd)
    if need is None:
        return INVALID_PARAMETER
    if not isinstance(loose.params, dict):
        return PARAMS_REQUIRED
    field, code = need
    if not loose.params.get(field):
        return code
    return INVALID_PARAMETER
