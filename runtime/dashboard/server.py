"""The dashboard's web server: the page, its static files, and one WebSocket carrying the three channels.

**Routes.** ``GET /`` the page; ``GET /static/<file>`` its script and style (files of this package) and
``plotly.min.js`` (the one the installed ``plotly`` package ships: no CDN, no copy); ``GET /ws`` the stream.
No data travels any other way: the HTTP routes serve files only.

**The WebSocket protocol** (JSON text frames). The client speaks first::

    {"op": "hello", "token": "…", "session": "ID"}   # token: when the server has one; session: in a session list
    {"op": "seek", "seq": N} | {"op": "seek", "ts_ns": T} | {"op": "seek", "ts_ms": T} | {"op": "live"}
    {"op": "resync"}                                  # a delta's n was not the one expected: send snapshots again
    {"op": "sessions"} | {"op": "models"}            # the session list; the models page's data
    {"op": "halt", "token": "…", "confirm": "halt"}   # cancel every working order, decide no more (live only)

and the server sends ``hello`` (what it serves), then per channel a ``snapshot`` and ``delta`` messages
(``{"type", "channel", "n", "through", "ts_ns", "data"}``; ``n`` counts a channel's deltas: a snapshot carries
the ``n`` of the last delta it includes), ``head`` (how far the log goes, its status, any damage), and replies:
``sessions``, ``models``, ``halted``, ``error`` (``{"message"}``: the connection stays open).

**Security** (the operator's session is never at the mercy of a page): the server listens on 127.0.0.1
unless told otherwise, and any other address needs a token (the command refuses to start without one). On
loopback the ``Host`` header must name loopback (no DNS rebinding). A WebSocket whose ``Origin`` is not the
page's own is refused at the upgrade (403); with a token, a ``hello`` without it is answered with an error and
the connection closed (4401). Everything is read-only except ``halt``, which needs the token (a dashboard
started without one cannot halt) and ``"confirm": "halt"``. The token is compared in constant time and never
logged, echoed or written into the log; no access log is kept. A client message over 4 KiB, not JSON, or not
one of the operations above is answered with an error naming it (the connection stays open; a frame over 64 KiB
closes it, 1009); after 50 bad messages the connection is closed (4400).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.util
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from config import LogSettings
from runtime.log import EventLog, is_postgres, list_sessions, open_log, split_target
from runtime.log.files import is_file_log
from runtime.logger import get_logger

from .hub import Client, Hub
from .models import models_page

__all__ = ["DashboardServer", "is_loopback", "plotly_js"]

STATIC = Path(__file__).parent / "static"
MESSAGE_MAX = 4_096  # a client message larger than this is refused with an error
FRAME_MAX = 65_536  # a WebSocket frame larger than this closes the connection (aiohttp: 1009)
BAD_MAX = 50  # bad messages before a connection is closed
SEND_TIMEOUT_S = 30.0  # a send that cannot complete for this long: the client is gone or never reads
HUBS_KEPT = 8  # sessions of a session list folded at once (the least recently opened one is closed first)
_STATIC_FILES = {"app.js": "application/javascript", "app.css": "text/css"}


def plotly_js() -> Path | None:
    """The ``plotly.min.js`` the installed ``plotly`` package ships (found without importing plotly), or None."""
    spec = importlib.util.find_spec("plotly")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DashboardServer:
    """Serve ``target`` — one session's log (a run directory, a DSN with ``?session=ID``) or many (a directory of
    runs, a DSN without a session: a session list) — on ``host:port`` (see the module docstring).

    ``halt`` (live sessions only) is what the ``halt`` operation calls, in the server's event loop; ``models``
    are registry directories for the models page (beside those the session's ``ModelLoaded`` events name).
    ``sock``: a socket already listening on ``host:port`` to serve on (``tape paper --dashboard`` binds it in the
    session's process, so a port in use is named there, and hands it to the dashboard's own process)."""

    def __init__(self, target: str, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 settings: LogSettings | None = None, halt: Callable[[], None] | None = None,
                 models: tuple[str, ...] = (), single: bool | None = None, sock: socket.socket | None = None) -> None:
        if not is_loopback(host) and not token:
            raise ValueError(f"a dashboard on {host} (not loopback) needs a token")
        self.target, self.host, self.port = target, host, port
        self.token = token or None
        self.settings = settings or LogSettings()
        self.halt = halt
        self.models = models
        self.single = _names_one_session(target) if single is None else single
        self.sock = sock
        self.hubs: dict[str | None, Hub] = {}
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._log = get_logger("dashboard")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port) if self.sock is None else web.SockSite(self._runner,
                                                                                                     self.sock)
        await site.start()
        self.port = self._runner.addresses[0][1]
        if self.single:
            await self._hub(None)

    async def close(self) -> None:
        for ws in list(self._sockets):  # every page is told, so none holds the shutdown up
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY, message=b"the dashboard stopped"), 1.0)
        for hub in self.hubs.values():
            await hub.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- HTTP -------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if is_loopback(self.host) and not _loopback_host(request.host):
            return web.Response(status=403, text=f"refused: Host {request.host!r} is not this loopback address\n")
        response = await handler(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        return response

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store",
                                                                 "Content-Type": "text/html; charset=utf-8"})

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "plotly.min.js":
            path = plotly_js()
            if path is None:
                return web.Response(status=404, text="plotly is not installed here (pip install plotly): no charts\n")
            return web.FileResponse(path, headers={"Content-Type": "application/javascript"})
        if name not in _STATIC_FILES:
            raise web.HTTPNotFound(text=f"no such file: {name}\n")
        return web.FileResponse(STATIC / name, headers={"Content-Type": _STATIC_FILES[name], "Cache-Control": "no-store"})

    # -- the WebSocket ----------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            self._log.warning("dashboard: a WebSocket from a foreign origin was refused", origin=origin[:200])
            return web.Response(status=403, text="refused: the WebSocket's Origin is not this page's\n")
        ws = web.WebSocketResponse(max_msg_size=FRAME_MAX, heartbeat=20.0)
        await ws.prepare(request)
        session = _Session(self, ws)
        self._sockets.add(ws)
        try:
            await session.run()
        finally:
            self._sockets.discard(ws)
            await session.leave()
        return ws

    async def _hub(self, session_id: str | None) -> Hub:
        hub = self.hubs.get(session_id)
        if hub is None:
            if len(self.hubs) >= HUBS_KEPT:  # the oldest opened session of a list goes first
                old = next(k for k in self.hubs if not self.hubs[k].clients) if any(
                    not h.clients for h in self.hubs.values()) else next(iter(self.hubs))
                await self.hubs.pop(old).close()
            hub = self.hubs[session_id] = Hub(lambda: self._open(session_id), halt=self.halt)
            await hub.start()
        return hub

    async def _open(self, session_id: str | None) -> EventLog:
        if session_id is None:
            return await open_log(self.target, settings=self.settings)
        if is_postgres(self.target):
            return await open_log(split_target(self.target)[0], session=session_id, settings=self.settings)
        return await open_log(Path(self.target) / session_id, settings=self.settings)

    async def sessions(self) -> list[dict[str, Any]]:
        """The sessions of the list (newest first), or the one served."""
        target = split_target(self.target)[0] if is_postgres(self.target) else self.target
        damaged: list[tuple[Path, str]] = []
        metas = await list_sessions(target, self.settings, damaged=damaged)
        out = [{"session_id": m.session_id, "status": m.status, "mode": m.mode, "venue": m.venue,
                "created_ns": m.created_ns, "last_seq": m.last_seq, "end_reason": m.end_reason} for m in metas]
        out.reverse()
        out += [{"session_id": path.name, "status": "unreadable", "error": error} for path, error in damaged]
        return out

    def token_ok(self, given: object) -> bool:
        return self.token is not None and isinstance(given, str) and hmac.compare_digest(
            given.encode(), self.token.encode())


class _Session:
    """One WebSocket connection: its hello, its requests, and its pump from the hub."""

    def __init__(self, server: DashboardServer, ws: web.WebSocketResponse) -> None:
        self.server, self.ws = server, ws
        self.hub: Hub | None = None
        self.client = Client(self._send)
        self.pump: asyncio.Task | None = None
        self.bad = 0
        self.hello = False

    async def _send(self, message: str) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.ws.send_str(message)
        except TimeoutError:
            get_logger("dashboard").warning("dashboard: a client that does not read was disconnected")
            await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow: nothing read for 30 s")
            raise

    async def reply(self, kind: str, **body: Any) -> None:
        await self.ws.send_str(json.dumps({"type": kind, **body}))

    async def error(self, message: str) -> None:
        await self.reply("error", message=message)

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self.handle(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self.refuse("binary frames are not part of the protocol: send JSON text")
            elif msg.type == WSMsgType.ERROR:
                break
            if self.ws.closed:
                break

    async def refuse(self, message: str) -> None:
        self.bad += 1
        await self.error(message)
        if self.bad >= BAD_MAX:
            await self.ws.close(code=4400, message=b"too many bad messages")

    async def handle(self, text: str) -> None:
        if len(text) > MESSAGE_MAX:
            await self.refuse(f"a message of {len(text):,} bytes was refused: the limit is {MESSAGE_MAX:,} bytes")
            return
        try:
            message = json.loads(text)
        except ValueError as exc:
            await self.refuse(f"not JSON ({exc}): every message is a JSON object such as {{\"op\": \"hello\"}}")
            return
        op = message.get("op") if isinstance(message, dict) else None
        if not isinstance(op, str):
            await self.refuse("a message is a JSON object with an \"op\": hello, seek, live, resync, sessions, "
                              "models or halt")
            return
        if not self.hello and op != "hello":
            await self.refuse(f"{op!r} before hello: say hello first")
            return
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            await self.refuse(f"unknown op {op[:40]!r}: hello, seek, live, resync, sessions, models or halt")
            return
        await handler(message)

    async def op_hello(self, message: dict[str, Any]) -> None:
        server = self.server
        if server.token is not None and not server.token_ok(message.get("token")):
            await self.error("wrong or missing token: this dashboard needs its token (the page takes it as "
                             "#token=… in its address)")
            await self.ws.close(code=4401, message=b"wrong or missing token")
            return
        session = message.get("session")
        if self.hello:
            await self.refuse("hello was already said")
            return
        if server.single:
            session = None
        elif session is not None and (not isinstance(session, str)
                                      or session not in {s["session_id"] for s in await server.sessions()}):
            await self.error(f"unknown session {str(session)[:80]!r}: pick one from the list")
            session = None
        self.hello = True
        await self.reply("hello", single=server.single, session=session, token_required=server.token is not None,
                         halt=server.halt is not None and server.token is not None)
        if server.single or session is not None:
            await self.watch(await server._hub(session))
        else:
            await self.op_sessions(message)

    async def watch(self, hub: Hub) -> None:
        await hub.ready.wait()
        self.hub = hub
        hub.join(self.client)
        self.pump = asyncio.create_task(self._pump(), name="dashboard-pump")

    async def _pump(self) -> None:
        assert self.hub is not None
        with contextlib.suppress(ConnectionError, TimeoutError, RuntimeError):  # gone: leave() tidies up
            await self.hub.pump(self.client)

    async def leave(self) -> None:
        if self.hub is not None:
            self.hub.leave(self.client)
        if self.pump is not None:
            self.pump.cancel()
            await asyncio.gather(self.pump, return_exceptions=True)

    def _watching(self) -> Hub | None:
        return self.hub

    async def op_seek(self, message: dict[str, Any]) -> None:
        hub = self._watching()
        if hub is None:
            await self.refuse("seek: no session is open")
            return
        seq, ts, ms = message.get("seq"), message.get("ts_ns"), message.get("ts_ms")
        if type(seq) is int and seq >= 1:
            pass
        elif type(ts) is int and ts >= 0:
            seq = hub.seq_at(ts)
        elif type(ms) is int and ms >= 0:  # a browser's milliseconds: the last record within that millisecond
            seq = hub.seq_at(ms * 1_000_000 + 999_999)
        else:
            await self.refuse("seek takes {\"seq\": N} (a whole number >= 1), {\"ts_ns\": T} or {\"ts_ms\": T} "
                              "(event time, Unix ns or ms)")
            return
        self.client.paused = await hub.view_at(seq)
        self.client.behind = True
        self.client.queue.clear()
        self.client.wake.set()

    async def op_live(self, message: dict[str, Any]) -> None:
        if self.hub is None:
            await self.refuse("live: no session is open")
            return
        self.client.paused = None
        self.client.behind = True
        self.client.wake.set()

    async def op_resync(self, message: dict[str, Any]) -> None:
        if self.hub is not None:
            self.client.behind = True
            self.client.wake.set()

    async def op_sessions(self, message: dict[str, Any]) -> None:
        if self.server.single:
            hub = self.hub
            await self.reply("sessions", sessions=[] if hub is None else [{**hub.meta}], single=True)
            return
        try:
            sessions = await self.server.sessions()
        except Exception as exc:
            await self.error(f"the sessions cannot be listed: {exc}")
            return
        await self.reply("sessions", sessions=sessions, single=False)

    async def op_models(self, message: dict[str, Any]) -> None:
        loads = [] if self.hub is None else list(self.hub.view.models)
        page = await asyncio.to_thread(models_page, self.server.models, loads)
        await self.reply("models", **page)

    async def op_halt(self, message: dict[str, Any]) -> None:
        server = self.server
        if server.halt is None:
            await self.error("halt refused: this dashboard watches a log; only the process running the session "
                             "(tape paper --dashboard) can halt it")
            return
        if server.token is None:
            await self.error("halt refused: this dashboard was started without a token (start it with --token, or "
                             "TAPE_DASHBOARD_TOKEN, to allow halting)")
            return
        if not server.token_ok(message.get("token")):
            await self.error("halt refused: wrong or missing token")
            return
        if message.get("confirm") != "halt":
            await self.error("halt refused: not confirmed (send \"confirm\": \"halt\")")
            return
        get_logger("dashboard").warning("dashboard: halt requested by an operator")
        server.halt()
        await self.reply("halted", message="halt requested: every working order is canceled, nothing more is "
                         "decided, and the session ends")


def _names_one_session(target: str) -> bool:
    """Whether ``target`` names one session (a run directory, a DSN with ``?session=``) rather than a list."""
    if is_postgres(target):
        return split_target(target)[1] is not None
    return is_file_log(Path(target))


def _loopback_host(host_header: str) -> bool:
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return is_loopback(host.strip("[]"))
