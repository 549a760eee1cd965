"""Sessions for the dashboard's tests: a real paper session on the local exchange, logged to a run directory."""

from __future__ import annotations

import time
from pathlib import Path

from config.synth import FlowConfig
from policies.registry import PROVIDER
from runtime.ids import new_session_id
from runtime.log import SessionMeta, create_log
from runtime.paper import PaperSession
from runtime.topology import SessionSpec
from runtime.venues.kalshi.ws import KalshiFeed
from runtime.venues.sim.exchange import Exchange
from runtime.venues.sim.server import ExchangeServer
from runtime.venues.sim.session import EPOCH_NS

CHANNELS = ("orderbook_delta", "trade", "market_lifecycle_v2")
MARKETS = ("KXSIM-000", "KXSIM-001", "KXSIM-002")
TIGHT = FlowConfig(tight_share=1.0)  # every market quoted tight and busy: the rule baselines trade them


async def paper_session(root: Path, seconds: float = 6.0, *, on_log=None, on_session=None):
    """A paper session on 3 tight markets of an in-process exchange at 200x, in process; returns (run dir, summary).
    ``on_log(run_dir)`` is called once the log exists, ``on_session(session)`` once the session is built."""
    exchange = Exchange(3, 5, config=TIGHT, start_ns=EPOCH_NS, session_s=3_600.0)
    spec = SessionSpec(markets=MARKETS, starting_cash=1_000_000_000, seed=5, latency_ms=20)
    session_id = new_session_id("paper")
    meta = SessionMeta(session_id=session_id, mode="paper", venue="sim", seed=5, created_ns=time.time_ns())
    log = await create_log(root, meta)
    if on_log is not None:
        await on_log(root / session_id)
    async with ExchangeServer(exchange, speed=200.0) as server, log, \
            KalshiFeed(server.ws_url, MARKETS, channels=CHANNELS) as feed:
        session = PaperSession(log, spec, feed, session_id=session_id, decide_every_s=0.2, policies=PROVIDER)
        if on_session is not None:
            on_session(session)
        summary = await session.run(seconds)
        await log.mark("ended", "test")
    return root / session_id, summary
