"""The soak: a long live-order session on the local exchange with every fault on, watching memory and fills.

:func:`soak` runs what ``tape paper --live-orders`` runs — the topology's machines (on Ray, or in this process),
the order gateway sending real orders, fills coming back on the feed's private channels and its REST
reconciliation — against an :class:`~runtime.venues.sim.exchange.Exchange` of ``markets`` markets served in this
process, every market traded, with faults on the feed's connection (``gap``, ``error25``, ``drop``,
``dup_fills``, ``malformed``, ``slow_ms``: :mod:`runtime.venues.sim.faults`) and ``slow_ms`` on every REST reply.

Every ``every_s`` it samples a :class:`Sample`: the resident memory (``VmRSS``) of this process and of every
process of the Ray session it started (its descendants: GCS, raylet, one worker per actor, …), in total and per
kind of process (``ray::<actor class>``, ``raylet``, ``gcs_server``, …), the event rate since the last sample,
fills applied, and duplicates refused (by the feed, and by the log's machines: ``fill_duplicated``).

At the end, a :class:`SoakReport`: the memory growth after the warm-up (the first ``warmup_s``: ten minutes of an
hour, a sixth of a shorter run) — from the first sample after it to the last, and to the highest; the fills
**lost** (the exchange's own record of our account's fills, read directly, that the log never applied) and
**doubled** (a trade id the log applied twice), and ``tape replay verify`` of the log. :attr:`SoakReport.ok` is
false if a fill was lost or doubled or the replay diverged.

Reading memory needs Linux's ``/proc``; elsewhere :func:`soak` refuses to start (:class:`SoakError`).
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec

from .events import FillDuplicated, OrderFilled
from .log import SessionMeta, create_log, open_log
from .logger import get_logger
from .paper import PaperSession, Watch
from .topology import PolicyProvider, SessionSpec
from .units import MONEY_SCALE
from .venues.sim.faults import Faults

__all__ = ["ALL_FAULTS", "ProcessMemory", "Sample", "SoakError", "SoakReport", "memory", "sample_line", "soak"]

ALL_FAULTS = "gap=400,error25=30000,drop=60000,dup_fills=1,malformed=997,slow_ms=1,seed=7"
"""every fault hook on, at rates a long session meets many times over (``tape soak``'s default)"""
OWNER = "trust"  # the account the local exchange gives unsigned requests
_PROC = Path("/proc")


class SoakError(Exception):
    """A soak that cannot run here (not Linux)."""


class ProcessMemory(msgspec.Struct, frozen=True):
    pid: int
    kind: str
    rss_kb: int


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the soak's progress."""

    elapsed_s: float
    rss_kb: int  # every process, together
    by_kind: dict[str, int]  # kind of process -> its processes' rss, together
    processes: int
    records: int  # logged so far
    events_per_s: float  # records logged per second since the previous sample
    fills: int  # applied
    duplicates_refused: int  # by the feed (dropped) and by the log's machines (fill_duplicated)


class SoakReport(msgspec.Struct, kw_only=True):
    """What a soak found (module docstring)."""

    session_id: str
    log: str
    markets: int
    duration_s: float
    faults: str
    speed: float
    warmup_s: float
    samples: list[Sample]
    rss_start_kb: int = 0  # the first sample after the warm-up
    rss_end_kb: int = 0
    rss_peak_kb: int = 0  # the highest after the warm-up
    rss_growth: float = 0.0  # (end - start) / start
    rss_peak_growth: float = 0.0  # (peak - start) / start
    records: int = 0
    orders: int = 0
    exchange_fills: int = 0  # our account's fills, by the exchange's own record
    log_fills: int = 0  # fills the log applied
    fills_lost: list[str] = []  # trade ids the exchange made and the log never applied
    fills_doubled: list[str] = []  # trade ids the log applied more than once
    fills_unknown: list[str] = []  # trade ids the log applied that the exchange never made for us
    duplicates_refused_feed: int = 0
    duplicates_refused_log: int = 0
    stale_fills: int = 0  # fills older than what the feed's window forgot (delivered, for the machines to refuse)
    feed: dict[str, int] = {}
    gateway: dict[str, int] = {}
    replay_ok: bool = False
    replay: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not (self.fills_lost or self.fills_doubled or self.fills_unknown) and self.replay_ok


# --- memory ----------------------------------------------------------------------------------------------------
def _check_linux() -> None:
    if not sys.platform.startswith("linux") or not (_PROC / "self" / "status").exists():
        raise SoakError(f"tape soak reads every process's memory from Linux's /proc; this is {sys.platform}")


def _rss_kb(pid: int) -> int | None:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return 0  # a zombie, or a kernel thread: no resident memory


def _kind(pid: int) -> str:
    """``ray::<actor class>``, ``raylet``, ``gcs_server``, the script of a Python helper, or the program's name."""
    try:
        args = [a for a in (_PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0") if a]
    except OSError:
        return "?"
    if not args:
        return "?"
    if args[0].startswith("ray::"):  # a Ray worker names itself by its actor class (or IDLE)
        return "ray::" + args[0][5:].split()[0].split(".")[0] if args[0][5:].strip() else "ray::"
    name = os.path.basename(args[0])
    if name.startswith("python"):
        script = next((a for a in args[1:] if a.endswith(".py")), None)
        if script is not None:
            return os.path.basename(script)[:-3]
    return name


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def memory(root: int | None = None) -> list[ProcessMemory]:
    """This process (or ``root``) and every descendant (a Ray session this process started: GCS, raylet,
    workers), each with its kind and resident memory (Linux only)."""
    root = os.getpid() if root is None else root
    children = _children()
    out: list[ProcessMemory] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        rss = _rss_kb(pid)
        if rss is not None:
            out.append(ProcessMemory(pid, "driver" if pid == root else _kind(pid), rss))
        todo.extend(children.get(pid, ()))
    return out


# --- the run ---------------------------------------------------------------------------------------------------
class _Probe:
    """The status callback: a :class:`Sample` every ``every_s``, printed by ``show``."""

    def __init__(self, every_s: float, show: Callable[[Sample], None], duplicates: Callable[[], int]) -> None:
        self.every_s = every_s
        self.show = show
        self.duplicates = duplicates
        self.samples: list[Sample] = []
        self._due = 0.0
        self._records = 0
        self._at = 0.0
        self.refused_log = 0  # fill_duplicated logged
        self._seen = 0  # records of the watch already looked at

    def __call__(self, watch: Watch, elapsed: float) -> None:
        if elapsed < self._due:
            return
        self.sample(watch, elapsed)
        self._due = (int(elapsed / self.every_s) + 1) * self.every_s

    def sample(self, watch: Watch, elapsed: float) -> None:
        procs = memory()
        by_kind: Counter[str] = Counter()
        for p in procs:
            by_kind[p.kind] += p.rss_kb
        dt = elapsed - self._at
        rate = (watch.records - self._records) / dt if dt > 0 else 0.0
        self._records, self._at = watch.records, elapsed
        s = Sample(elapsed_s=round(elapsed, 1), rss_kb=sum(by_kind.values()), by_kind=dict(sorted(by_kind.items())),
                   processes=len(procs), records=watch.records, events_per_s=round(rate, 1), fills=watch.fills,
                   duplicates_refused=self.duplicates())
        self.samples.append(s)
        self.show(s)


class _SoakWatch(Watch):
    """The session's watch, counting the machines' refusals (``fill_duplicated``) as they are logged."""

    refused = 0

    def __call__(self, records) -> None:
        super().__call__(records)
        for r in records:
            if type(r.event) is FillDuplicated:
                self.refused += 1


def _growth(samples: list[Sample], warmup_s: float) -> tuple[int, int, int, float, float]:
    after = [s for s in samples if s.elapsed_s >= warmup_s] or samples[-1:]
    if not after:
        return 0, 0, 0, 0.0, 0.0
    start, end, peak = after[0].rss_kb, after[-1].rss_kb, max(s.rss_kb for s in after)
    return start, end, peak, (end - start) / start if start else 0.0, (peak - start) / start if start else 0.0


async def soak(*, duration_s: float, markets: int, faults: str = ALL_FAULTS, every_s: float = 60.0,
               warmup_s: float | None = None, speed: float = 10.0, seed: int = 7, cash: float = 10_000.0,
               target: str = "runs", runner: str = "ray", show: Callable[[Sample], None] = lambda s: None,
               drain_s: float = 30.0, policy: str = "rule", policies: PolicyProvider) -> SoakReport:
    """Run a soak (module docstring); ``show`` gets each sample as it is taken; ``policies`` is what the
    orchestrator and the closing replay take their policies from (the command line passes the registry's)."""
    _check_linux()
    from replay.verify import verify

    from .cli.paper import LIVE_CHANNELS, _runner
    from .ids import new_session_id
    from .venues.kalshi.http import KalshiRest
    from .venues.kalshi.ws import KalshiFeed
    from .venues.sim.exchange import Exchange
    from .venues.sim.flow import FlowConfig
    from .venues.sim.server import ExchangeServer

    spec_faults = Faults.parse(faults)  # (raises FaultError naming the key)
    warmup = min(600.0, duration_s / 6) if warmup_s is None else warmup_s
    session_id = new_session_id("soak")
    prefix = session_id.rsplit("-", 1)[-1]
    exchange = Exchange(markets, seed, config=FlowConfig(tight_share=1.0),  # every market tight and busy: traded
                        session_s=max(3_600.0, duration_s * speed * 2), start_ns=time.time_ns())
    report = SoakReport(session_id=session_id, log=f"{target.rstrip('/')}/{session_id}", markets=markets,
                        duration_s=duration_s, faults=str(spec_faults), speed=speed, warmup_s=warmup, samples=[])
    async with ExchangeServer(exchange, speed=speed, faults=Faults(slow_ms=spec_faults.slow_ms)) as server:
        spec = SessionSpec(markets=exchange.tickers, starting_cash=round(cash * MONEY_SCALE), seed=seed,
                           prefix=prefix, execution="venue", policy=policy)
        meta = SessionMeta(session_id=session_id, mode="demo", venue="sim", seed=seed, created_ns=time.time_ns())
        log = await create_log(target, meta)
        hosts = await _runner(runner, spec, log)
        ws_url = f"{server.ws_url}?faults={spec_faults}" if spec_faults.any else server.ws_url
        async with log, KalshiRest(server.rest_url) as rest, \
                KalshiFeed(ws_url, exchange.tickers, channels=LIVE_CHANNELS, rest=rest, info=rest,
                           own=prefix + "-") as feed:
            watch = _SoakWatch(spec)
            probe = _Probe(every_s, show, lambda: feed.stats.duplicate_fills + watch.refused)
            session = PaperSession(log, spec, feed, session_id=session_id, venue="sim", runner=hosts, rest=rest,
                                   watch=watch, drain_s=drain_s)
            summary = await session.run(duration_s, probe)
            probe.sample(watch, time.perf_counter() - session.started)
            await log.mark("ended", f"soak {summary.reason}")
            ours = [f for f in exchange.fills(OWNER) if f.client_order_id.startswith(prefix + "-")]
            report.reason = summary.reason
            report.orders = summary.intents
            report.feed = feed.stats.as_dict()
            report.gateway = dict(summary.gateway)
            report.duplicates_refused_feed = feed.stats.duplicate_fills
            report.stale_fills = feed.stats.stale_fills
    report.samples = probe.samples
    (report.rss_start_kb, report.rss_end_kb, report.rss_peak_kb, report.rss_growth,
     report.rss_peak_growth) = _growth(probe.samples, warmup)
    async with await open_log(report.log) as reader:
        applied, refused_log, records = await _applied(reader)
        report.records = records
        report.duplicates_refused_log = refused_log
        made = {f.trade_id for f in ours}
        report.exchange_fills, report.log_fills = len(made), sum(applied.values())
        report.fills_lost = sorted(made - applied.keys())
        report.fills_doubled = sorted(t for t, n in applied.items() if n > 1)
        report.fills_unknown = sorted(applied.keys() - made)
        # the fills' verdict before the replay's (which takes minutes): a replay that fails still leaves it said
        get_logger("soak").info("fills checked", exchange=report.exchange_fills, applied=report.log_fills,
                                lost=len(report.fills_lost), doubled=len(report.fills_doubled),
                                unknown=len(report.fills_unknown), rss_growth=round(report.rss_growth, 5))
        verdict = await verify(reader, policies=policies, jobs=os.cpu_count() or 1)
    report.replay_ok = verdict.ok
    report.replay = (f"ok: {verdict.records:,} records, {sum(verdict.derived.values()):,} derived events regenerated "
                     f"identically ({verdict.rate:,.0f} records/s)" if verdict.ok else f"DIVERGED: {verdict.divergence}")
    return report


async def _applied(log) -> tuple[Counter[str], int, int]:
    """``(times each trade id was applied, fills refused, records)`` of a log: a fill is applied unless the
    positions machine refused it (a ``fill_duplicated`` caused by its record)."""
    fills: dict[int, str] = {}
    refused: set[int] = set()
    records = 0
    async for batch in log.read():
        for r in batch:
            records += 1
            kind = type(r.event)
            if kind is OrderFilled:
                fills[r.seq] = r.event.trade_id
            elif kind is FillDuplicated:
                refused.add(r.event.cause_seq)
    return Counter(t for seq, t in fills.items() if seq not in refused), len(refused), records


def sample_line(s: Sample) -> str:
    """One progress line: elapsed, memory (total and per kind), the event rate, fills and refusals."""
    kinds = " ".join(f"{k}={v / 1024:.0f}" for k, v in sorted(s.by_kind.items(), key=lambda kv: -kv[1]))
    return (f"{s.elapsed_s:7.0f} s  rss {s.rss_kb / 1024:8.1f} MiB in {s.processes} processes ({kinds} MiB)  "
            f"{s.events_per_s:8,.0f} ev/s  records {s.records:,}  fills {s.fills:,}  duplicates refused "
            f"{s.duplicates_refused:,}")
