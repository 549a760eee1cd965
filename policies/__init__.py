"""The policy interface (signal, sizing, entry, exit), rule-based baselines, RLlib-backed policies,
the model registry and the observation features shared by training and trading."""

from policies.base import (
    OBSERVATION_NAMES,
    ROLES,
    EntryDecision,
    EntryObservation,
    ExitDecision,
    ExitObservation,
    MarketView,
    Policy,
    SignalDecision,
    SignalObservation,
    SizingDecision,
    SizingObservation,
    WorkingOrder,
)
from policies.rules import baselines

__all__ = [
    "OBSERVATION_NAMES",
    "ROLES",
    "EntryDecision",
    "EntryObservation",
    "ExitDecision",
    "ExitObservation",
    "MarketView",
    "Policy",
    "SignalDecision",
    "SignalObservation",
    "SizingDecision",
    "SizingObservation",
    "WorkingOrder",
    "baselines",
]
