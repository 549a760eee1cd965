"""``tape dashboard``: serve a recorded session (or a list of them) to a browser, scrubbed in time and followed if live."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from config import Settings

from ..dashboard import TOKEN_ENV, ListenError, parse_listen
from ..log import NotALogError, is_postgres, list_sessions, split_target
from .logcmd import RUN

DEFAULT_LISTEN = "127.0.0.1:8700"


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "dashboard", help="watch a session in a browser: books, positions, orders, PnL, trades with their decisions",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a session's log to a browser page: the book ladder per market, positions and open orders, "
        "PnL and cash over time, the fills and orders with each order's decision trace (the roles' decisions, their "
        "model versions and the input that caused them), the venue's health, and a models page. A time scrubber "
        "rebuilds the state at any seq or event time (what `tape replay run --to SEQ` prints); a log still being "
        "written is followed as it grows. LOG may also be a directory of runs, or a database DSN naming no session (no ?session=ID), "
        "and the page then lists the sessions.\n\n"
        "Security: it listens on 127.0.0.1 unless --listen names another address, which needs a token (--token or "
        f"${TOKEN_ENV}; open the page as http://HOST:PORT/#token=TOKEN). The page is read-only; only a dashboard "
        "started by `tape paper --dashboard` can halt its session.",
        epilog="examples:\n"
        f"  tape dashboard {RUN}                          http://127.0.0.1:8700/\n"
        "  tape dashboard runs/                             the sessions under runs/, newest first\n"
        "  tape dashboard 'postgresql://postgres@127.0.0.1/test' --listen 8701\n"
        f"  {TOKEN_ENV}=… tape dashboard runs/ --listen 0.0.0.0:8700\n"
        f"  tape dashboard {RUN} --models models/kxsim   the models page shows that registry too\n"
        "exit status: 0 stopped (Ctrl-C), 1 the log cannot be read, 2 used wrongly (see tape --help)")
    p.add_argument("log", metavar="LOG", help="a run directory, a directory of runs, or postgresql://…[?session=ID]")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="[HOST:]PORT",
                   help=f"where to listen (default {DEFAULT_LISTEN}; port 0: any free port; an address other than "
                   "loopback needs --token)")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help=f"the token a page must present (at least 16 characters; default ${TOKEN_ENV})")
    p.add_argument("--models", action="append", default=[], metavar="DIR",
                   help="a model registry (tape train --out DIR) for the models page (repeatable); the registries "
                   "the session loaded models from are shown anyway")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..dashboard import DashboardServer
    from . import UsageError

    token = args.token or os.environ.get(TOKEN_ENV) or None
    try:
        host, port = parse_listen(args.listen, token, option="--listen")
    except ListenError as exc:
        raise UsageError(str(exc)) from None
    await _check_target(args.log, settings)
    server = DashboardServer(args.log, host=host, port=port, token=token, settings=settings.log,
                             models=tuple(args.models))
    try:
        await server.start()
    except OSError as exc:
        raise UsageError(f"--listen {args.listen}: {exc.strerror or exc}") from None
    print(f"dashboard: {server.url} serving {args.log}" + (" (the page needs the token: #token=… after the address)"
                                                          if token else "") + "; Ctrl-C stops it", flush=True)
    from . import until_stopped

    try:
        await until_stopped()
    finally:
        await server.close()
    print("dashboard: stopped")
    return 0


async def _check_target(target: str, settings: Settings) -> None:
    """LOG names a session or a list of them; else a usage mistake (exit 2), or bad data (exit 1) for a directory
    that holds no tape log."""
    from . import BadDataError, existing_directory, open_log_target

    if is_postgres(target):
        dsn, session = split_target(target)
        if session is None:
            await list_sessions(dsn, settings.log)  # the database answers (a wrong DSN is named now)
            return
        log = await open_log_target(target, settings)
        await log.close()
        return
    path = existing_directory(target)
    from ..log.files import is_file_log

    if is_file_log(path):
        return
    if not any(is_file_log(p) for p in Path(path).iterdir() if p.is_dir()):
        raise BadDataError(str(NotALogError(f"{path}: not a tape log, nor a directory of runs (no session.json in it "
                                            "or in any directory under it)")))
