"""The order-flow model and whole synthetic sessions: deterministic per seed, consistent with the engine,
Kalshi-like (wide spreads on most markets, bursts, settlement on the fair value), and with informed flow
that leads the mid — the edge the RL environments are meant to learn."""

from __future__ import annotations

import math
from collections import defaultdict

import msgspec
import numpy as np
import pytest

from actors.book import OrderBook
from runtime.events import BookDelta, BookSnapshot, MarketInfo, MarketLifecycle, PublicTrade
from runtime.venues.sim import EPOCH_NS, FlowConfig, MarketFlow, SynthSession, derive_seed

HOUR = 3_600.0
ENCODER = msgspec.msgpack.Encoder()


def encoded(session: SynthSession) -> list[bytes]:
    return [ENCODER.encode((ts, event)) for ts, event in session.events()]


def flow(i: int, seed: int = 5, duration_s: float = HOUR, config: FlowConfig | None = None) -> MarketFlow:
    return MarketFlow(f"KXT-{i}", config or FlowConfig(), derive_seed(seed, "market", i), EPOCH_NS,
                      EPOCH_NS + round(duration_s * 1e9))


# --- determinism -------------------------------------------------------------------------------------
def test_the_same_seed_gives_the_same_events():
    """Two sessions built from one seed emit identical events, byte for byte once encoded."""
    assert encoded(SynthSession(11, 3, 900)) == encoded(SynthSession(11, 3, 900))


def test_another_seed_gives_other_events():
    assert encoded(SynthSession(11, 3, 900)) != encoded(SynthSession(12, 3, 900))


def test_a_markets_events_do_not_depend_on_the_other_markets():
    """Market i runs on its own seeded generator: adding markets to a session leaves its stream as it was."""
    small = [e for _, e in SynthSession(4, 2, 600).events() if getattr(e, "market", None) == "KXSIM-001"]
    large = [e for _, e in SynthSession(4, 6, 600).events() if getattr(e, "market", None) == "KXSIM-001"]
    assert small == large and len(small) > 10


def test_a_market_flow_runs_once():
    f = flow(0, duration_s=60)
    list(f.steps())
    with pytest.raises(RuntimeError, match="KXT-0: a MarketFlow runs once"):
        list(f.steps())


