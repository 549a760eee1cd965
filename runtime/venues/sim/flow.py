"""The local exchange's order-flow model: synthetic participants trading one market around a latent fair value.

One :class:`MarketFlow` runs one market: a :class:`~runtime.venues.sim.engine.MatchingEngine` and the
participants that trade on it, driven by one ``random.Random`` seeded from the market's seed, so the
same seed gives the same events. Floats live only inside the latent model; every order the
participants send is in integer ticks, converted deterministically (floor for bids, ceil for asks).

**The fair value** — the probability that the market settles YES — follows a random walk in logit
space (``volatility`` per square-root second) with Poisson jumps (``jump_rate``, ``jump_sd``): news.
At close the market settles YES with probability equal to the final fair value (a seeded draw).

**The public estimate** is what the market makers believe: every move of the fair value reaches it
``public_lag_s`` later (news spreads), plus what they learn from the tape — each trade moves it by
``maker_flow_impact`` × sqrt(contracts) in the taker's direction, a belief that fades
(``flow_memory_s``) and is absorbed when the news it anticipated becomes public.

**Market makers** (1–3 per market) quote a small ladder around the public estimate, each with its own
bias, skewed against its inventory, at a half-spread drawn per market: most markets are wide
(``wide_half_spread``; the Kalshi doc: ~80% of markets have spreads above 20¢), the most active
``tight_share`` are tight. They requote on a timer and shortly after being filled, leave a ladder in
place until it would move by a fraction of the half-spread, keep orders whose price is unchanged (so
they keep their queue place), and take stale quotes that their new quotes cross.

**Informed traders** see the fair value itself. When it is beyond the touch by at least
``informed_edge`` they take at the touch (``informed_sweep``: or through the book), sized by how far
it is; after a jump they keep coming back every few seconds (``informed_campaign_s``) until the news
is public. The makers refill the touch where it was, so the book barely moves while the informed
buy or sell — until the news reaches the public estimate and the makers' quotes jump. Informed flow
therefore arrives *ahead of* the mid's move: signed trade flow over a window predicts the next
window's mid change. That is the learnable edge; it is largest on tight markets, where the informed
can trade at all, and jumps are large against the spread and the fees.

**Noise traders** take small random amounts at the touch, and rest limit orders that join or sit
behind the touch (sometimes improving it), canceled after a random life. Their flow carries no
information; its small push on the public estimate fades.

**Regimes**: a quiet / normal / burst Markov chain scales every arrival rate; a jump starts a burst.

**Outside orders** (the local exchange's clients) go through the same engine with true queue priority,
and the makers learn from their trades like from anyone's; what the participants' orders do to them
later (fills, the cancel at the close) is kept for the exchange (:meth:`MarketFlow.outside_updates`).

**The latent path**, for evaluation only (``record_fair=True``; ``tape synth`` writes it beside each session,
never into its log): :attr:`MarketFlow.fair_path` lists ``(ts_ns, fair)`` — the start, then every move of the
fair value (diffusion at each action, jumps) — so the fair value at any event time is the last entry at or
before it. Recording draws nothing and changes nothing: the events are the same with it or without.

**Lifecycle**: the market opens at the session start (``activated``, with its close time, then a full
snapshot) and closes at a scheduled time in ``[close_min, close_max]`` of the session: every resting
order is canceled (deltas empty the book), then ``deactivated``, ``determined`` and ``settled``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Iterator
from statistics import NormalDist
from typing import Any

import msgspec

from config.synth import FlowConfig
from runtime.events import Event, MarketLifecycle
from runtime.units import PRICE_MAX

from .engine import Canceled, Fill, MatchingEngine, Placed

__all__ = ["FlowConfig", "MarketFlow", "MarketProfile"]

NS = 1_000_000_000
_LOGIT_CAP = 6.9  # |logit| bound: the fair value stays within (0.001, 0.999)

# regimes
QUIET, NORMAL, BURST = 0, 1, 2
REGIMES = ("quiet", "normal", "burst")

# scheduled actions (the kinds before _CLOSE are trading; they stop at the close)
_ARRIVE, _REGIME, _JUMP, _PUBLISH, _REFRESH, _REACT, _EXPIRE, _CAMPAIGN, _CLOSE, _DETERMINE, _SETTLE = range(11)

# phases of a market's run
_NEW, _ACTIVATED, _RUNNING, _FINISHED = range(4)



class MarketProfile(msgspec.Struct, frozen=True):
    """What was drawn for one market when its flow was built."""

    market: str
    tight: bool
    half_spread: int  # the makers' half-spread, 1/10,000 dollar
    activity: float  # multiplier of every arrival rate
    makers: int
    start_fair: float
    close_ns: int


class _Maker:
    __slots__ = ("anchor", "asks", "bias", "bids", "filled", "inventory", "owner", "react_pending", "size")

    def __init__(self, owner: str, bias: float, size: int) -> None:
        self.owner = owner
        self.bias = bias
        self.size = size  # count per level, 1/100 contract
        self.inventory = 0  # signed count, + YES
        self.bids: dict[int, int] = {}  # YES price -> order id
        self.asks: dict[int, int] = {}
        self.react_pending = False
        self.anchor: tuple[int, int] | None = None  # (top bid, top ask) of its current ladder
        self.filled = False  # some of its orders traded since it last quoted


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class MarketFlow:
    """One market's engine and participants from ``start_ns`` until it settles (see the module docstring).

    :meth:`steps` yields ``(ts_ns, events)``, one entry per action that changed the book or the market,
    in time order; when an entry is yielded the engine's book equals the fold of every event yielded
    so far. ``fair`` and ``estimate`` expose the latent state (probabilities) for tests and tools.

    The local exchange drives it one action at a time instead (:meth:`next_due_ns`, :meth:`step`), so
    that orders from outside (:meth:`submit`, :meth:`cancel`) arrive between the actions, in time."""

    def __init__(self, market: str, config: FlowConfig, seed: int, start_ns: int, end_ns: int, *,
                 record_fair: bool = False) -> None:
        if end_ns <= start_ns:
            raise ValueError(f"{market}: the session must end after it starts ({start_ns} .. {end_ns})")
        self.market = market
        self.config = c = config
        self.rng = rng = random.Random(seed)
        self.engine = MatchingEngine(market, tick=c.tick)
        self.start_ns, self.end_ns = start_ns, end_ns
        z = rng.gauss(0.0, 1.0)  # how popular the market is: the most popular tight_share are quoted tight
        tight = c.tight_share >= 1.0 or (c.tight_share > 0.0 and z > NormalDist().inv_cdf(1.0 - c.tight_share))
        lo, hi = c.tight_half_spread if tight else c.wide_half_spread
        half = rng.randint(lo, hi)
        activity = math.exp(c.activity_sd * z) * (c.tight_activity if tight else 1.0)
        n_makers = rng.randint(*c.makers)
        start_fair = rng.uniform(c.fair_min, c.fair_max)
        span = end_ns - start_ns
        close_ns = start_ns + int(span * rng.uniform(c.close_min, c.close_max))
        close_ns = min(max(close_ns, start_ns + 1), end_ns)
        self.profile = MarketProfile(market, tight, half, activity, n_makers, start_fair, close_ns)
        self._x = _logit(start_fair)  # the fair value's logit
        self._path: list[tuple[int, float]] | None = [(start_ns, _sigmoid(self._x))] if record_fair else None
        self._public = self._x  # the fair value as the public knows it: its value public_lag_s ago
        self._news: deque[tuple[int, float]] = deque()  # (due ns, logit move) not yet public
        self._lag_ns = round(c.public_lag_s * NS)
        self._flow = 0.0  # what the makers learned from the tape (logit), fading
        self._volatility, self._flow_memory_s = c.volatility, c.flow_memory_s
        self._t = start_ns  # time of the latent state
        self._regime = NORMAL
        step = -(-max(c.maker_level_step, 1) // c.tick) * c.tick
        self._level_step = step
        self._hysteresis = int(c.maker_requote * half) // c.tick * c.tick
        self._makers = [
            _Maker(f"mm{i}", rng.gauss(0.0, c.maker_bias_sd), _contracts(rng.uniform(*c.maker_size)))
            for i in range(n_makers)
        ]
        self._noise_owners = [f"noise{i}" for i in range(c.noise_accounts)]
        rates = (c.noise_take_rate, c.noise_limit_rate, c.informed_rate)
        self._arrival_rate = sum(rates) * activity
        self._arrival_cut = (rates[0] / sum(rates), (rates[0] + rates[1]) / sum(rates)) if sum(rates) else (0, 0)
        self._arrival_token = 0
        self._regime_token = 0
        self._heap: list[tuple[int, int, int, int]] = []
        self._order = 0
        self._phase = _NEW
        self._closed = False
        self._outside: set[int] = set()  # resting orders of outside owners (engine ids)
        self._outside_updates: list[Fill | Canceled] = []
        self._result: tuple[str, int] = ("void", 0)

    # --- latent state, for tests and tools ------------------------------------------------------------
    @property
    def fair(self) -> float:
        """The latent fair probability (as of the last action)."""
        return _sigmoid(self._x)

    @property
    def fair_path(self) -> list[tuple[int, float]] | None:
        """``(ts_ns, fair)`` at the start and after every move of the fair value, in time order (module
        docstring); None unless built with ``record_fair``."""
        return self._path

    @property
    def estimate(self) -> float:
        """The public estimate the makers quote around (as of the last action)."""
        return _sigmoid(self._estimate())

    def _estimate(self) -> float:
        return _clip(self._public + self._flow)

    @property
    def regime(self) -> str:
        return REGIMES[self._regime]

    # --- the run ----------------------------------------------------------------------------------------
    def steps(self) -> Iterator[tuple[int, list[Event]]]:
        """Run the market to settlement, yielding ``(ts_ns, events)`` per action that emitted something."""
        if self._phase:
            raise RuntimeError(f"{self.market}: a MarketFlow runs once; build a new one to run again")
        step = self.step
        while (entry := step()) is not None:
            if entry[1]:
                yield entry

    def next_due_ns(self) -> int | None:
        """When the next action is due: ``start_ns`` until the market has opened, then the earliest
        scheduled action; None once the market has settled (or the session ended first)."""
        if self._phase < _RUNNING:
            return self.start_ns
        heap = self._heap
        if self._phase == _FINISHED or not heap or heap[0][0] > self.end_ns:
            return None
        return heap[0][0]

    def step(self) -> tuple[int, list[Event]] | None:
        """Run the one action due next (at :meth:`next_due_ns`) and return ``(ts_ns, events)`` — events
        may be empty (an action that changed nothing, or one superseded) — or None when none is left.

        The first two steps open the market at ``start_ns``: ``activated`` (with the close time), then
        the makers quote and the whole book is a snapshot. :meth:`steps` is this, run to the end."""
        phase = self._phase
        if phase == _NEW:
            return self._activate()
        if phase == _ACTIVATED:
            return self._open()
        heap = self._heap
        if phase == _FINISHED or not heap or heap[0][0] > self.end_ns:
            self._phase = _FINISHED
            return None
        c, rng, engine = self.config, self.rng, self.engine
        t, _, kind, arg = heapq.heappop(heap)
        out: list[Event] = []
        if self._closed and kind < _CLOSE:
            return t, out
        if not self._closed:
            self._advance(t)  # the fair value stops at the close: it is what the market settles on
        if kind == _REFRESH:
            self._requote(arg, t, out)
            self._schedule(t + _exp_ns(rng, 1.0 / c.maker_refresh_s), _REFRESH, arg)
        elif kind == _ARRIVE:
            if arg == self._arrival_token:
                self._arrive(t, out)
                self._schedule_arrival(t)
        elif kind == _REACT:
            self._requote(arg, t, out)
        elif kind == _PUBLISH:  # a jump is public now (advance() applied it): every maker reacts
            for i, maker in enumerate(self._makers):
                if not maker.react_pending:
                    maker.react_pending = True
                    self._schedule(t + _exp_ns(rng, 1.0 / c.maker_react_s), _REACT, i)
        elif kind == _CAMPAIGN:
            self._informed(t, out)
            nxt = t + _exp_ns(rng, 1.0 / c.informed_campaign_s)
            if nxt < arg:
                self._schedule(nxt, _CAMPAIGN, arg)
        elif kind == _EXPIRE:
            canceled = engine.cancel(arg, t // 1_000_000)
            if canceled is not None:
                out.extend(canceled.events)
        elif kind == _REGIME:
            if arg == self._regime_token:
                if self._regime == NORMAL:
                    self._regime = BURST if rng.random() < c.burst_share else QUIET
                else:
                    self._regime = NORMAL
                self._schedule_regime(t)
                self._schedule_arrival(t)
        elif kind == _JUMP:
            self._move(t, rng.gauss(0.0, c.jump_sd))
            if self._lag_ns:
                self._schedule(t + self._lag_ns, _PUBLISH, 0)
                if c.informed_campaign_s:
                    self._schedule(t + _exp_ns(rng, 1.0 / c.informed_campaign_s), _CAMPAIGN, t + self._lag_ns)
            if c.burst_on_jump and self._regime != BURST:
                self._regime = BURST
                self._schedule_regime(t)
                self._schedule_arrival(t)
            self._schedule(t + _exp_ns(rng, c.jump_rate), _JUMP, 0)
        elif kind == _CLOSE:
            self._closed = True
            ts_ms = t // 1_000_000
            for canceled in engine.close(ts_ms):
                out.extend(canceled.events)
                if canceled.order_id in self._outside:
                    self._outside.discard(canceled.order_id)
                    self._outside_updates.append(canceled)
            out.append(MarketLifecycle(self.market, "deactivated", venue_ts_ms=ts_ms))
            self._schedule(t + self._settle_delay(t), _DETERMINE, 0)
        elif kind == _DETERMINE:
            yes = rng.random() < self.fair
            self._result = ("yes", PRICE_MAX) if yes else ("no", 0)
            out.append(MarketLifecycle(self.market, "determined", result=self._result[0],
                                       settlement_value=self._result[1], venue_ts_ms=t // 1_000_000))
            self._schedule(t + self._settle_delay(t), _SETTLE, 0)
        elif kind == _SETTLE:
            out.append(MarketLifecycle(self.market, "settled", result=self._result[0],
                                       settlement_value=self._result[1], venue_ts_ms=t // 1_000_000))
            self._phase = _FINISHED
        return t, out

    def _activate(self) -> tuple[int, list[Event]]:
        self._phase = _ACTIVATED
        t = self.start_ns
        return t, [MarketLifecycle(self.market, "activated", close_ts_ms=self.profile.close_ns // 1_000_000,
                                   venue_ts_ms=t // 1_000_000)]

    def _open(self) -> tuple[int, list[Event]]:
        self._phase = _RUNNING
        c, rng, t = self.config, self.rng, self.start_ns
        for i in range(len(self._makers)):
            self._requote(i, t, [])
        snapshot = self.engine.snapshot(t // 1_000_000)
        self._schedule(self.profile.close_ns, _CLOSE, 0)
        self._schedule_arrival(t)
        self._schedule_regime(t)
        if c.jump_rate > 0:
            self._schedule(t + _exp_ns(rng, c.jump_rate), _JUMP, 0)
        refresh_rate = 1.0 / c.maker_refresh_s
        for i in range(len(self._makers)):
            self._schedule(t + _exp_ns(rng, refresh_rate), _REFRESH, i)
        return t, [snapshot]

    # --- outside orders (the local exchange's clients) -------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True from the opening snapshot until the close."""
        return self._phase >= _RUNNING and not self._closed

    def submit(self, owner: str, side: str, price: int, count: int, ts_ns: int, **kw: Any) -> Placed:
        """An order from outside the model at ``ts_ns`` (not before the last action): it meets the
        participants' orders in the same engine, with true price-time priority, and the makers learn from
        its trades as from any other. ``kw`` are :meth:`MatchingEngine.submit`'s options. ``owner`` must
        not be a participant's name (``mm<i>``, ``noise<i>``, ``informed``).

        While it rests, the fills the participants' orders take from it and its cancel at the close are
        kept for :meth:`outside_updates`; the returned :class:`Placed` says what it did at once."""
        if owner == "informed" or owner.startswith(("mm", "noise")):
            raise ValueError(f"{self.market}: owner {owner!r} is a name of the model's participants")
        if not self._closed:
            self._advance(ts_ns)
        placed = self.engine.submit(owner, side, price, count, ts_ns // 1_000_000, **kw)  # type: ignore[arg-type]
        self._learn(placed, ts_ns)
        outside = self._outside
        for fill in placed.fills:  # an outside order may take from another outside order
            if not fill.remaining:
                outside.discard(fill.order_id)
        for canceled in placed.makers_canceled:
            outside.discard(canceled.order_id)
        if placed.remaining:
            outside.add(placed.order_id)  # type: ignore[arg-type]
        return placed

    def cancel(self, order_id: int, ts_ns: int) -> Canceled | None:
        """Cancel a resting outside order; None if it is not resting."""
        if order_id not in self._outside:
            return None
        self._outside.discard(order_id)
        return self.engine.cancel(order_id, ts_ns // 1_000_000)

    def amend(self, order_id: int, price: int, remaining: int, ts_ns: int, **kw: Any) -> Placed | None:
        """Amend a resting outside order (:meth:`MatchingEngine.amend`; ``kw`` its options); None if it is not
        resting. What it takes when it moves is a trade like any other: the makers learn from it."""
        if order_id not in self._outside:
            return None
        if not self._closed:
            self._advance(ts_ns)
        placed = self.engine.amend(order_id, price, remaining, ts_ns // 1_000_000, **kw)
        if placed is not None:
            self._learn(placed, ts_ns)
            self._track(placed)
        return placed

    def decrease(self, order_id: int, remaining: int, ts_ns: int) -> Placed | None:
        """Decrease a resting outside order (:meth:`MatchingEngine.decrease`); None if it is not resting."""
        if order_id not in self._outside:
            return None
        placed = self.engine.decrease(order_id, remaining, ts_ns // 1_000_000)
        if placed is not None and placed.status == "canceled":
            self._outside.discard(order_id)
        return placed

    def _track(self, placed: Placed) -> None:
        """Keep the set of resting outside orders after an amend: it may have filled, been stopped by self-trade
        prevention, or filled or canceled other outside orders."""
        outside = self._outside
        for fill in placed.fills:
            if not fill.remaining:
                outside.discard(fill.order_id)
        for canceled in placed.makers_canceled:
            outside.discard(canceled.order_id)
        if placed.status in ("filled", "canceled"):
            outside.discard(placed.order_id)  # type: ignore[arg-type]

    def outside_updates(self) -> list[Fill | Canceled]:
        """What the model's actions did to outside orders since the last call (the maker side of their
        fills, and their cancels at the close), in order; the list is handed over and cleared."""
        updates = self._outside_updates
        if updates:
            self._outside_updates = []
        return updates

    # --- scheduling ---------------------------------------------------------------------------------------
    def _schedule(self, t: int, kind: int, arg: int) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, kind, arg))

    def _mult(self) -> float:
        c = self.config
        return (c.quiet_mult, 1.0, c.burst_mult)[self._regime]

    def _schedule_arrival(self, t: int) -> None:
        self._arrival_token += 1
        rate = self._arrival_rate * self._mult()
        if rate > 0:
            self._schedule(t + _exp_ns(self.rng, rate), _ARRIVE, self._arrival_token)

    def _schedule_regime(self, t: int) -> None:
        c = self.config
        self._regime_token += 1
        mean = (c.quiet_mean_s, c.normal_mean_s, c.burst_mean_s)[self._regime]
        self._schedule(t + _exp_ns(self.rng, 1.0 / mean), _REGIME, self._regime_token)

    def _settle_delay(self, t: int) -> int:
        room = max(0, (self.end_ns - t) // 3)
        return min(int(self.config.settle_after_s * NS), room)

    # --- the latent model -----------------------------------------------------------------------------------
    def _advance(self, t: int) -> None:
        """Move the fair value forward to ``t``; publish the moves that are ``public_lag_s`` old; fade the
        flow-learned part of the estimate."""
        dt = (t - self._t) / NS
        if dt <= 0:
            return
        self._t = t
        if self._volatility:
            self._move(t, self._volatility * math.sqrt(dt) * self.rng.gauss(0.0, 1.0))
        news = self._news
        while news and news[0][0] <= t:
            move = news.popleft()[1]
            self._public += move
            flow = self._flow
            if flow * move > 0:  # what the tape had already told the makers is now public: absorb it
                self._flow = max(flow - move, 0.0) if flow > 0 else min(flow - move, 0.0)
        if self._flow:
            self._flow *= math.exp(-dt / self._flow_memory_s)

    def _move(self, t: int, dx: float) -> None:
        """The fair value moves now; the public learns of it ``public_lag_s`` later."""
        x = _clip(self._x + dx)
        if self._lag_ns:
            self._news.append((t + self._lag_ns, x - self._x))
        else:
            self._public += x - self._x
        self._x = x
        if self._path is not None:
            self._path.append((t, _sigmoid(x)))

    def _learn(self, placed: Placed, t: int) -> None:
        """Makers learn from the trades an order printed, and note their own fills."""
        if not placed.fills:
            return
        c = self.config
        for fill in placed.fills:
            if fill.is_taker:
                sign = 1.0 if fill.side == "bid" else -1.0
                self._flow += sign * c.maker_flow_impact * math.sqrt(fill.count / 100)
            if fill.owner[:2] == "mm":
                i = int(fill.owner[2:])
                maker = self._makers[i]
                maker.inventory += fill.count if fill.side == "bid" else -fill.count
                maker.filled = True
                if not fill.is_taker and not maker.react_pending:
                    maker.react_pending = True
                    self._schedule(t + _exp_ns(self.rng, 1.0 / c.maker_react_s), _REACT, i)

    # --- participants -----------------------------------------------------------------------------------------
    def _arrive(self, t: int, out: list[Event]) -> None:
        u = self.rng.random()
        take_cut, limit_cut = self._arrival_cut
        if u < take_cut:
            self._noise_take(t, out)
        elif u < limit_cut:
            self._noise_limit(t, out)
        else:
            self._informed(t, out)

    def _submit(self, t: int, out: list[Event], owner: str, side: str, price: int, count: int, **kw) -> Placed:
        placed = self.engine.submit(owner, side, price, count, t // 1_000_000, **kw)  # type: ignore[arg-type]
        out.extend(placed.events)
        self._learn(placed, t)
        if self._outside and placed.fills:
            self._note_outside(placed)
        return placed

    def _note_outside(self, placed: Placed) -> None:
        outside = self._outside
        for fill in placed.fills:
            if fill.order_id in outside and not fill.is_taker:
                self._outside_updates.append(fill)
                if not fill.remaining:
                    outside.discard(fill.order_id)

    def _noise_take(self, t: int, out: list[Event]) -> None:
        c, rng, engine = self.config, self.rng, self.engine
        owner = self._noise_owners[rng.randrange(c.noise_accounts)]
        count = _lognormal_count(rng, *c.noise_size)
        slip = c.tick * rng.randrange(3)
        if rng.random() < 0.5:
            ask = engine.best_ask()
            if ask is not None:
                self._submit(t, out, owner, "bid", min(ask + slip, PRICE_MAX - c.tick), count, tif="ioc")
        else:
            bid = engine.best_bid()
            if bid is not None:
                self._submit(t, out, owner, "ask", max(bid - slip, c.tick), count, tif="ioc")

    def _noise_limit(self, t: int, out: list[Event]) -> None:
        c, rng, engine = self.config, self.rng, self.engine
        tick = c.tick
        owner = self._noise_owners[rng.randrange(c.noise_accounts)]
        count = _lognormal_count(rng, *c.noise_size)
        bid, ask = engine.best_bid(), engine.best_ask()
        buy = rng.random() < 0.5
        if bid is not None and ask is not None and ask - bid > tick and rng.random() < c.noise_improve:
            price = bid + tick * rng.randint(1, (ask - bid) // tick - 1)  # strictly inside the spread
        else:
            touch = bid if buy else ask
            if touch is None:  # an empty side: rest about where the makers would quote it
                center = _sigmoid(self._estimate()) * PRICE_MAX
                half = self.profile.half_spread
                touch = _floor_tick(center - half, tick) if buy else _ceil_tick(center + half, tick)
            behind = tick * min(int(rng.expovariate(0.5)), 20)  # join the touch, or sit a few ticks behind
            price = touch - behind if buy else touch + behind
        price = min(max(price, tick), PRICE_MAX - tick)
        placed = self._submit(t, out, owner, "bid" if buy else "ask", price, count)
        if placed.remaining:
            self._schedule(t + _exp_ns(rng, 1.0 / c.noise_life_s), _EXPIRE, placed.order_id)  # type: ignore[arg-type]

    def _informed(self, t: int, out: list[Event]) -> None:
        c, rng, engine = self.config, self.rng, self.engine
        fair = _sigmoid(self._x) * PRICE_MAX
        edge = c.informed_edge
        ask, bid = engine.best_ask(), engine.best_bid()
        if ask is not None and fair - ask >= edge:
            limit = _floor_tick(fair - edge, c.tick) if c.informed_sweep else ask
            edges = (fair - ask) / max(edge, 1)
            side = "bid"
        elif bid is not None and bid - fair >= edge:
            limit = _ceil_tick(fair + edge, c.tick) if c.informed_sweep else bid
            edges = (bid - fair) / max(edge, 1)
            side = "ask"
        else:
            return
        median, sigma = c.informed_size
        count = _lognormal_count(rng, median * min(edges, c.informed_max_edges), sigma)
        limit = min(max(limit, c.tick), PRICE_MAX - c.tick)
        self._submit(t, out, "informed", side, limit, count, tif="ioc")

    def _requote(self, i: int, t: int, out: list[Event]) -> None:
        """Maker ``i`` moves its ladder to where its estimate says; unchanged prices keep their place."""
        c, engine = self.config, self.engine
        maker = self._makers[i]
        maker.react_pending = False
        ts_ms = t // 1_000_000
        tick, step, half = c.tick, self._level_step, self.profile.half_spread
        skew = min(max(c.maker_skew * maker.inventory / 100, -c.maker_skew_cap), c.maker_skew_cap)
        center = _sigmoid(self._estimate() + maker.bias - skew) * PRICE_MAX
        top_bid = min(max(_floor_tick(center - half, tick), tick), PRICE_MAX - 2 * tick)  # near 0 or 1: quote
        top_ask = max(min(_ceil_tick(center + half, tick), PRICE_MAX - tick), top_bid + tick)  # at the edge
        if maker.anchor is not None:
            old_bid, old_ask = maker.anchor
            if abs(top_bid - old_bid) <= self._hysteresis and abs(top_ask - old_ask) <= self._hysteresis:
                if not maker.filled:
                    return  # nothing moved and nothing traded: the ladder stands as it is
                top_bid, top_ask = old_bid, old_ask  # not worth moving: refill where it stands
        maker.anchor = (top_bid, top_ask)
        maker.filled = False
        want_bids = {p for k in range(c.maker_levels) if tick <= (p := top_bid - k * step) <= PRICE_MAX - tick}
        want_asks = {p for k in range(c.maker_levels) if tick <= (p := top_ask + k * step) <= PRICE_MAX - tick}
        for resting, want in ((maker.bids, want_bids), (maker.asks, want_asks)):
            for price in sorted(resting):
                order_id = resting[price]
                if not engine.is_resting(order_id):
                    del resting[price]
                elif price not in want:
                    del resting[price]
                    out.extend(engine.cancel(order_id, ts_ms).events)  # type: ignore[union-attr]
        for side, resting, want in (("bid", maker.bids, want_bids), ("ask", maker.asks, want_asks)):
            for price in sorted(want, reverse=side == "bid"):  # best first: a stale quote is taken at once
                if price in resting:
                    continue
                placed = self._submit(t, out, maker.owner, side, price, maker.size)
                if placed.remaining:
                    resting[price] = placed.order_id  # type: ignore[assignment]


def _clip(x: float) -> float:
    return _LOGIT_CAP if x > _LOGIT_CAP else -_LOGIT_CAP if x < -_LOGIT_CAP else x


def _floor_tick(price: float, tick: int) -> int:
    """The highest price on the tick grid at or below ``price`` (a bid's rounding)."""
    return math.floor(price / tick) * tick


def _ceil_tick(price: float, tick: int) -> int:
    """The lowest price on the tick grid at or above ``price`` (an ask's rounding)."""
    return math.ceil(price / tick) * tick


def _exp_ns(rng: random.Random, rate: float) -> int:
    """An exponential waiting time at ``rate`` per second, in whole nanoseconds (at least 1)."""
    return int(rng.expovariate(rate) * NS) + 1


def _contracts(n: float) -> int:
    """Whole contracts (at least one) as a count in 1/100 contract."""
    return max(1, round(n)) * 100


def _lognormal_count(rng: random.Random, median: float, sigma: float) -> int:
    return _contracts(median * math.exp(rng.gauss(0.0, sigma)) if sigma else median)
