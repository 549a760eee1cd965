"""The ``tape`` command line.

Every command reads settings from ``--config FILE`` (TOML) over the shipped defaults, with
``TAPE__SECTION__KEY`` environment overrides; diagnostics go to stderr, results to stdout.

Exit statuses are decided here, by the kind of what went wrong (:data:`EXIT_STATUSES`): a command raises
:class:`UsageError` when it was used wrongly, :class:`BadDataError` when the data it was given is bad, and
returns 1 itself when what it checked does not verify.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from config import ConfigError, Settings, load_settings

from ..log import EventLog, LogError, is_postgres
from ..logger import configure_logging

__all__ = ["BadDataError", "UsageError", "existing_directory", "log_target", "main", "new_directory", "open_log_target"]

EXIT_STATUSES = """\
exit status:
  0    done (and what was checked is sound)
  1    the data is bad or does not verify: a damaged log, a replay that diverges, a directory that
       holds no tape log, data a command cannot use; or a file could not be read or written
  2    the command was used wrongly: an unknown option, a bad value or setting, a path that does not
       exist, or a file where a directory is expected
  130  interrupted (Ctrl-C)
"""

EPILOG = """\
LOG is a run directory (e.g. runs/paper-20261122T185900Z-3fa9c1) or a PostgreSQL DSN naming a session
(postgresql://user@host:5432/db?session=ID). Settings: --config FILE over config/defaults.toml, and
TAPE__SECTION__KEY environment variables (TAPE__LOG__SYNC=interval); --config, --log-level and
--log-format go before or after the command (tape paper --config my.toml).

Start here:
  tape paper                     paper-trade 4 local markets for 60 s, then verify the run by replay
  tape demo                      write, verify and read back a small market-data session under ./runs
  tape log info runs/paper-20261122T185900Z-3fa9c1
                                 what a log holds
  tape synth --sessions 8 --log data/train && tape train --data data/train --out models/m
                                 learn policies with RLlib; tape eval / tape paper --policies models/m
  tape bench log --json          how fast the event log is on this machine

""" + EXIT_STATUSES


def _pin_hash_seed() -> None:
    """Re-execute this command (the console script's ``sys.argv``) under the hash seed training is repeatable under
    (:data:`policies.train.HASH_SEED`: RLlib orders agents by set iteration, which follows Python's string hashing)
    unless it already runs under it. The commands that train ask for it (their parsers set ``pinned_hash``); Ray's
    workers get it from this environment (a local instance) or the runtime environment
    (:func:`runtime.cli.cluster.connect`, on a cluster)."""
    from policies.train import HASH_SEED

    if os.environ.get("PYTHONHASHSEED") == HASH_SEED:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "runtime.cli", *sys.argv[1:]],
              {**os.environ, "PYTHONHASHSEED": HASH_SEED})


class UsageError(Exception):
    """A command-line mistake: printed with a hint, exit status 2."""


class BadDataError(Exception):
    """The data a command was given is bad or unusable (a log, a model, an export): printed, exit status 1."""


def existing_directory(path: str | Path, option: str = "") -> Path:
    """``path`` as a directory to read; a :class:`UsageError` naming it (and ``option``) if it does not exist or is
    not a directory."""
    path = Path(path)
    label = f"{option} " if option else ""
    if not path.exists():
        raise UsageError(f"{label}{path}: no such directory")
    if not path.is_dir():
        raise UsageError(f"{label}{path}: not a directory")
    return path


def new_directory(path: str | Path, option: str) -> Path:
    """``path`` as a directory a command creates or writes into (it and its parents are made if missing); a
    :class:`UsageError` naming the file in the way if it, or a parent, is not a directory."""
    path = Path(path)
    for at in (path, *path.parents):
        if at.exists():
            if not at.is_dir():
                raise UsageError(f"{option} {path}: " + ("not a directory" if at == path else f"{at} is not a directory"))
            break
    return path


def log_target(target: str) -> str:
    """A LOG argument: a ``postgresql://`` DSN as it is, or a run directory that must exist (a usage mistake
    otherwise, see :func:`existing_directory`)."""
    if not is_postgres(target):
        existing_directory(target)
    return target


async def open_log_target(target: str, settings: Settings) -> EventLog:
    """Open the session a LOG argument names, read-only. A LOG that names no session is a usage mistake: a path
    that does not exist or is a file (:func:`log_target`), a DSN without ``?session=ID``, or one naming a session
    the database does not hold."""
    from ..log import NotALogError, list_sessions, open_log, split_target

    try:
        return await open_log(log_target(target), settings=settings.log)
    except NotALogError as exc:
        if not is_postgres(target):
            raise
        dsn, session = split_target(target)
        if session is None:
            raise UsageError(str(exc)) from None
        if session not in {m.session_id for m in await list_sessions(dsn, settings.log)}:
            raise UsageError(f"?session={session}: no such session in the database (tape log list DSN names those "
                             "stored)") from None
        raise


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", metavar="FILE", default=default, help="TOML settings file over the shipped defaults")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=default,
                        help="diagnostics level (default: from settings, 'info')")
    parser.add_argument("--log-format", choices=["auto", "console", "json"], default=default,
                        help="diagnostics format on stderr (default 'auto': readable on a terminal, JSON otherwise)")


class _CommandParser(argparse.ArgumentParser):
    """The parser of every command and subcommand: it takes the global options too, so that they work after the
    command (``tape paper --config x.toml``) as well as before it. Their default is SUPPRESS, so that a value given
    before the command is kept unless one is given after it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _global_options(self, argparse.SUPPRESS)

    def add_subparsers(self, **kwargs):  # type: ignore[override]
        # The options of its subcommands pass through this parser first: an abbreviation of its own (--log for
        # --log-level) must not claim them.
        self.allow_abbrev = False
        return super().add_subparsers(**kwargs)


async def until_stopped() -> None:
    """Wait for Ctrl-C or SIGTERM (a server command's main loop); the handlers are removed again on return."""
    import contextlib
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def _parser() -> argparse.ArgumentParser:
    from . import bench, clustercmd, dashboard, demo, exchange, fidelity, logcmd, paper, record, replay, rl, synth
    from . import soak as soak_command
    from . import tune as tune_command

    parser = argparse.ArgumentParser(
        prog="tape",
        allow_abbrev=False,
        description="tape: an event-sourced trading runtime for prediction markets. Every input and "
        "decision is an event in one append-only log that replays exactly.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, None)
    parser.add_argument("--version", action="version", version=_versions(),
                        help="print tape's version (with its commit), Python's and Ray's, and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_CommandParser)
    demo.register(commands)
    logcmd.register(commands)
    bench.register(commands)
    synth.register(commands)
    exchange.register(commands)
    record.register(commands)
    paper.register(commands)
    replay.register(commands)
    rl.register(commands)
    tune_command.register(commands)
    dashboard.register(commands)
    soak_command.register(commands)
    fidelity.register(commands)
    clustercmd.register(commands)
    return parser


def _versions() -> str:
    """``tape --version``: what a cluster's nodes must agree on (the README's cluster runbook)."""
    import platform
    from importlib import metadata

    from ..version import code_version

    try:
        ray = metadata.version("ray")
    except metadata.PackageNotFoundError:
        ray = "not installed"
    return f"tape {code_version()} (Python {platform.python_version()}, Ray {ray})"


def _settings(args: argparse.Namespace) -> Settings:
    import msgspec

    settings = load_settings(args.config)
    logging = settings.logging
    if args.log_level:
        logging = msgspec.structs.replace(logging, level=args.log_level)
    if args.log_format:
        logging = msgspec.structs.replace(logging, format=args.log_format)
    return msgspec.structs.replace(settings, logging=logging)


def _in_the_way(path: str | Path) -> Path:
    """The file that stands where a directory of ``path`` is needed (``path`` itself when none is found)."""
    path = Path(path)
    return next((at for at in (path, *path.parents) if at.exists() and not at.is_dir()), path)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tape`` console script; returns the exit status (:data:`EXIT_STATUSES`)."""
    parser = _parser()
    args = parser.parse_args(argv)  # a malformed command line: argparse prints the usage and exits 2
    if argv is None and getattr(args, "pinned_hash", False):
        _pin_hash_seed()  # (in-process callers pass argv: their hashing is theirs, and train() warns)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"tape: settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging)
    handler: Callable[[argparse.Namespace, Settings], object] = args.handler
    say = f"tape {args.command}:"
    try:
        result = handler(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except UsageError as exc:
        print(f"{say} {exc}", file=sys.stderr)
        return 2
    except (BadDataError, LogError) as exc:
        print(f"{say} {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tape log cat … | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except NotADirectoryError as exc:  # a file given where a directory goes (a check a command missed): misuse
        print(f"{say} {_in_the_way(exc.filename or '')}: not a directory", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the command could not read or write: name it, no traceback
        where = "" if exc.filename is None else f"{exc.filename}: "
        print(f"{say} {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tape {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
