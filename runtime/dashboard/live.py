"""``tape paper --dashboard``: the dashboard of a session being traded, served by a process of its own.

The session's process (the *parent*) does three things and nothing more, none of which ever waits for the
dashboard:

* it binds the listening socket itself (so a port in use is an error at start, and the address is printed at
  once) and starts the dashboard's process (the *child*: :func:`_child`, in a fresh interpreter), handing it that
  socket and one end of a socket pair — the *control* socket;
* it writes one line down the control socket: what to serve (the session's log, as ``tape dashboard LOG`` serves
  it: a :class:`~.server.DashboardServer` whose hub follows the log another process writes), the log and
  diagnostics settings, and the token — which so never appears on the child's command line or in its environment
  (``TAPE_DASHBOARD_TOKEN`` is left out of it), in a diagnostic line or in the log;
* it reads the control socket from its event loop, without blocking: a ``halt`` line — sent by the child once the
  page's halt came with the right token and a confirmation, checked there — calls what :meth:`halt_with` named
  (``PaperSession.stop``: the operator's halt, logged as Ctrl-C's is); the end of the stream means the child is
  gone, which is said once, and the session trades on.

The child dies with the parent: the control socket reaches end-of-file when the parent exits, however it exits,
and the child then closes its server and exits (it runs ``NICE`` steps nicer than the session, so that on a
machine whose cores are all busy trading comes first; it ignores SIGINT — a Ctrl-C at the terminal is the session's to
handle — so it shows the session to its end). Its diagnostics go to the parent's stderr; its stdout is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec

from config import LoggingSettings, LogSettings

__all__ = ["LiveDashboard"]

_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding runtime/: the child imports this code
_LINE_MAX = 1 << 20
NICE = 10  # the child's niceness over the session's: when the cores are all busy, trading gets them first
_TOKEN_ENV = "TAPE_DASHBOARD_TOKEN"  # (runtime.dashboard.TOKEN_ENV): not passed on to the child


class _Config(msgspec.Struct, frozen=True):
    target: str
    host: str
    token: str | None
    log: LogSettings
    logging: LoggingSettings
    models: tuple[str, ...] = ()


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (``OSError`` if it cannot be: a port in use, an address not here)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class LiveDashboard:
    """The dashboard's process beside a session (module docstring). Call :meth:`start` from the session's event
    loop; ``halt_with(fn)`` names what the page's halt calls (in that loop); :meth:`close` stops the child."""

    def __init__(self, proc: subprocess.Popen, control: socket.socket, host: str, port: int) -> None:
        self.proc = proc
        self.host, self.port = host, port
        self.ready = False  # the child said it serves
        self.gone = False  # the child's control stream ended (it exited, or is exiting)
        self._control = control
        self._halt: Callable[[], None] | None = None
        self._buffer = b""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._up: asyncio.Event | None = None  # set once the child serves, or is gone

    @classmethod
    def start(cls, target: str, *, host: str, port: int, token: str | None, settings: LogSettings | None = None,
              logging: LoggingSettings | None = None, models: tuple[str, ...] = ()) -> LiveDashboard:
        """Bind ``host:port`` (raises ``OSError`` if it cannot) and start the child serving ``target`` on it;
        returns at once — the child takes the connections waiting on the socket when it is up."""
        listener = _listen(host, port)
        ours, theirs = socket.socketpair()
        try:
            config = _Config(target=target, host=host, token=token or None, log=settings or LogSettings(),
                             logging=logging or LoggingSettings(), models=tuple(models))
            env = {k: v for k, v in os.environ.items() if k != _TOKEN_ENV}  # the token goes down the socket only
            env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
            proc = subprocess.Popen([sys.executable, "-c", "import sys; from runtime.dashboard.live import _child; "
                                     "sys.exit(_child(int(sys.argv[1]), int(sys.argv[2])))", str(theirs.fileno()),
                                     str(listener.fileno())], pass_fds=(theirs.fileno(), listener.fileno()),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, close_fds=True)
            ours.sendall(msgspec.json.encode(config) + b"\n")  # a few hundred bytes: the socket's buffer takes them
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            bound = listener.getsockname()[1]
            listener.close()
        ours.setblocking(False)
        board = cls(proc, ours, host, bound)
        with contextlib.suppress(RuntimeError):  # no running loop: nobody reads the child (nor halts)
            board._loop = asyncio.get_running_loop()
            board._up = asyncio.Event()
            board._loop.add_reader(ours.fileno(), board._readable)
        return board

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait until the child serves (True), is gone, or ``timeout`` s passed (False). ``tape paper`` never
        waits: a page that connects early waits in the socket's queue, and the child catches up with the log."""
        if self._up is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._up.wait()
        return self.ready

    def halt_with(self, fn: Callable[[], None]) -> None:
        """The page's halt (token and confirmation checked by the child) calls ``fn`` in the session's loop."""
        self._halt = fn

    def _readable(self) -> None:
        """The control socket has something: whole lines from the child, or its end. Never blocks."""
        try:
            data = self._control.recv(65_536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._gone()
            return
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > _LINE_MAX:  # not the child's protocol: stop listening to it
            self._buffer = b""
        for line in lines:
            if line == b"ready":
                self.ready = True
                if self._up is not None:
                    self._up.set()
            elif line == b"halt" and self._halt is not None:
                from runtime.logger import get_logger

                get_logger("dashboard").warning("dashboard: the operator's halt, from the page: halting the session")
                self._halt()

    def _gone(self) -> None:
        if self._up is not None:
            self._up.set()
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._control.fileno())
        if not self.gone:
            self.gone = True
            from runtime.logger import get_logger

            get_logger("dashboard").warning("dashboard: its process ended; the session trades on without it",
                                            pid=self.proc.pid, exit_status=self.proc.poll())

    def close(self, timeout: float = 5.0) -> None:
        """Stop the child: end its control stream (it closes its server and exits), then wait ``timeout`` s at
        most before killing it."""
        self.gone = True
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._control.fileno())
        self._control.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the child ---------------------------------------------------------------------------------------
def _child(control_fd: int, listen_fd: int) -> int:
    from runtime.logger import configure_logging, get_logger

    from .server import DashboardServer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the session's: it halts, and we show that to the end
    with contextlib.suppress(OSError):  # on a busy machine the trading process comes first
        os.nice(NICE)
    control = socket.socket(fileno=control_fd)
    listener = socket.socket(fileno=listen_fd)
    line = b""
    while not line.endswith(b"\n"):  # the parent wrote it before we started
        chunk = control.recv(65_536)
        if not chunk:
            return 0
        line += chunk
    config = msgspec.json.decode(line, type=_Config)
    configure_logging(config.logging)
    log = get_logger("dashboard")

    def halt() -> None:
        with contextlib.suppress(OSError):  # the parent is gone: we are about to be too
            control.send(b"halt\n")

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        control.setblocking(False)
        listener.setblocking(False)
        server = DashboardServer(config.target, host=config.host, token=config.token, settings=config.log,
                                 halt=halt, models=config.models, single=True, sock=listener)
        await server.start()
        with contextlib.suppress(OSError):
            control.send(b"ready\n")
        ended = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, ended.set)

        async def parent() -> None:  # the control stream ends when the parent exits: so do we
            with contextlib.suppress(OSError):
                while await loop.sock_recv(control, 4096):
                    pass
            ended.set()

        watch = asyncio.create_task(parent())
        try:
            await ended.wait()
        finally:
            watch.cancel()
            await server.close()

    try:
        asyncio.run(serve())
    except Exception as exc:  # said once, to the parent's stderr; the session trades on
        log.error("dashboard: its process failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0
