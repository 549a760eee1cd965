"""Paper profiles: named sets of the paper matcher's settings.

A profile says how the paper matcher (:mod:`actors.matcher`) models what it cannot see: the latency of our orders
and cancels, and how a resting order's queue advances when size ahead of it leaves without a trade. ``default`` is
what paper sessions have always run with; ``calibrated-sim`` is what ``tape fidelity --calibrate`` chose against
the local exchange's true matching (its figures, and the command that produced them, are in the README). A
settings file names one with ``[paper] profile = "calibrated-sim"``, or defines its own under
``[paper.profiles.NAME]`` (what ``tape fidelity --calibrate --save FILE`` writes). Every session records the
profile's name and its settings in its spec, so a replay needs neither this table nor the file.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["PARAMETERS", "SHIPPED", "PaperProfile"]


class PaperProfile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The paper matcher's settings (``SessionSpec`` fields of the same names)."""

    latency_ms: Annotated[int, Meta(ge=0, le=60_000)] = 50
    """event time from a decision (or a cancel) to the simulated venue"""
    queue_model: Literal["conservative", "proportional", "share", "orders"] = "conservative"
    """how the queue ahead advances when displayed size at its price shrinks without a trade"""
    cancel_ahead_pct: Annotated[int, Meta(ge=0, le=100)] = 0
    """``share``: the percent of such a cancel taken from ahead of us (0 with the other models)"""
    pacing: Literal["none", "basic", "advanced", "premier", "paragon", "prime"] = "none"
    """the Kalshi tier our REST client paces itself to: orders and cancels wait for its write bucket before they reach
    the simulated venue, as they wait when live (``none``: never)"""

    def __post_init__(self) -> None:
        if self.cancel_ahead_pct and self.queue_model != "share":
            raise ValueError(f"cancel_ahead_pct = {self.cancel_ahead_pct} needs queue_model = 'share' "
                             f"(it is {self.queue_model!r})")

    def text(self) -> str:
        """``latency_ms=50 queue_model=share cancel_ahead_pct=60`` (the last only with ``share``)."""
        share = f" cancel_ahead_pct={self.cancel_ahead_pct}" if self.queue_model == "share" else ""
        pacing = f" pacing={self.pacing}" if self.pacing != "none" else ""
        return f"latency_ms={self.latency_ms} queue_model={self.queue_model}{share}{pacing}"


PARAMETERS: dict[str, tuple[object, ...]] = {
    "latency_ms": (0, 10, 25, 50, 100, 200, 400),
    "queue_model": ("conservative", "proportional", "share", "orders"),
    "cancel_ahead_pct": (25, 50, 75, 100),
    "pacing": ("none", "basic"),
}
"""what a calibration may search, and the values it tries by default (``tape fidelity --calibrate --grid``)"""

SHIPPED: dict[str, PaperProfile] = {
    "default": PaperProfile(),
    # tape fidelity --calibrate on 10 fidelity sessions of the local exchange (6 of the rule baselines, seeds 101-106;
    # 4 of a trained model, seeds 201-204; 24 markets, 150 s at 10x): the least error of 36 settings, 15.61 against the
    # default's 30.18 (README: fill fidelity)
    "calibrated-sim": PaperProfile(latency_ms=10, queue_model="orders", pacing="basic"),
}
