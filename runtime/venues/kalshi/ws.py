"""Our Kalshi WebSocket client: a signed, self-healing feed of input events for the sequencer.

::

    async with KalshiFeed(url, ["KXA-1", "KXB-1"], signer=signer, rest=rest_client) as feed:
        async for batch in feed:          # [(received_ns, Event), ...] in arrival order
            await log.append(batch)

What it does, and where the rules live:

* **Connect** with the ``KALSHI-ACCESS-*`` headers signed over ``GET`` and the URL's path
  (``/trade-api/ws/v2``), signed afresh on every reconnect. Pings are answered by ``websockets``.
* **Every frame** is stamped with ``clock_ns()`` as it is received and decoded by :class:`.codec.WsDecoder`
  (which never raises: a bad frame is a ``MalformedInput`` event); the pure :class:`.tracker.FeedTracker`
  then checks seq per sid, marks books stale, asks for resyncs and drops duplicate fills (its module
  docstring states every rule). Its commands are sent at once.
* **Batches.** Events accumulate in arrival order until the consumer asks; each ``__anext__`` returns
  everything received since the last one (waiting for at least one event). At ``max_pending`` events not
  yet taken the feed stops reading the socket, so a slow consumer slows the venue (which may then end the
  subscription with error 25: the tracker resubscribes) — nothing is dropped.
* **Connection lost** (closed, reset, ping timeout, or refused at connect): a ``VenueError`` saying what
  happened and when the next attempt is, then the tracker's markers — one ``SeqGapDetected`` per order
  book subscription, naming its markets, with ``received`` = 0 — so every book is stale; then reconnect
  after an exponential backoff (``backoff_s`` doubling to ``max_backoff_s``, jittered from ``rng``) and
  subscribe everything again (new sids). A refused upgrade with 401 or 403 is not retried: the iteration
  raises :class:`KalshiFeedError` (the key is wrong; retrying cannot help).
* **Market info** (with ``info``, a REST client): before each connection subscribes, every market whose
  definition is not logged yet is read (``GET /markets?tickers=…`` and each series' ``GET /series/{ticker}``, cached)
  and delivered as a ``MarketInfo`` (:mod:`.info`) ahead of anything the connection brings, so it is logged before
  the market's first book snapshot; a ``close_date_updated`` lifecycle event makes its market be read again (its
  ``MarketInfo`` follows the lifecycle event). A failed read is a ``VenueError``, and the next connection retries
  the markets still unread; a series that cannot be read gives a ``MarketInfo`` without fee terms.
* **REST reconciliation** (with ``rest`` and ``reconcile``), on every connection once the private channels
  are confirmed, and whenever the tracker asks: fills since the last delivered fill's time minus
  ``reconcile_margin_ms`` (the feed's start, at first), resting orders (``OrderStatusReported``) and
  positions (``PositionReported``), each stamped when its reply arrived and delivered in the same stream,
  fills deduplicated by trade id with the WebSocket's. With ``own`` (the client order id prefix of this session's
  orders) only this session's fills and resting orders are delivered: an account's other sessions, before or
  beside it, are not this log's to reconcile. A failed reconciliation is a ``VenueError`` event;
  the next connection tries again.
* **Close** (``await feed.close()`` or leaving the ``async with``) closes the socket and cancels and awaits
  the feed's tasks; iteration then ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit

from structlog.typing import FilteringBoundLogger
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from runtime.events import Event, MarketInfo, MarketLifecycle, VenueError
from runtime.logger import get_logger

from . import codec
from . import info as mi
from . import tracker as tr
from .auth import WS_PATH, Signer
from .http import KalshiApiError, KalshiError, KalshiRest
from .messages import Market
from .tracker import DEFAULT_CHANNELS, FeedStats, FeedTracker

__all__ = ["KalshiFeed", "KalshiFeedError"]

SOURCE: Final = codec.SOURCE
_AUTH_REFUSED: Final = frozenset({401, 403})
MAX_FRAME_BYTES: Final = 16 * 2**20  # a snapshot of a deep book can exceed websockets' 1 MiB default


def _log() -> FilteringBoundLogger:
    """The logger, taken when used: logging is configured after this module is imported."""
    return get_logger("kalshi.ws")


class KalshiFeedError(Exception):
    """The feed cannot go on (the venue refuses our key); the message says what to check."""


class KalshiFeed:
    """A Kalshi WebSocket feed of ``(received_ns, Event)`` batches (see the module docstring)."""

    def __init__(self, ws_url: str, markets: Sequence[str], *, channels: Sequence[str] = DEFAULT_CHANNELS,
                 signer: Signer | None = None, rest: KalshiRest | None = None, use_yes_price: bool = False,
                 clock_ns: Callable[[], int] = time.time_ns, backoff_s: float = 0.2, max_backoff_s: float = 10.0,
                 reconcile: bool = True, own: str | None = None, rng: random.Random | None = None,
                 reconcile_margin_ms: int = 60_000,
                 max_pending: int = 100_000, open_timeout_s: float = 10.0, ping_interval_s: float | None = 20.0,
                 ping_timeout_s: float | None = 20.0, legacy: bool = False, info: KalshiRest | None = None) -> None:
        if backoff_s < 0 or max_backoff_s < 0:
            raise ValueError(f"backoff_s {backoff_s} and max_backoff_s {max_backoff_s} must be >= 0")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.ws_url = ws_url
        self.use_yes_price = use_yes_price
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.reconcile_margin_ms = reconcile_margin_ms
        self._tracker = FeedTracker(markets, channels)
        self._decoder = codec.WsDecoder(SOURCE, legacy=legacy, use_yes_price=use_yes_price)  # legacy: integer cents too
        self._signer = signer
        self._rest = rest if reconcile else None
        self._own = own  # this session's client order id prefix: reconciliation delivers only its orders' fills
        self._clock_ns = clock_ns
        self._rng = rng or random.Random()
        self._max_pending = max_pending
        self._connect_options = {"open_timeout": open_timeout_s, "ping_interval": ping_interval_s,
                                 "ping_timeout": ping_timeout_s, "close_timeout": 2.0, "max_size": MAX_FRAME_BYTES}
        self._sign_path = urlsplit(ws_url).path or WS_PATH
        self._pending: list[tuple[int, Event]] = []
        self._ready = asyncio.Event()  # set when events are pending or the feed has ended
        self._room = asyncio.Event()  # set while fewer than max_pending events are pending
        self._room.set()
        self._closing = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._reconciling: asyncio.Task[None] | None = None
        self._cancelled: set[asyncio.Task[None]] = set()  # reconciliations cancelled, not yet finished
        self._failure: BaseException | None = None
        self._ended = False
        self._started_ms = 0
        self._info = info
        self._informed: set[str] = set()  # markets whose MarketInfo has been delivered
        self._series: dict[str, mi.Series] = {}  # series read, by ticker
        self._rereads: set[asyncio.Task[None]] = set()  # close_date_updated re-reads in flight

    def __repr__(self) -> str:
        return f"KalshiFeed({self.ws_url!r}, markets={list(self._tracker.markets)!r}, connected={self.connected})"

    # --- state -------------------------------------------------------------------------------------------
    @property
    def stats(self) -> FeedStats:
        """Counters: frames, gaps, resyncs, books_resynced, reconnects, duplicate_fills, malformed."""
        return self._tracker.stats

    @property
    def stale(self) -> frozenset[str]:
        """Markets whose book is not known now: not to be traded on."""
        return self._tracker.stale

    @property
    def connected(self) -> bool:
        return self._ws is not None

    # --- life ----------------------------------------------------------------------------------------
    async def __aenter__(self) -> KalshiFeed:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting (``async with`` and iteration do it)."""
        if self._task is None and not self._closing.is_set():
            self._started_ms = self._clock_ns() // 1_000_000
            self._task = asyncio.create_task(self._run(), name=f"kalshi-feed {self.ws_url}")

    async def close(self) -> None:
        """Close the socket, cancel and await the feed's tasks; iteration ends after what is pending."""
        self._closing.set()
        self._room.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        self._stop_reconciling()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        for task in self._rereads:
            task.cancel()
        for task in [*self._cancelled, *self._rereads, *([self._task] if self._task is not None else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end()

    async def resync(self) -> None:
        """Ask the venue for a fresh snapshot of every book now; until they arrive the books are in
        :attr:`stale`. A loss just before a quiet spell shows only at the next frame: this checks sooner.
        Without a connection it does nothing (the next connection brings snapshots anyway)."""
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):  # the connection loop handles the loss
                await self._send(ws, self._tracker.resync())

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    def __aiter__(self) -> KalshiFeed:
        self.start()
        return self

    async def __anext__(self) -> list[tuple[int, Event]]:
        while not self._pending:
            if self._ended:
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    raise failure
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        batch, self._pending = self._pending, []
        self._room.set()
        return batch

    # --- the connection loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        try:
            while not self._closing.is_set():
                reason, healthy = await self._connection()
                if self._closing.is_set():
                    break
                failures = 1 if healthy else failures + 1
                delay = self._delay(failures)
                self._stop_reconciling()
                now = self._clock_ns()
                notice = VenueError(where=SOURCE, message=f"{self.ws_url}: {reason}; books are stale; "
                                                           f"reconnecting in {delay:.2f} s")
                await self._push(now, [notice, *self._tracker.disconnect()])
                _log().warning("connection lost", url=self.ws_url, reason=reason, reconnect_in_s=round(delay, 3),
                               attempt=failures)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
        except Exception as exc:  # a refused key, or a bug: surfaced by the iteration, not swallowed
            self._failure = exc
        finally:
            self._stop_reconciling()
            self._end()

    def _delay(self, failures: int) -> float:
        """Exponential backoff with jitter: half the capped step, plus up to half again at random."""
        step = min(self.max_backoff_s, self.backoff_s * 2 ** (failures - 1))
        return step / 2 + self._rng.random() * step / 2

    async def _connection(self) -> tuple[str, bool]:
        """One connection, until it ends: why it ended, and whether it had been healthy (subscribed, and
        not given up by the tracker)."""
        if self._info is not None:
            await self._inform(self._info, [t for t in self._tracker.markets if t not in self._informed])
        headers = None
        if self._signer is not None:
            headers = self._signer.headers("GET", self._sign_path, time.time_ns() // 1_000_000)
        try:
            ws = await connect(self.ws_url, additional_headers=headers, **self._connect_options)  # type: ignore[arg-type]
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in _AUTH_REFUSED:
                raise KalshiFeedError(
                    f"{self.ws_url}: the venue refused the WebSocket upgrade with HTTP {status} — check the API key "
                    "id and private key (KALSHI_API_KEY_ID, KALSHI_PRIVATE_KEY_PATH) and that they are for this "
                    "host: demo and production keys are separate") from None
            return f"the upgrade was refused with HTTP {status}", False
        except (OSError, TimeoutError, WebSocketException) as exc:
            return f"cannot connect ({_reason(exc)})", False
        self._ws = ws
        _log().info("connected", url=self.ws_url, markets=len(self._tracker.markets))
        healthy = False
        try:
            await self._send(ws, self._tracker.connect())
            async for raw in ws:
                received_ns = self._clock_ns()
                step = self._tracker.frame(self._decoder.decode(raw, received_ns))
                if step.events:
                    await self._push(received_ns, step.events)
                    if self._info is not None:
                        self._reread_moved(self._info, step.events)
                if step.commands:
                    await self._send(ws, step.commands)
                if step.reconcile:
                    self._start_reconciling()
                if not healthy and self._tracker.subscriptions():
                    healthy = True
                if step.reconnect:
                    return "subscribes keep being refused; reconnecting", False
            return f"the venue closed the connection ({_close_reason(ws)})", healthy
        except ConnectionClosed as exc:
            return f"the connection was lost ({_reason(exc)})", healthy
        finally:
            self._ws = None
            await ws.close()

    async def _send(self, ws: ClientConnection, commands: Iterable[tr.Command]) -> None:
        for command in commands:
            if type(command) is tr.Subscribe:
                text = codec.subscribe(command.id, [command.channel], command.markets, use_yes_price=self.use_yes_price)
            elif type(command) is tr.GetSnapshot:
                text = codec.update_subscription(command.id, command.sid, "get_snapshot", command.markets)
                _log().info("resync", sid=command.sid, markets=len(command.markets))
            else:
                text = codec.unsubscribe(command.id, [command.sid])  # type: ignore[union-attr]
            await ws.send(text.decode())

    async def _push(self, received_ns: int, events: Iterable[Event]) -> None:
        """Queue events for the consumer; waits while ``max_pending`` are queued (never drops)."""
        while len(self._pending) >= self._max_pending and not self._closing.is_set():
            self._room.clear()
            await self._room.wait()
        self._pending.extend((received_ns, e) for e in events)
        self._ready.set()

    # --- market info -------------------------------------------------------------------------------
    async def _inform(self, rest: KalshiRest, tickers: Sequence[str]) -> None:
        """Deliver the ``MarketInfo`` of ``tickers`` (module docstring), 100 markets a read."""
        for lo in range(0, len(tickers), 100):
            chunk = tickers[lo : lo + 100]
            try:
                markets = {market.ticker: market for market in await rest.markets(tickers=chunk)}
            except KalshiError as exc:
                await self._info_failed(rest, f"could not read the markets {', '.join(chunk[:3])}… : {exc}")
                return
            infos: list[Event] = []
            for ticker in chunk:
                market = markets.get(ticker)
                if market is None:
                    await self._info_failed(rest, f"GET /markets did not return {ticker}")
                    continue
                info = await self._market_info(rest, market)
                if info is not None:
                    infos.append(info)
                    self._informed.add(ticker)
            if infos:
                await self._push(self._clock_ns(), infos)

    async def _market_info(self, rest: KalshiRest, market: Market) -> MarketInfo | None:
        """One market's ``MarketInfo``, its series read once (None, with a ``VenueError``, if it cannot be read)."""
        name = mi.series_ticker(market)
        series = self._series.get(name)
        if series is None:
            try:
                series = self._series[name] = await rest.series(name)
            except KalshiApiError as exc:  # no such series, or refused: no fee terms (the configured ones apply)
                await self._info_failed(rest, f"could not read series {name} of {market.ticker}: {exc}")
            except KalshiError as exc:
                await self._info_failed(rest, f"could not read series {name} of {market.ticker}: {exc}")
                return None
        try:
            return mi.market_info(market, series, rest.base_url)
        except ValueError as exc:
            await self._info_failed(rest, f"market {market.ticker}: {exc}")
            return None

    async def _info_failed(self, rest: KalshiRest, message: str) -> None:
        _log().warning("market info not read", error=message)
        await self._push(self._clock_ns(), [VenueError(where=rest.source, message=codec.clip(f"market info: {message}"))])

    def _reread_moved(self, rest: KalshiRest, events: Sequence[Event]) -> None:
        """A ``close_date_updated`` among ``events``: read that market's definition again, in the background."""
        for event in events:
            if type(event) is MarketLifecycle and event.kind == "close_date_updated":
                task = asyncio.create_task(self._reread(rest, event.market), name=f"kalshi-feed info {event.market}")
                self._rereads.add(task)
                task.add_done_callback(self._rereads.discard)

    async def _reread(self, rest: KalshiRest, ticker: str) -> None:
        try:
            market = await rest.market(ticker)
        except KalshiError as exc:
            await self._info_failed(rest, f"could not read {ticker} again after its close moved: {exc}")
            return
        info = await self._market_info(rest, market)
        if info is not None:
            await self._push(self._clock_ns(), [info])

    # --- REST reconciliation -------------------------------------------------------------------------
    def _start_reconciling(self) -> None:
        if self._rest is None:
            return
        self._stop_reconciling()
        self._reconciling = asyncio.create_task(self._reconcile(self._rest), name="kalshi-feed reconcile")

    def _stop_reconciling(self) -> None:
        task, self._reconciling = self._reconciling, None
        if task is not None and not task.done():
            task.cancel()
            self._cancelled.add(task)
            task.add_done_callback(self._cancelled.discard)

    async def _reconcile(self, rest: KalshiRest) -> None:
        last = self._tracker.reconcile_from_ms  # the last fill when it became due: not past what the break lost
        since_ms = (self._started_ms if last is None else last) - self.reconcile_margin_ms
        reads = (("fills", lambda: rest.fills(min_ts_s=max(0, since_ms // 1000))),
                 ("resting orders", lambda: rest.orders(status="resting")),
                 ("positions", rest.positions))
        for what, read in reads:
            try:
                events = await read()
            except KalshiError as exc:
                _log().warning("reconciliation failed", read=what, error=str(exc))
                message = f"reconciliation after connecting could not read {what}: {exc}; the next connection retries"
                await self._push(self._clock_ns(), [VenueError(where=rest.source, message=codec.clip(message))])
                self._tracker.reconcile_failed(last)
                return
            if self._own is not None:  # this session's orders only (an event without a client order id stays)
                events = [e for e in events if getattr(e, "client_order_id", self._own).startswith(self._own)]
            await self._push(self._clock_ns(), self._tracker.reconciled(events))
        _log().info("reconciled", since_ms=since_ms)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_reason(ws: ClientConnection) -> str:
    code = ws.close_code
    reason = ws.close_reason
    return f"code {code}" + (f", {reason!r}" if reason else "")
