"""One fidelity session: a policy's live orders on the local exchange, the paper matcher shadowing them.

:func:`run_session` serves an :class:`~runtime.venues.sim.exchange.Exchange` of ``markets`` markets in this process
(every market tight and busy, as the soak's, so the policy trades in each), and runs what ``tape paper --live-orders``
runs on it — the topology's machines, the order gateway sending real orders, fills on the feed's private channels —
with the spec's ``shadow`` on and the venue's queue position of each resting order polled every
``queue_every_s`` (``QueuePositionReported``). The paper settings the shadow runs with are the spec's
(:class:`~config.profiles.PaperProfile`, named by ``profile_name``); :mod:`.calibrate` can re-fold the log under
others.

The venue must match our orders for real: :func:`check_venue` refuses anything else with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from config.profiles import SHIPPED, PaperProfile

from ..log import SessionMeta, create_log
from ..paper import PaperSession, Summary, Watch
from ..topology import PolicyProvider, SessionSpec
from ..units import MONEY_SCALE

__all__ = ["FidelityError", "SessionRun", "check_venue", "run_session", "spec_profile"]

OWNER = "trust"  # the account the local exchange gives unsigned requests


class FidelityError(ValueError):
    """A fidelity run that cannot measure anything: the message says why and what to do instead."""


class SessionRun(msgspec.Struct, kw_only=True):
    """What one fidelity session was and where its log is."""

    log: str
    session_id: str
    seed: int
    markets: int
    seconds: float
    speed: float
    policy: str
    profile: str
    summary: Summary


def spec_profile(spec: SessionSpec) -> PaperProfile:
    """The paper settings a session's spec holds, as a profile."""
    return PaperProfile(latency_ms=spec.latency_ms, queue_model=spec.queue_model, cancel_ahead_pct=spec.cancel_ahead_pct,
                        pacing=spec.pacing)


def check_venue(venue: str, live_orders: bool = True) -> None:
    """Refuse a venue that does not match our orders for real (``tape fidelity --venue``)."""
    if venue == "sim" and live_orders:
        return
    if venue == "recorded":
        raise FidelityError("a recorded session cannot measure fill fidelity: nobody matched its orders for real. "
                            "Run fidelity sessions on the local exchange (--venue sim), which matches our live orders "
                            "by true price-time priority")
    if venue in ("kalshi", "kalshi-demo") and not live_orders:
        raise FidelityError(f"--venue {venue} without live orders has no true fills to compare with: the paper "
                            "matcher would be measured against itself")
    raise FidelityError(f"--venue {venue}: fidelity sessions run on the local exchange (--venue sim) only — it is the "
                        "venue whose true queue is known and whose orders cost nothing; a real Kalshi account would "
                        "trade real money for the measurement")


async def run_session(*, seed: int, markets: int, seconds: float, policies: PolicyProvider, policy: str = "rule",
                      speed: float = 5.0, profile: PaperProfile = SHIPPED["default"], profile_name: str = "default",
                      target: str = "runs", cash: float = 10_000.0,
                      queue_every_s: float = 1.0, models=None,
                      on_status: Callable[[Watch, float], None] | None = None) -> SessionRun:
    """Run one fidelity session (module docstring); its log goes under ``target``."""
    from ..cli.paper import LIVE_CHANNELS
    from ..ids import new_session_id
    from ..sequencer import InProcessRunner
    from ..topology import topology
    from ..venues.kalshi.http import KalshiRest
    from ..venues.kalshi.ws import KalshiFeed
    from ..venues.sim.exchange import Exchange
    from ..venues.sim.flow import FlowConfig
    from ..venues.sim.server import ExchangeServer

    session_id = new_session_id("fidelity")
    prefix = session_id.rsplit("-", 1)[-1]
    exchange = Exchange(markets, seed, config=FlowConfig(tight_share=1.0),
                        session_s=max(3_600.0, seconds * speed * 2), start_ns=time.time_ns())
    spec = SessionSpec(markets=exchange.tickers, starting_cash=round(cash * MONEY_SCALE), seed=seed, prefix=prefix,
                       execution="venue", shadow=True, policy=policy, latency_ms=profile.latency_ms,
                       queue_model=profile.queue_model, cancel_ahead_pct=profile.cancel_ahead_pct,
                       pacing=profile.pacing, profile=profile_name)
    meta = SessionMeta(session_id=session_id, mode="demo", venue="sim", seed=seed, created_ns=time.time_ns())
    async with ExchangeServer(exchange, speed=speed) as server:
        log = await create_log(target, meta)
        async with log, KalshiRest(server.rest_url) as rest, \
                KalshiFeed(server.ws_url, exchange.tickers, channels=LIVE_CHANNELS, rest=rest, info=rest,
                           own=prefix + "-") as feed:
            session = PaperSession(log, spec, feed, session_id=session_id, venue="sim",
                                   runner=InProcessRunner(topology(spec, policies)), rest=rest, models=models,
                                   queue_every_s=queue_every_s, drain_s=10.0)
            summary = await session.run(seconds, on_status)
            await log.mark("ended", f"fidelity {summary.reason}")
    return SessionRun(log=f"{target.rstrip('/')}/{session_id}", session_id=session_id, seed=seed, markets=markets,
                      seconds=seconds, speed=speed, policy=policy, profile=profile_name, summary=summary)
