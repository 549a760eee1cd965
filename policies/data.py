"""Training and evaluation data: the market data of recorded or synthetic sessions, one :class:`Tape` per market.

A source is any session the log tools read: a run directory (``runs/<id>``), a directory of runs (what
``tape synth --log DIR`` or ``tape record`` write), ``postgresql://…[?session=ID]`` (one session, or every
session in the database), or a Parquet export (``tape log export``). Only the **inputs that describe the
market** are kept — book snapshots and deltas, public trades, lifecycle, sequence gaps and resyncs — in log
order, split by market: a session recorded with orders of its own gives the same tapes as a pure recording,
so a policy learns from the market, never from what an earlier policy did in it.

Each tape carries what a curriculum needs to rank it (:attr:`Tape.difficulty`): the average quoted spread,
how bursty its activity is and how much of it is quiet. Everything is in log order and integer units; the
statistics are computed from them the same way on every machine.

A synthetic session's run directory also holds its latent fair-value paths (``tape synth`` writes them beside the
log, :data:`~runtime.venues.sim.session.FAIR_FILE`); its tapes name that file as :attr:`Tape.sidecar`, for the
evaluation's oracle (:mod:`policies.oracle`) alone — no policy and no environment reads it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from runtime.events import (
    BookDelta,
    BookResynced,
    BookSnapshot,
    Event,
    MarketLifecycle,
    PublicTrade,
    SeqGapDetected,
)
from runtime.log import is_postgres, list_sessions, open_log, split_target
from runtime.log.files import is_file_log
from runtime.units import PRICE_SCALE
from runtime.venues.sim.session import FAIR_FILE

__all__ = ["MARKET_DATA", "DataError", "Tape", "load_tapes", "split_tapes", "tapes_from"]

MARKET_DATA: tuple[type, ...] = (BookSnapshot, BookDelta, PublicTrade, MarketLifecycle, SeqGapDetected, BookResynced)
_TAGS = {t.__struct_config__.tag: t for t in MARKET_DATA}  # type: ignore[attr-defined]
_BUCKET_NS = 10_000_000_000  # activity statistics count events per 10 s of event time
_NS_PER_MIN = 60_000_000_000


class DataError(ValueError):
    """A source that holds no usable market data, or cannot be read."""


class Tape(msgspec.Struct, frozen=True, kw_only=True):
    """One market of one session: its market-data inputs in log order, and how hard it is to trade."""

    session: str
    market: str
    events: tuple[tuple[int, Event], ...]
    """``(ts_ns, event)``: book snapshots and deltas, public trades, lifecycle of this market, and the sequence
    gaps and resyncs that name it"""
    spread: float = 0.0
    """average quoted spread over the book updates with both sides, in dollars (1.0 if never two-sided)"""
    burstiness: float = 0.0
    """coefficient of variation of the events per 10 s of event time (0: steady)"""
    quiet: float = 0.0
    """share of the 10-s buckets with no event"""
    per_minute: float = 0.0
    """events per minute of event time"""
    sidecar: str | None = None
    """the session's fair-value sidecar file (synthetic sessions: ``tape synth`` writes it), or None"""

    @property
    def start_ns(self) -> int:
        return self.events[0][0]

    @property
    def end_ns(self) -> int:
        return self.events[-1][0]

    @property
    def difficulty(self) -> float:
        """Higher is harder: a wide spread costs more to trade, bursts and quiet spells make timing harder.
        ``spread`` in cents plus ``burstiness`` plus ``quiet`` (each about 0..10 on real sessions)."""
        return self.spread * 100.0 + self.burstiness + self.quiet * 10.0


def _market_of(event: Event) -> tuple[str, ...]:
    if type(event) is SeqGapDetected:
        return tuple(event.markets)
    return (event.market,)  # type: ignore[attr-defined]