# --- the stream ----------------------------------------------------------------------------------------
def test_a_session_is_time_ordered_and_each_market_opens_snapshots_closes_and_settles():
    """Per market: activated (with its close time), a snapshot, book events, then the close — deltas that
    empty the book, deactivated, determined, settled — and nothing after; the whole stream is in time order."""
    session = SynthSession(8, 4, 1_800)
    events = list(session.events())
    assert [ts for ts, _ in events] == sorted(ts for ts, _ in events)
    assert all(session.start_ns <= ts <= session.end_ns for ts, _ in events)
    per_market = defaultdict(list)
    for ts, event in events:
        per_market[event.market].append((ts, event))  # type: ignore[attr-defined]
    assert sorted(per_market) == list(session.tickers)
    for market, stream in per_market.items():
        assert type(stream[0][1]) is MarketInfo and stream[0][0] == session.start_ns  # its definition comes first
        stream = stream[1:]
        kinds = [e.kind for _, e in stream if type(e) is MarketLifecycle]
        assert kinds == ["activated", "deactivated", "determined", "settled"], market
        first, second = stream[0][1], stream[1][1]
        assert type(first) is MarketLifecycle and first.kind == "activated" and first.close_ts_ms is not None
        assert type(second) is BookSnapshot and second.yes_bids and second.no_bids
        closed = next(i for i, (_, e) in enumerate(stream) if type(e) is MarketLifecycle and e.kind == "deactivated")
        assert stream[closed][0] // 1_000_000 == first.close_ts_ms
        assert all(type(e) is MarketLifecycle for _, e in stream[closed:])
        book = OrderBook(market)
        for seq, (ts, e) in enumerate(stream[:closed], start=1):
            assert book.handle(seq, ts, e) == ()
        assert book.bids() == [] and book.asks() == [], "the close empties the book"
        determined, settled = (e for _, e in stream if type(e) is MarketLifecycle and e.kind in ("determined", "settled"))
        assert (determined.result, determined.settlement_value) == (settled.result, settled.settlement_value)
        assert (settled.result, settled.settlement_value) in (("yes", 10_000), ("no", 0))
        assert all(e.venue_ts_ms == ts // 1_000_000 for ts, e in stream)  # type: ignore[attr-defined]


def test_the_emitted_deltas_fold_into_the_engines_own_book_at_every_step():
    """After each step of each market, ``actors.book`` folded over every event so far equals the engine's book."""
    steps = 0
    for i in range(6):
        f = flow(i, seed=21, duration_s=1_800)
        book = OrderBook(f.market)
        seq = 0
        for ts, events in f.steps():
            for event in events:
                seq += 1
                assert book.handle(seq, ts, event) == ()
            if not f.engine.is_open:
                break
            state = book.snapshot()
            assert (state.yes_bids, state.no_bids) == f.engine.levels()
            steps += 1
    assert steps > 1_000


def test_the_book_never_crosses():
    for i in range(6):
        f = flow(i, seed=22, duration_s=1_800)
        for _, _ in f.steps():
            bid, ask = f.engine.best_bid(), f.engine.best_ask()
            assert bid is None or ask is None or bid < ask


# --- Kalshi-like ---------------------------------------------------------------------------------------
def median_spreads(session: SynthSession, every_s: float = 10.0) -> dict[str, float]:
    """Each market's median spread (1/10,000 dollar) sampled every ``every_s`` while it trades; an empty
    side counts as the widest spread."""
    books = {m: OrderBook(m) for m in session.tickers}
    samples: dict[str, list[int]] = {m: [] for m in session.tickers}
    closed: set[str] = set()
    step = round(every_s * 1e9)
    nxt = session.start_ns + step
    for seq, (ts, event) in enumerate(session.events(), start=1):
        while ts >= nxt:
            for m, book in books.items():
                if m not in closed:
                    spread = book.spread()
                    samples[m].append(10_000 if spread is None else spread)
            nxt += step
        market = event.market  # type: ignore[attr-defined]
        if type(event) is MarketLifecycle and event.kind == "deactivated":
            closed.add(market)
        books[market].handle(seq, ts, event)
    return {m: float(np.median(v)) for m, v in samples.items()}


def test_most_markets_have_spreads_above_20_cents_and_the_tight_ones_are_tight():
    """As on Kalshi, about 80% of markets quote more than 20 cents wide: a fifth of the markets are drawn
    tight (their median spread within 10 cents); nearly every market drawn wide keeps a median spread
    above 20 cents, noise orders inside its spread notwithstanding."""
    drawn = [flow(i, seed=3).profile.tight for i in range(2_000)]
    assert abs(sum(drawn) / len(drawn) - FlowConfig().tight_share) < 0.03
    session = SynthSession(7, 40, HOUR)
    spreads = median_spreads(session)
    wide = [spreads[f.market] for f in session.flows if not f.profile.tight]
    tight = [spreads[f.market] for f in session.flows if f.profile.tight]
    share = sum(spread > 2_000 for spread in spreads.values()) / len(spreads)
    print(f"\nshare of markets with median spread > 20c: {share:.2f}; tight markets' median spreads: {tight}")
    assert sum(spread > 2_000 for spread in wide) >= 0.9 * len(wide)
    assert tight and max(tight) <= 1_000


def test_activity_comes_in_bursts_and_quiet_periods():
    """The regime chain scales arrival rates: trades per minute in bursts far exceed those in quiet periods."""
    per_regime: dict[str, list[int]] = defaultdict(list)
    for i in range(8):
        f = flow(i, seed=31, duration_s=2 * HOUR)
        minute, trades, regime = 0, 0, f.regime
        for ts, events in f.steps():
            m = (ts - EPOCH_NS) // 60_000_000_000
            if m != minute:
                per_regime[regime].append(trades)
                minute, trades = m, 0
            regime = f.regime
            trades += sum(type(e) is PublicTrade for e in events)
    rates = {r: float(np.mean(v)) for r, v in per_regime.items()}
    print(f"\ntrades per market-minute by regime: {rates}")
    assert set(rates) == {"quiet", "normal", "burst"}
    assert rates["burst"] > 3 * rates["quiet"]


def test_markets_settle_yes_about_as_often_as_their_final_fair_value_says():
    """Settlement is a seeded draw with P(yes) = the fair value at the close: over many markets the share
    that settle YES matches the mean final fair value, and high-fair markets settle YES more often."""
    config = FlowConfig(fair_min=0.05, fair_max=0.95)
    fairs, results = [], []
    for i in range(600):
        f = flow(i, seed=41, duration_s=30, config=config)
        settled = [e for _, events in f.steps() for e in events if type(e) is MarketLifecycle and e.kind == "settled"]
        fairs.append(f.fair)
        results.append(settled[0].result == "yes")
    fairs_a, yes = np.array(fairs), np.array(results)
    assert abs(yes.mean() - fairs_a.mean()) < 0.05
    assert yes[fairs_a > 0.7].mean() > 0.6 > 0.4 > yes[fairs_a < 0.3].mean()


def test_the_fair_value_stops_at_the_close():
    f = flow(0, duration_s=600)
    at_close = None
    for _, events in f.steps():
        if any(type(e) is MarketLifecycle and e.kind == "deactivated" for e in events):
            at_close = f.fair
    assert at_close is not None and f.fair == at_close


# --- the learnable edge ----------------------------------------------------------------------------------
def flow_and_next_mid_change(session: SynthSession, window_s: float) -> list[tuple[bool, int, int]]:
    """Per market and window while it trades: (tight market, signed trade flow in the window (contracts
    bought minus sold by takers, in 1/100 contract), change of the mid (x2) from the window's end to the
    next window's end)."""
    window = round(window_s * 1e9)
    books = {m: OrderBook(m) for m in session.tickers}
    tight = {f.market: f.profile.tight for f in session.flows}
    signed: dict[str, dict[int, int]] = {m: defaultdict(int) for m in session.tickers}
    mids: dict[str, dict[int, int | None]] = {m: {} for m in session.tickers}
    seen = dict.fromkeys(session.tickers, 0)  # windows whose end mid is recorded
    closed: set[str] = set()
    for seq, (ts, event) in enumerate(session.events(), start=1):
        market = event.market  # type: ignore[attr-defined]
        w = (ts - session.start_ns) // window
        book = books[market]
        while seen[market] < w and market not in closed:
            mids[market][seen[market]] = book.mid2()  # the mid as the window ended
            seen[market] += 1
        if type(event) is MarketLifecycle and event.kind == "deactivated":
            closed.add(market)
        elif type(event) is PublicTrade:
            signed[market][w] += event.count if event.taker_side == "yes" else -event.count
        book.handle(seq, ts, event)
    rows = []
    for m in session.tickers:
        for w, mid in mids[m].items():
            nxt = mids[m].get(w + 1)
            if mid is not None and nxt is not None:
                rows.append((tight[m], signed[m].get(w, 0), nxt - mid))
    return rows


def test_signed_trade_flow_leads_the_mid():
    """Informed traders take liquidity ahead of the public estimate's move, so the signed trade flow over
    a 30-second window correlates clearly and positively with the mid's change over the next window:
    strongly on the tight markets (where the informed can trade), and over all markets pooled."""
    rows = np.array(flow_and_next_mid_change(SynthSession(2026, 40, 2 * HOUR), window_s=30), dtype=float)
    tight = rows[:, 0] == 1

    def corr(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.corrcoef(x, y)[0, 1])

    pooled, on_tight, on_wide = corr(rows[:, 1], rows[:, 2]), corr(rows[tight, 1], rows[tight, 2]), \
        corr(rows[~tight, 1], rows[~tight, 2])
    sign_pooled, sign_tight = corr(np.sign(rows[:, 1]), rows[:, 2]), corr(np.sign(rows[tight, 1]), rows[tight, 2])
    print(f"\nflow -> next mid change over {len(rows)} windows ({int(tight.sum())} on tight markets): "
          f"corr pooled {pooled:.3f}, tight {on_tight:.3f}, wide {on_wide:.3f}; "
          f"sign of flow: pooled {sign_pooled:.3f}, tight {sign_tight:.3f}")
    assert on_tight > 0.4
    assert pooled > 0.1
    assert sign_tight > 0.05
    assert not math.isnan(on_wide)


def test_without_informed_traders_flow_does_not_lead():
    """The edge comes from the informed traders: without them the same correlation vanishes."""
    config = FlowConfig(informed_rate=0.0, informed_campaign_s=0.0)
    rows = np.array(flow_and_next_mid_change(SynthSession(2026, 40, 2 * HOUR, config=config), window_s=30),
                    dtype=float)
    tight = rows[:, 0] == 1
    on_tight = float(np.corrcoef(rows[tight, 1], rows[tight, 2])[0, 1])
    print(f"\nwithout informed traders: flow -> next mid change on tight markets {on_tight:.3f}")
    assert abs(on_tight) < 0.15


# --- settings ---------------------------------------------------------------------------------------------
def test_a_config_with_inconsistent_ranges_is_refused_with_what_is_wrong():
    with pytest.raises(ValueError, match="FlowConfig: tight_half_spread: the low end 500 exceeds the high end 100"):
        FlowConfig(tight_half_spread=(500, 100))
    with pytest.raises(ValueError, match="fair_min must be <= fair_max"):
        FlowConfig(fair_min=0.9, fair_max=0.1)


def test_a_config_decodes_from_plain_data_and_refuses_unknown_or_out_of_range_fields():
    assert msgspec.convert({"jump_rate": 0.01}, FlowConfig).jump_rate == 0.01
    with pytest.raises(msgspec.ValidationError, match="jump_rat"):
        msgspec.convert({"jump_rat": 0.01}, FlowConfig)
    with pytest.raises(msgspec.ValidationError, match="tight_share"):
        msgspec.convert({"tight_share": 1.5}, FlowConfig)


def test_a_session_needs_markets_and_time():
    with pytest.raises(ValueError, match="at least one market"):
        SynthSession(1, 0, 60)
    with pytest.raises(ValueError, match="the duration must be positive"):
        SynthSession(1, 1, 0)


def test_a_delta_never_names_a_price_off_the_grid():
    """Participants' prices are converted to ticks deterministically: every level is a whole cent."""
    for _, event in SynthSession(9, 5, 1_800).events():
        if type(event) is BookDelta:
            assert event.price % 100 == 0 and 0 < event.price < 10_000
        elif type(event) is PublicTrade:
            assert event.yes_price % 100 == 0 and event.count > 0
