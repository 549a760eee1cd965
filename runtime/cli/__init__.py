"""The ``tape`` command line.

Every command reads settings from ``--config FILE`` (TOML) over the shipped defaults, with
``TAPE__SECTION__KEY`` environment overrides; diagnostics go to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from config import ConfigError, Settings, load_settings

from ..log import LogError
from ..logger import configure_logging

__all__ = ["main"]

EPILOG = """\
LOG is a run directory (e.g. runs/20261122T185900Z-3fa9c1) or a PostgreSQL DSN naming a session
(postgresql://user@host:5432/db?session=ID). Settings: --config FILE over config/defaults.toml, and
TAPE__SECTION__KEY environment variables (TAPE__LOG__SYNC=interval).

Start here:
  tape paper                     paper-trade 4 local markets for 60 s, then verify the run by replay
  tape demo                      write, verify and read back a small session under ./runs
  tape log info runs/<id>        what a log holds
  tape synth --sessions 8 --log data/train && tape train --data data/train --out models/m
                                 learn policies with RLlib; tape eval / tape paper --policies models/m
  tape bench log --json          how fast the event log is on this machine
"""


class UsageError(Exception):
    """A command-line mistake: printed with a hint, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    from . import bench, demo, exchange, logcmd, paper, record, replay, rl, synth

    parser = argparse.ArgumentParser(
        prog="tape",
        allow_abbrev=False,
        description="tape: an event-sourced trading runtime for prediction markets. Every input and "
        "decision is an event in one append-only log that replays exactly.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="TOML settings file over the shipped defaults")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="diagnostics level (default: from settings, 'info')")
    parser.add_argument("--log-format", choices=["auto", "console", "json"],
                        help="diagnostics format on stderr (default 'auto': readable on a terminal, JSON otherwise)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo.register(commands)
    logcmd.register(commands)
    bench.register(commands)
    synth.register(commands)
    exchange.register(commands)
    record.register(commands)
    paper.register(commands)
    replay.register(commands)
    rl.register(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    import msgspec

    settings = load_settings(args.config)
    logging = settings.logging
    if args.log_level:
        logging = msgspec.structs.replace(logging, level=args.log_level)
    if args.log_format:
        logging = msgspec.structs.replace(logging, format=args.log_format)
    return msgspec.structs.replace(settings, logging=logging)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tape`` console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"tape: settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging)
    handler: Callable[[argparse.Namespace, Settings], object] = args.handler
    try:
        result = handler(args, settings)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except UsageError as exc:
        print(f"tape {args.command}: {exc}", file=sys.stderr)
        return 2
    except LogError as exc:
        print(f"tape {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tape log cat … | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except OSError as exc:  # a file the command could not read or write: name it, no traceback
        where = "" if exc.filename is None else f"{exc.filename}: "
        print(f"tape {args.command}: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tape {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
