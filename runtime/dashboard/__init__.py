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
* :mod:`.models` — the models page's data (registry versions, training curves, evaluations, the session's loads);
* :mod:`.live` — :class:`LiveDashboard`: ``tape paper --dashboard``'s server in a process of its own, following
  the session's log as ``tape dashboard LOG`` does (so it never shares the trading loop's interpreter), the page's
  halt passed back to the session over a socket.
"""

from __future__ import annotations

from .fold import SessionView
from .live import LiveDashboard
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
