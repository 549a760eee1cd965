"""The dashboard: a browser view of any session, live or recorded, fed by one more fold of its log.

The dashboard reads the session's log — never its actors — so a session being traded now (``tape paper
--dashboard [HOST:]PORT``) and one recorded months ago (``tape dashboard LOG``) are served by the same code:

* :mod:`.fold` — :class:`SessionView`, the session's state as of a seq: its own machines (books, cash pool,
  positions, order lifecycle) folded as :class:`runtime.paper.Watch` folds them, plus trades, fills, each order's
  fate and decision trace, venue health, models, PnL and cash over time;
* :mod:`.hub` — one watched session: the head fold following the log, deltas ten times a second per channel
  (``market``, ``trader``, ``trades``) to every client through a bounded queue (a client that falls behind gets
  snapshots instead; none is ever waited for), and scrubbing to any seq or event time;
* :mod:`.server` — :class:`DashboardServer`: the page, its files and plotly's script, and the WebSocket, with the
  security rules (loopback by default, a token elsewhere, same-origin WebSockets, read-only but ``halt``);
* :mod:`.models` — the models page's data (registry versions, training curves, evaluations, the session's loads).

:class:`LiveDashboard` runs a server on its own thread and event loop beside a session in this process, so
nothing the dashboard does is ever awaited by the trading loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from config import LogSettings

from .fold import SessionView
from .server import DashboardServer, is_loopback

__all__ = ["DashboardServer", "ListenError", "LiveDashboard", "SessionView", "is_loopback", "parse_listen"]

TOKEN_ENV = "TAPE_DASHBOARD_TOKEN"
TOKEN_MIN = 16


class ListenError(ValueError):
    """An address to listen on that cannot be used (malformed, or not loopback without a token)."""


def parse_listen(text: str, token: str | None, *, option: str, token_option: str = "--token") -> tuple[str, int]:
    """``[HOST:]PORT`` (``PORT``, ``0.0.0.0:8700``, ``[::1]:8700``) as ``(host, port)``, host 127.0.0.1 by
    default; an address other than loopback needs ``token`` (of at least 16 characters)."""
    host, sep, port_text = text.rpartition(":")
    host = (host.strip("[]") if sep else "") or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65_535:
        raise ListenError(f"{option} {text}: expected [HOST:]PORT with a port from 0 to 65535 (0: any free port)")
    if token is not None and len(token) < TOKEN_MIN:
        raise ListenError(f"the dashboard token is too short: use at least {TOKEN_MIN} characters")
    if not is_loopback(host) and not token:
        raise ListenError(f"{option} {text}: a dashboard on an address other than loopback needs a token: pass "
                          f"{token_option} TOKEN or set {TOKEN_ENV} (or listen on 127.0.0.1)")
    return host, port


class LiveDashboard:
    """A :class:`DashboardServer` on its own thread and event loop (module docstring). ``halt_with(fn)`` names what
    the page's ``halt`` calls: ``fn`` runs in the event loop that called ``halt_with`` (the session's)."""

    def __init__(self, target: str, *, host: str, port: int, token: str | None, settings: LogSettings | None = None,
                 models: tuple[str, ...] = ()) -> None:
        self._halt: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None
        self.server = DashboardServer(target, host=host, port=port, token=token, settings=settings,
                                      halt=self._call_halt, models=models, single=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="tape-dashboard", daemon=True)

    @classmethod
    def start(cls, target: str, **kwargs) -> LiveDashboard:
        """Start serving ``target``; returns once listening (raises what prevented it, e.g. a port in use)."""
        board = cls(target, **kwargs)
        board._thread.start()
        board._started.wait()
        if board._error is not None:
            raise board._error
        return board

    @property
    def url(self) -> str:
        return self.server.url

    def halt_with(self, fn: Callable[[], None]) -> None:
        self._halt = (asyncio.get_running_loop(), fn)

    def _call_halt(self) -> None:
        if self._halt is not None:
            loop, fn = self._halt
            loop.call_soon_threadsafe(fn)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.close()

    def close(self) -> None:
        """Stop serving and wait for the thread (a few seconds at most)."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=5.0)
