"""Diagnostics go to the process's stderr as it is when a line is written, not as it was when logging was set up."""

from __future__ import annotations

import io
import json
import sys

from config import LoggingSettings
from runtime.logger import configure_logging, get_logger


def test_a_swapped_stderr_gets_the_lines_and_a_closed_old_one_breaks_nothing(monkeypatch):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging(LoggingSettings(level="info", format="auto"))
    get_logger("t").info("one")
    first.close()  # e.g. a test harness's capture, closed once its test ended
    monkeypatch.setattr(sys, "stderr", second)
    get_logger("t").info("two")
    (record,) = [json.loads(line) for line in second.getvalue().splitlines()]
    assert record["event"] == "two" and record["component"] == "t" and record["level"] == "info"
