"""The local exchange without its network server: a matching engine per market, the synthetic
participants that trade on it, and whole seeded sessions of their market data as tape events.

* :class:`MatchingEngine` — one market's price-time-priority book of individual orders (the ground
  truth for queue position and fills);
* :class:`FlowConfig`, :class:`MarketFlow` — the order-flow model around a latent fair value, in which
  informed flow leads the mid;
* :class:`SynthSession` — N markets merged into one time-ordered stream (``tape synth`` writes them).
"""

from .engine import Canceled, Fill, MatchingEngine, Placed, RestingOrder
from .flow import FlowConfig, MarketFlow, MarketProfile
from .session import EPOCH_NS, SynthSession, derive_seed

__all__ = [
    "EPOCH_NS",
    "Canceled",
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
