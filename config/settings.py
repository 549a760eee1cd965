"""Settings structs, TOML + environment loading, validation errors that name the key and the value."""

from __future__ import annotations

import hashlib
import os
import tomllib
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from .profiles import SHIPPED, PaperProfile
from .synth import FlowConfig

ENV_PREFIX = "TAPE__"


class ConfigError(ValueError):
    """A settings file or override that cannot be used; the message names the key and the value."""


class _Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class LogSettings(_Settings):
    """The event log: where sessions go, when appends are durable, and how writes are batched."""

    target: str = "runs"
    sync: Literal["batch", "interval", "none"] = "batch"
    sync_interval_ms: Annotated[int, Meta(ge=1, le=60_000)] = 50
    segment_bytes: Annotated[int, Meta(ge=65_536, le=1 << 34)] = 64 * 1024 * 1024
    queue_batches: Annotated[int, Meta(ge=1, le=1_000_000)] = 64
    group_batches: Annotated[int, Meta(ge=1, le=10_000)] = 32
    pg_connect_attempts: Annotated[int, Meta(ge=1, le=100)] = 5
    pg_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0


class LoggingSettings(_Settings):
    """Diagnostics (structlog): level and output format."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class SessionSettings(_Settings):
    """What every session records about itself."""

    seed: Annotated[int, Meta(ge=0, le=2**63 - 1)] = 0
    venue: Literal["sim", "kalshi-demo", "kalshi"] = "sim"


class PaperSettings(_Settings):
    """Paper execution: how our simulated orders meet the observed book: a named profile (:mod:`config.profiles`),
    or, with ``profile = ""``, the settings given here."""

    profile: str = ""
    latency_ms: Annotated[int, Meta(ge=0, le=60_000)] = 50
    queue_model: Literal["conservative", "proportional", "share", "orders"] = "conservative"
    cancel_ahead_pct: Annotated[int, Meta(ge=0, le=100)] = 0
    pacing: Literal["none", "basic", "advanced", "premier", "paragon", "prime"] = "none"
    profiles: dict[str, PaperProfile] = {}
    """profiles of your own (``[paper.profiles.NAME]``), beside the shipped ones"""

    def effective(self) -> tuple[str, PaperProfile]:
        """``(profile name, its settings)``: the named profile's, or ``("", latency_ms and queue_model)``."""
        if not self.profile:
            try:
                return "", PaperProfile(latency_ms=self.latency_ms, queue_model=self.queue_model,
                                        cancel_ahead_pct=self.cancel_ahead_pct, pacing=self.pacing)
            except ValueError as exc:
                raise ConfigError(f"paper: {exc}") from None
        known = {**SHIPPED, **self.profiles}
        if self.profile not in known:
            raise ConfigError(f"paper.profile = {self.profile!r}: no such profile (known: {', '.join(sorted(known))}; "
                              "define your own under [paper.profiles.NAME])")
        return self.profile, known[self.profile]


class VenueSettings(_Settings):
    """The venue account: Kalshi's rate-limit tier (``actors.limits``), which our REST client paces itself to and
    paper sessions enforce on their orders."""

    tier: Literal["basic", "advanced", "premier", "paragon", "prime"] = "basic"


class Settings(_Settings):
    log: LogSettings = LogSettings()
    logging: LoggingSettings = LoggingSettings()
    session: SessionSettings = SessionSettings()
    paper: PaperSettings = PaperSettings()
    venue: VenueSettings = VenueSettings()
    synth: FlowConfig = FlowConfig()


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _lookup(data: Any, path: list[str | int]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _env_value(name: str, text: str) -> Any:
    """An environment value as TOML would read it (``5`` is an int, ``true`` a bool, else a string)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in sorted(env):  # sorted: a defined order whatever the environment's
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"environment variable {name}: expected {ENV_PREFIX}SECTION__KEY, e.g. TAPE__LOG__SYNC")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _env_value(name, env[name])
    return out


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Shipped defaults, then the TOML file at ``path`` (if any), then ``TAPE__SECTION__KEY`` variables."""
    data = tomllib.loads(resources.files("config").joinpath("defaults.toml").read_text())
    source = "shipped defaults"
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the settings file ({exc.strerror})") from exc
        try:
            data = _merge(data, tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        source = str(path)
    overrides = _from_env(os.environ if env is None else env)
    if overrides:
        data = _merge(data, overrides)
        source += " + environment"
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(exc, data, source)) from None
    try:
        settings.paper.effective()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return settings


def _explain(exc: msgspec.ValidationError, data: dict[str, Any], source: str) -> str:
    """Turn msgspec's ``... - at `$.log.sync``` into ``log.sync = 'sometimes': ...`` with the value."""
    message = str(exc)
    reason, found, at = message.rpartition(" - at `")
    if not found:  # an error at the top level: msgspec names no path
        reason, at = message, "$`"
    path = [p for p in at.rstrip("`").removeprefix("$").split(".") if p]
    key = ".".join(path)
    if reason.startswith("Object contains unknown field"):
        field = reason.split("`")[1]
        return f"{source}: unknown setting {key + '.' if key else ''}{field}; check its spelling against config/defaults.toml"
    if not path:
        return f"{source}: {reason}"
    value = _lookup(data, path)
    choices = _choices(Settings, path)
    if choices is not None:
        reason += f" (valid values: {', '.join(map(repr, choices))})"
    return f"{source}: {key} = {value!r}: {reason}"


def _choices(struct: type, path: list[str]) -> tuple[Any, ...] | None:
    """The values a ``Literal`` setting at ``path`` may take (None if it is not one)."""
    hint: Any = struct
    for part in path:
        try:
            hint = typing.get_type_hints(hint)[part]
        except (KeyError, TypeError):
            return None
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def settings_hash(settings: Settings) -> str:
    """A stable hash of the effective settings (sha256 of their canonical JSON), recorded per session."""
    canonical = msgspec.json.encode(msgspec.to_builtins(settings), order="sorted")
    return hashlib.sha256(canonical).hexdigest()
