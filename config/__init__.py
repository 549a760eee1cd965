"""Typed, frozen settings for tape: loaded from TOML, overridden by the environment, validated on load.

``load_settings()`` reads the shipped defaults, then an optional TOML file, then ``TAPE__*`` environment
variables, and returns a frozen :class:`Settings`. :func:`settings_hash` is the hash recorded in every
session, so a run can be matched to the exact settings it ran with.
"""

from .settings import (
    ConfigError,
    LoggingSettings,
    LogSettings,
    PaperSettings,
    SessionSettings,
    Settings,
    VenueSettings,
    load_settings,
    settings_hash,
)

__all__ = [
    "ConfigError",
    "LogSettings",
    "LoggingSettings",
    "PaperSettings",
    "SessionSettings",
    "Settings",
    "VenueSettings",
    "load_settings",
    "settings_hash",
]
