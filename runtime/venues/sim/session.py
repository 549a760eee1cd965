"""A whole synthetic session: N markets of the order-flow model, merged into one time-ordered event stream.

Everything derives from one seed: market ``i`` of a session runs on its own ``random.Random`` seeded
with :func:`derive_seed` ``(seed, "market", i)``, so a market's events do not depend on how many other
markets run beside it. Event time starts at ``start_ns`` (by default the fixed :data:`EPOCH_NS`, never
the wall clock), so the same arguments give the same events, byte for byte once logged.

The stream opens with every market's :class:`MarketInfo` (:func:`market_info`: the definition the local exchange
serves for it over REST — its grid, the series' fee terms, its close and its rules), at the start, in market order.
Per market the stream is then: ``activated`` (with the close time), a full :class:`BookSnapshot`, then the
:class:`BookDelta` and :class:`PublicTrade` events the engine produces, and at the close the deltas
that empty the book, ``deactivated``, ``determined`` and ``settled`` (result and settlement value).
Markets are merged by time; at equal times the lower market index comes first.

**The fair-value sidecar** (evaluation only): built with ``record_fair=True``, a session also keeps each market's
latent fair-value path (:attr:`MarketFlow.fair_path`), which :meth:`SynthSession.fair` returns as a
:class:`FairSidecar` once the events have been generated. ``tape synth`` writes it as :data:`FAIR_FILE` in the run
directory, beside the log and never in it (:func:`write_fair`, :func:`read_fair`): the oracle of ``tape eval
--oracle`` reads it; no policy does. Recording it changes no event.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path

import msgspec

from actors.fees import COMBO_MAKER_RATE_PPM, KalshiFees, SeriesFees
from runtime.events import Event, MarketInfo, SessionEnded, SessionStarted
from runtime.units import PRICE_MAX

from .flow import FlowConfig, MarketFlow

__all__ = ["EPOCH_NS", "FAIR_FILE", "FairPath", "FairSidecar", "SynthSession", "derive_seed", "fee_type", "market_info",
           "market_rules", "read_fair", "write_fair"]

EPOCH_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z: synthetic sessions' event time starts here
_SEED_MASK = (1 << 63) - 1
FAIR_FILE = "fair.msgpack"
"""the fair-value sidecar's name in a run directory"""
FAIR_FORMAT = 1


class FairPath(msgspec.Struct, frozen=True, kw_only=True):
    """One market's latent fair value (the probability it settles YES) over event time: ``fair[i]`` holds from
    ``ts_ns[i]`` until the next entry (times ascend; several entries may share a time, the last one holds)."""

    market: str
    ts_ns: list[int]
    fair: list[float]

    def at(self, ts_ns: int) -> float:
        """The fair value at event time ``ts_ns`` (after every move at that time); the first before the start."""
        return self.fair[max(0, bisect_right(self.ts_ns, ts_ns) - 1)]


class FairSidecar(msgspec.Struct, frozen=True, kw_only=True):
    """A session's fair-value paths, one per market (:data:`FAIR_FILE`)."""

    format: int
    session_id: str
    seed: int
    markets: list[FairPath]


def write_fair(run_dir: str | Path, sidecar: FairSidecar) -> Path:
    """Write ``sidecar`` as ``run_dir/`` :data:`FAIR_FILE` (msgpack, atomically); returns its path."""
    path = Path(run_dir) / FAIR_FILE
    tmp = path.with_name(f".{FAIR_FILE}.tmp")
    tmp.write_bytes(msgspec.msgpack.encode(sidecar))
    os.replace(tmp, path)
    return path


def read_fair(run_dir: str | Path) -> FairSidecar | None:
    """The sidecar in ``run_dir``, or None if it has none; a damaged one raises ``ValueError`` naming the file."""
    path = Path(run_dir) / FAIR_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.msgpack.decode(data, type=FairSidecar)
    except msgspec.DecodeError as exc:
        raise ValueError(f"{path}: not a fair-value sidecar ({exc})") from None


PRICE_LEVEL_STRUCTURE = {100: "linear_cent", 10: "deci_cent"}
"""the spec's ``price_level_structure`` of the exchange's ticks (any other tick: ``custom``)"""


def market_rules(ticker: str) -> tuple[str, str]:
    """A synthetic market's ``rules_primary`` and ``rules_secondary``."""
    return (f"{ticker} settles Yes with the probability of its latent fair value at the close (a seeded draw of the "
            "local exchange's order-flow model); $1 per winning contract.", "Synthetic: no real-world event decides it.")


def fee_type(terms: SeriesFees) -> str:
    """The spec's ``fee_type`` of fee terms (the inverse of :func:`actors.fees.fee_terms`)."""
    if not terms.maker_fees:
        return "quadratic"
    return "quadratic_with_combo_maker_fees" if terms.maker_rate_ppm == COMBO_MAKER_RATE_PPM else "quadratic_with_maker_fees"


