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

**Rate limits.** With ``limits`` (a Kalshi tier: ``basic``, ``advanced``, ``premier``, ``paragon``, ``prime``;
:mod:`actors.limits`) every REST request takes its cost from its account's read or write token bucket, in wall
time, as Kalshi meters them: 10 tokens for most requests, 2 for a cancel, a batch per order. A request the bucket
cannot cover is answered 429 with Kalshi's body ``{"error": "too many requests"}`` and no ``Retry-After``, and
takes nothing. Each account (API key id; ``"trust"`` for requests without one) has its own buckets, full when it
is first seen. Without ``limits`` (the default) nothing is metered.

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

The code is in three modules: this one (:class:`ExchangeServer`: its lifecycle, the clock and the fan-out,
authentication, the routes), :mod:`.rest_api` (the REST handlers) and :mod:`.ws_api` (WebSocket connections,
subscriptions and commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import msgspec
from aiohttp import web

from actors.limits import Cost, RateLimits, Tier, request_cost
from actors.limits import tier as tier_named

from ..kalshi.auth import HEADER_KEY, Verifier
from .exchange import PUBLIC, CommandResult, Entry, Exchange
from .faults import FaultError, Faults
from .rest_api import _OWNER, RestApi, _BadRequest, _error, _log, is_public
from .ws_api import _CHANNEL_OF, WsApi, _Conn

__all__ = ["API_PREFIX", "FAULTS_HEADER", "WS_PATH", "ExchangeServer"]

API_PREFIX: Final = "/trade-api/v2"
WS_PATH: Final = "/trade-api/ws/v2"
FAULTS_HEADER: Final = "X-Tape-Faults"

_NS: Final = 1_000_000_000
TOO_MANY_REQUESTS: Final = b'{"error":"too many requests"}'  # Kalshi's 429 body (docs.kalshi.com, "Rate limits")


class _Items(msgspec.Struct):
    """A batch body, read only to count its orders (``orders`` to create or cancel, or cancel ``ids``)."""

    orders: list[msgspec.Raw] = []
    ids: list[msgspec.Raw] = []


_ITEMS = msgspec.json.Decoder(_Items)


class ExchangeServer(RestApi, WsApi):
    """Kalshi's REST API and WebSocket around an :class:`Exchange` (see the module docstring)."""

    def __init__(self, exchange: Exchange, *, host: str = "127.0.0.1", port: int = 0, verifier: Verifier | None = None,
                 speed: float = 1.0, faults: Faults | None = None, ping_interval_s: float = 10.0,
                 tick_s: float = 0.01, tick_actions: int = 2_000, queue_limit: int = 10_000,
                 limits: Tier | str | None = None) -> None:
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
        self.limits: Tier | None = tier_named(limits) if isinstance(limits, str) else limits  # (raises if unknown)
        self._buckets: dict[str, RateLimits] = {}  # per account
        self.refused = 0  # requests answered 429
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
            ("POST", "/portfolio/events/orders/{order_id}/amend", self._amend),
            ("POST", "/portfolio/events/orders/{order_id}/decrease", self._decrease),
            ("POST", "/portfolio/order_groups/create", self._create_group),
            ("GET", "/portfolio/order_groups", self._groups),
            ("GET", "/portfolio/order_groups/{order_group_id}", self._group),
            ("DELETE", "/portfolio/order_groups/{order_group_id}", self._delete_group),
            ("PUT", "/portfolio/order_groups/{order_group_id}/reset", self._reset_group),
            ("PUT", "/portfolio/order_groups/{order_group_id}/trigger", self._trigger_group),
            ("PUT", "/portfolio/order_groups/{order_group_id}/limit", self._group_limit),
            ("GET", "/portfolio/orders", self._orders),
            ("GET", "/portfolio/orders/queue_positions", self._queue_positions),
            ("GET", "/portfolio/orders/{order_id}", self._order),
            ("GET", "/portfolio/fills", self._fills),
            ("GET", "/portfolio/positions", self._positions),
            ("GET", "/portfolio/balance", self._balance),
            ("GET", "/markets", self._markets),
            ("GET", "/markets/{ticker}", self._market),
            ("GET", "/markets/{ticker}/orderbook", self._orderbook),
            ("GET", "/series/{series_ticker}", self._series),
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
        if HEADER_KEY not in headers and is_public(request.method, request.path):
            return "public", ""  # Kalshi serves market data without a signature
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
        if self.limits is not None and request.path != WS_PATH and not self._admit(owner, await self._cost(request)):
            self.refused += 1
            _log().debug("request rate limited", method=request.method, path=request.rel_url.raw_path, key=owner)
            return web.Response(status=429, body=TOO_MANY_REQUESTS, content_type="application/json")
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

    async def _cost(self, request: web.Request) -> Cost:
        """What the request costs; a batch is read (the handler reads it again) to count its orders."""
        path = request.path[len(API_PREFIX):] if request.path.startswith(API_PREFIX) else request.path
        items = 1
        if path.endswith("/batched") and request.method in ("POST", "DELETE"):
            try:
                body = _ITEMS.decode(await request.read())
                items = max(len(body.orders), len(body.ids), 1)
            except (msgspec.DecodeError, ValueError):
                pass  # the handler answers 400; the request costs one item
        return request_cost(request.method, path, items)

    def _admit(self, owner: str, cost: Cost) -> bool:
        """Take the cost from the account's bucket now (wall time), or refuse (False). A cost above the bucket's
        capacity (a batch larger than the tier allows at once) is refused too."""
        assert self.limits is not None
        buckets = self._buckets.get(owner)
        if buckets is None:
            buckets = self._buckets[owner] = RateLimits(self.limits)
        if cost.tokens > self.limits.capacity(cost.bucket):
            return False
        return buckets.take(time.monotonic_ns(), cost)

    # --- tasks (the WebSocket's writers and pingers) -----------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