def _stats(market: str, events: Sequence[tuple[int, Event]]) -> dict[str, float]:
    """The difficulty statistics of one market's events (see :class:`Tape`)."""
    from actors.book import OrderBook

    book = OrderBook(market)
    spreads = 0
    two_sided = 0
    buckets: dict[int, int] = {}
    start = events[0][0]
    for seq, (ts, event) in enumerate(events, 1):
        buckets[(ts - start) // _BUCKET_NS] = buckets.get((ts - start) // _BUCKET_NS, 0) + 1
        kind = type(event)
        if kind is BookDelta or kind is BookSnapshot:
            book.handle(seq, ts, event)
            spread = book.spread()
            if spread is not None and spread > 0:
                spreads += spread
                two_sided += 1
    n_buckets = max(1, (events[-1][0] - start) // _BUCKET_NS + 1)
    counts = [buckets.get(i, 0) for i in range(n_buckets)]
    mean = sum(counts) / n_buckets
    var = sum((c - mean) ** 2 for c in counts) / n_buckets
    minutes = max(events[-1][0] - start, 1) / _NS_PER_MIN
    return {"spread": spreads / two_sided / PRICE_SCALE if two_sided else 1.0,
            "burstiness": math.sqrt(var) / mean if mean else 0.0,
            "quiet": sum(1 for c in counts if not c) / n_buckets,
            "per_minute": len(events) / minutes}


def tapes_from(session: str, records: Sequence[tuple[int, Event]], markets: Sequence[str] | None = None, *,
               sidecar: str | None = None) -> list[Tape]:
    """The tapes of one session's ``(ts_ns, event)`` inputs (events that are not market data are ignored);
    ``sidecar`` the session's fair-value file, if it has one."""
    by_market: dict[str, list[tuple[int, Event]]] = {}
    for ts, event in records:
        if type(event) not in MARKET_DATA:
            continue
        for market in _market_of(event):
            if markets is None or market in markets:
                by_market.setdefault(market, []).append((ts, event))
    out = []
    for market in sorted(by_market):  # a fixed order, whatever order the markets appeared in
        events = by_market[market]
        if not any(type(e) is BookSnapshot for _, e in events):
            continue  # never had a book: nothing to trade on
        out.append(Tape(session=session, market=market, events=tuple(events), sidecar=sidecar, **_stats(market, events)))
    return out


async def _from_log(target: str | Path, session: str | None = None) -> tuple[str, list[tuple[int, Event]]]:
    kept: list[tuple[int, Event]] = []
    async with await open_log(target, session=session) as log:
        name = (await log.meta()).session_id
        async for batch in log.read():
            kept.extend((r.ts_ns, r.event) for r in batch if type(r.event) in _TAGS.values())
    return name, kept


def _from_parquet(path: Path) -> tuple[str, list[tuple[int, Event]]]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{path}: not a readable Parquet export ({exc})") from None
    meta = table.schema.metadata or {}
    name = meta.get(b"tape.session_id", path.stem.encode()).decode()
    table = table.filter(pc.is_in(table["type"], value_set=pa.array(list(_TAGS))))
    kept: list[tuple[int, Event]] = []
    fields = {tag: t.__struct_fields__ for tag, t in _TAGS.items()}
    for row in table.to_pylist():
        tag = row["type"]
        body = {f: _plain(row[f]) for f in fields[tag] if row.get(f) is not None}
        try:
            kept.append((row["ts_ns"], _TAGS[tag](**body)))
        except TypeError as exc:
            raise DataError(f"{path}: seq {row['seq']} ({tag}) is not a valid event: {exc}") from None
    return name, kept


def _plain(value: object) -> object:
    """A Parquet value as the event field wants it: lists as tuples, book levels (structs) as ``(price, count)``."""
    if isinstance(value, list):
        return tuple((v["price"], v["count"]) if isinstance(v, dict) else v for v in value)
    return value


async def _sources(source: str) -> list[tuple[str, str | None]]:
    """``(target, session)`` pairs a source names."""
    if is_postgres(source):
        dsn, session = split_target(source)
        if session is not None:
            return [(dsn, session)]
        return [(dsn, m.session_id) for m in await list_sessions(dsn)]
    path = Path(source)
    if path.suffix == ".parquet" and path.is_file():
        return [(str(path), None)]
    if is_file_log(path):
        return [(str(path), None)]
    if path.is_dir():
        runs = sorted(p for p in path.iterdir() if is_file_log(p))
        parquet = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and p.is_file())
        if runs or parquet:
            return [(str(p), None) for p in (*runs, *parquet)]
        raise DataError(f"{path}: no session logs (run directories) or Parquet exports in it")
    raise DataError(f"{source}: no such log, directory of runs, Parquet file or postgresql:// URL")


async def load_tapes(sources: Sequence[str | Path], *, markets: Sequence[str] | None = None,
                     progress: Callable[[str, int], None] | None = None) -> list[Tape]:
    """Every market tape of every session the sources name, in source order, then session, then market.

    ``markets`` keeps only those tickers. ``progress(session, tapes so far)`` is called after each session.
    Raises :class:`DataError` naming the source if one cannot be read or nothing usable is found.
    """
    tapes: list[Tape] = []
    for source in sources:
        for target, session in await _sources(str(source)):
            sidecar = None
            if target.endswith(".parquet") and not is_postgres(target):
                name, records = await asyncio.to_thread(_from_parquet, Path(target))
            else:
                if not is_postgres(target) and (Path(target) / FAIR_FILE).is_file():
                    sidecar = str((Path(target) / FAIR_FILE).resolve())
                try:
                    name, records = await _from_log(target, session)
                except (OSError, ValueError) as exc:
                    raise DataError(f"{target}{'?session=' + session if session else ''}: cannot be read ({exc})") from None
            tapes.extend(tapes_from(name, records, markets, sidecar=sidecar))
            if progress is not None:
                progress(name, len(tapes))
    if not tapes:
        raise DataError(f"no market with a book in {', '.join(map(str, sources))}"
                        + (f" (markets {', '.join(markets)})" if markets else ""))
    return tapes


def split_tapes(tapes: Sequence[Tape], held_out: float) -> tuple[list[Tape], list[Tape]]:
    """``(training, held out)`` by **session**, never by market within a session (markets of one session share
    its hours): the last ``held_out`` share of the sessions, in their loaded order, at least one of each."""
    sessions = list(dict.fromkeys(t.session for t in tapes))
    if len(sessions) < 2:
        raise DataError(f"held-out evaluation needs at least two sessions, got {len(sessions)}")
    n = min(len(sessions) - 1, max(1, round(len(sessions) * held_out)))
    test = set(sessions[-n:])
    return [t for t in tapes if t.session not in test], [t for t in tapes if t.session in test]

