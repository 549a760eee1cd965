"""Diagnostics through structlog: readable on a terminal, JSON lines otherwise.

Call :func:`configure_logging` once in every process that logs — the CLI does it at start, and each
Ray worker must do it in its own process (configuration does not travel across processes).
Diagnostics go to stderr, so a command's results on stdout stay machine-readable.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from config import LoggingSettings

__all__ = ["configure_logging", "get_logger"]


class _Stderr:
    """Whatever ``sys.stderr`` is when a line is written (a test harness, or a program embedding tape, may swap it
    after logging was configured; a logger holding the old stream would write to a closed file)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(settings: LoggingSettings | None = None, stream: TextIO | None = None) -> None:
    """Set the level and the renderer for this process (idempotent; the last call wins). Lines go to ``stream``,
    by default to the process's stderr as it is at each write."""
    settings = settings or LoggingSettings()
    stream = stream or _Stderr()  # type: ignore[assignment]
    fmt = settings.format
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[settings.level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **context: object) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to a component name (and any context, e.g. ``session=...``)."""
    return structlog.get_logger(name).bind(component=name, **context)
