"""The local exchange: a matching engine per market, the synthetic participants that trade on it, whole
seeded sessions of their market data as tape events, and the exchange that clients trade on.

* :class:`MatchingEngine` — one market's price-time-priority book of individual orders (the ground
  truth for queue position and fills);
* :class:`FlowConfig`, :class:`MarketFlow` — the order-flow model around a latent fair value, in which
  informed flow leads the mid;
* :class:`SynthSession` — N markets merged into one time-ordered stream (``tape synth`` writes them);
* :class:`Exchange` — N markets and the accounts of outside clients, pure and deterministic (time is
  passed in); :class:`Faults` — the faults a connection can be given;
* :mod:`.server` — ``ExchangeServer``, Kalshi's REST API and WebSocket around an :class:`Exchange`
  (``tape exchange serve``; imported on its own, as it needs aiohttp).
"""

from .engine import Canceled, Fill, MatchingEngine, Placed, RestingOrder
from .exchange import Exchange
from .faults import Faults
from .flow import FlowConfig, MarketFlow, MarketProfile
from .session import EPOCH_NS, SynthSession, derive_seed

__all__ = [
    "EPOCH_NS",
    "Canceled",
    "Exchange",
    "Faults",
    "Fill",
    "FlowConfig",
    "MarketFlow",
    "MarketProfile",
    "MatchingEngine",
    "Placed",
    "RestingOrder",
    "SynthSession",
    "derive_seed",
]
