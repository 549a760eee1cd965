"""Identifiers made at the edge of the system (never inside a state machine)."""

from __future__ import annotations

import os
import time


def new_session_id(prefix: str = "") -> str:
    """A sortable, unique session id: ``[prefix-]20261122T185900Z-3fa9c1`` (UTC, then 24 random bits)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tail = os.urandom(3).hex()
    return f"{prefix}-{stamp}-{tail}" if prefix else f"{stamp}-{tail}"