def market_info(ticker: str, *, tick: int, close_ns: int, latest_expiration_ns: int, settle_after_s: int,
                series: str, fees: SeriesFees, source: str = "sim") -> MarketInfo:
    """A market of the local exchange as a ``MarketInfo``: what ``GET /markets/{ticker}`` and ``GET /series/{series}``
    say of it (one grid from ``tick`` to $1 − ``tick`` by ``tick``; binary; it cannot close early)."""
    primary, secondary = market_rules(ticker)
    return MarketInfo(market=ticker, series=series, market_type="binary",
                      price_level_structure=PRICE_LEVEL_STRUCTURE.get(tick, "custom"),
                      price_ranges=((tick, PRICE_MAX - tick, tick),), fee_type=fee_type(fees),
                      fee_multiplier_ppm=fees.multiplier_ppm, close_ts_ms=close_ns // 1_000_000,
                      latest_expiration_ts_ms=latest_expiration_ns // 1_000_000, settlement_timer_s=settle_after_s,
                      can_close_early=False, rules_primary=primary, rules_secondary=secondary, source=source)


def derive_seed(seed: int, *path: str | int) -> int:
    """A 63-bit seed for a named part of a seeded run (``derive_seed(7, "market", 3)``), stable across
    platforms and Python versions (sha256 of the text, not ``hash()``)."""
    text = "/".join(str(p) for p in (seed, *path))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & _SEED_MASK


class SynthSession:
    """One seeded synthetic session of ``markets`` markets over ``duration_s`` seconds of event time.

    ``events()`` yields ``(ts_ns, event)`` in time order, once; ``started()`` and ``ended()`` are the
    session's bracketing events. ``flows`` exposes each market's model (engine, latent state, profile).
    ``record_fair`` keeps the fair-value paths for :meth:`fair` (module docstring).
    """

    def __init__(self, seed: int, markets: int, duration_s: float, *, config: FlowConfig | None = None,
                 start_ns: int = EPOCH_NS, prefix: str = "KXSIM", record_fair: bool = False) -> None:
        if markets < 1:
            raise ValueError(f"a session needs at least one market, got {markets}")
        if not duration_s > 0:
            raise ValueError(f"the duration must be positive, got {duration_s} s")
        self.seed = seed
        self.config = config or FlowConfig()
        self.start_ns = start_ns
        self.end_ns = start_ns + round(duration_s * 1_000_000_000)
        self.prefix = prefix
        self.tickers = tuple(f"{prefix}-{i:03d}" for i in range(markets))
        self.flows = tuple(MarketFlow(ticker, self.config, derive_seed(seed, "market", i), self.start_ns, self.end_ns,
                                      record_fair=record_fair)
                           for i, ticker in enumerate(self.tickers))
        self._used = False

    def started(self, session_id: str, config_hash: str, code_version: str) -> tuple[int, SessionStarted]:
        return self.start_ns, SessionStarted(session_id=session_id, mode="synth", venue="sim", seed=self.seed,
                                             config_hash=config_hash, code_version=code_version,
                                             markets=self.tickers)

    def ended(self) -> tuple[int, SessionEnded]:
        return self.end_ns, SessionEnded(reason="completed")

    def fair(self, session_id: str) -> FairSidecar:
        """Every market's fair-value path, once :meth:`events` has run to the end (module docstring)."""
        paths = [flow.fair_path for flow in self.flows]
        if any(path is None for path in paths):
            raise RuntimeError("build the session with record_fair=True to keep the fair-value paths")
        return FairSidecar(format=FAIR_FORMAT, session_id=session_id, seed=self.seed, markets=[
            FairPath(market=flow.market, ts_ns=[t for t, _ in path], fair=[f for _, f in path])  # type: ignore[union-attr]
            for flow, path in zip(self.flows, paths, strict=True)])

    def market_infos(self) -> list[MarketInfo]:
        """Every market's definition (module docstring), in market order; the fees are Kalshi's default terms, as the
        local exchange charges them."""
        fees = KalshiFees().terms(self.prefix)
        return [market_info(flow.market, tick=self.config.tick, close_ns=flow.profile.close_ns,
                            latest_expiration_ns=self.end_ns, settle_after_s=round(self.config.settle_after_s),
                            series=self.prefix, fees=fees) for flow in self.flows]

    def events(self) -> Iterator[tuple[int, Event]]:
        """Every market's ``MarketInfo`` at the start, then its events merged in time order (ties: lower market index,
        then emission order)."""
        if self._used:
            raise RuntimeError("a SynthSession's events are generated once; build a new session to run again")
        self._used = True
        for info in self.market_infos():
            yield self.start_ns, info
        streams = [_keyed(i, flow) for i, flow in enumerate(self.flows)]
        for ts, _, _, events in heapq.merge(*streams):
            for event in events:
                yield ts, event

    def batches(self, size: int) -> Iterator[list[tuple[int, Event]]]:
        """:meth:`events` in lists of ``size`` (the last one shorter)."""
        batch: list[tuple[int, Event]] = []
        for entry in self.events():
            batch.append(entry)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def _keyed(index: int, flow: MarketFlow) -> Iterator[tuple[int, int, int, list[Event]]]:
    for n, (ts, events) in enumerate(flow.steps()):
        yield ts, index, n, events
