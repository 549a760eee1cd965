"""Progress while long work runs: on a terminal, one status line on stderr, rewritten in place (at most four
times a second). Off a terminal nothing is rewritten and no plain text is mixed into the diagnostics: every
``every_s`` seconds (never, when ``every_s`` is None) the status is a ``progress`` record of the structlog
diagnostics on stderr (JSON there) — or, for a command whose stdout is all for people (``tape paper``), a
line of its own on stdout — so logs of unattended runs still show that work goes on."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..logger import get_logger

__all__ = ["Progress", "Status"]

_LIVE_INTERVAL_S = 0.25


class Status:
    """A throttled status line (see the module docstring); :meth:`line` prints a line that stays. ``human`` is
    the stream off-terminal status lines go to instead of the diagnostics (``sys.stdout`` for ``tape paper``)."""

    def __init__(self, every_s: float | None = None, *, human: TextIO | None = None) -> None:
        self.live = sys.stderr.isatty()
        self.every_s = every_s
        self.human = human
        self.started = time.perf_counter()
        self._shown = 0.0 if self.live else self.started
        self._width = 0

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def due(self) -> bool:
        """True when a status line would be shown now (build the text only then)."""
        interval = _LIVE_INTERVAL_S if self.live else self.every_s
        return interval is not None and time.perf_counter() - self._shown >= interval

    def show(self, text: str) -> None:
        """Show ``text`` as the status if one is due (see :meth:`due`)."""
        if not self.due():
            return
        self._shown = time.perf_counter()
        if self.live:
            pad = " " * max(0, self._width - len(text))
            self._width = len(text)
            print(f"\r{text}{pad}", end="", file=sys.stderr, flush=True)
        else:
            self._off_terminal(text)

    def line(self, text: str) -> None:
        """A line that stays (the live status, if any, is replaced by it)."""
        if not self.live:
            self._off_terminal(text)
            return
        self.clear()
        print(text, file=sys.stderr, flush=True)

    def clear(self) -> None:
        if self.live and self._width:
            print("\r" + " " * self._width + "\r", end="", file=sys.stderr, flush=True)
            self._width = 0

    def _off_terminal(self, text: str) -> None:
        if self.human is not None:
            print(text, file=self.human, flush=True)
        else:
            get_logger("progress").info(text.strip(), elapsed_s=round(self.elapsed(), 1))


class Progress(Status):
    """``label: done/total records (rate/s)`` while a log is read: call it with the count done so far."""

    def __init__(self, label: str, total: int | None = None) -> None:
        super().__init__()
        self.label, self.total = label, total

    def __call__(self, done: int) -> None:
        if self.due():
            of = f"/{self.total:,}" if self.total else ""
            self.show(f"{self.label}: {done:,}{of} records ({done / max(self.elapsed(), 1e-9):,.0f}/s)")

    def done(self) -> None:
        self.clear()
