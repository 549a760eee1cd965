"""Kalshi's rate limits as one pure token-bucket model, for our client, the local exchange and the paper matcher.

Kalshi meters every request in **tokens** from two independent buckets per account, ``read`` and ``write``
(docs.kalshi.com, "Rate limits"): each request takes its endpoint's cost from its bucket; a bucket refills
continuously at its tier's budget per second, up to its capacity; a request the bucket cannot cover is refused
with 429 (no ``Retry-After``) and takes nothing.

=========  =====================  ======================
tier       read tokens/s (cap)    write tokens/s (cap)
=========  =====================  ======================
basic      200 (200)              100 (200)
advanced   300 (300)              300 (600)
premier    1,000 (1,000)          1,000 (2,000)
paragon    2,000 (2,000)          2,000 (4,000)
prime      4,000 (4,000)          4,000 (8,000)
=========  =====================  ======================

The write bucket holds two seconds of budget (Kalshi: "so idle traffic builds up headroom you can spend in a
burst"); the read bucket is taken to hold one second (the docs say nothing more for it). What a request costs
(:func:`request_cost`): 10 tokens by default; a cancel 2 (batch cancels are billed 2 per order: "each cancel
counts as 0.2 transactions"); a batch create 10 per order ("a batch costs the same as making each call
individually"). Writes are order placement, amends, decreases, cancels and order groups; every other request
reads. Kalshi also lists single-order reads as cheaper than the default without saying by how much: they cost 10
here (the conservative side for a client).

**Pure and exact.** :class:`TokenBucket` never reads a clock: every method takes the time ``now_ns`` as an
argument, so the same code paces our client (wall time), meters the local exchange (wall time) and limits the
paper matcher (event time, deterministically: a replay refuses exactly what the session refused). Levels are
kept in nano-tokens (a token is 10^9 of them), so refill over ``dt`` ns at ``rate`` tokens/s is ``rate * dt``
nano-tokens, exactly; no float touches it. A time earlier than the bucket's last one refills nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, NamedTuple, get_args

import msgspec

__all__ = [
    "CANCEL_COST",
    "DEFAULT_COST",
    "TIERS",
    "TIER_NAMES",
    "BucketName",
    "BucketState",
    "Cost",
    "RateLimits",
    "RateLimitsSnapshot",
    "Tier",
    "TierName",
    "TokenBucket",
    "request_cost",
    "tier",
]

NANO: Final = 1_000_000_000  # nano-tokens per token, and ns per second
DEFAULT_COST: Final = 10
CANCEL_COST: Final = 2

BucketName = Literal["read", "write"]
TierName = Literal["basic", "advanced", "premier", "paragon", "prime"]
TIER_NAMES: Final[tuple[str, ...]] = get_args(TierName)


class Tier(msgspec.Struct, frozen=True):
    """One access tier: each bucket's budget (tokens per second) and capacity (tokens)."""

    name: str
    read_per_s: int
    write_per_s: int
    read_capacity: int
    write_capacity: int

    def rate(self, bucket: BucketName) -> int:
        return self.read_per_s if bucket == "read" else self.write_per_s

    def capacity(self, bucket: BucketName) -> int:
        return self.read_capacity if bucket == "read" else self.write_capacity


def _tier(name: str, per_s: int, write_per_s: int | None = None) -> Tier:
    write = per_s if write_per_s is None else write_per_s
    return Tier(name, per_s, write, read_capacity=per_s, write_capacity=2 * write)


TIERS: Final[Mapping[str, Tier]] = {t.name: t for t in (
    _tier("basic", 200, 100), _tier("advanced", 300), _tier("premier", 1_000), _tier("paragon", 2_000),
    _tier("prime", 4_000))}


def tier(name: str) -> Tier:
    """The tier of that name; ``ValueError`` listing the valid ones otherwise."""
    found = TIERS.get(name)
    if found is None:
        raise ValueError(f"unknown rate-limit tier {name!r} (valid values: {', '.join(map(repr, TIER_NAMES))})")
    return found


# --- what a request costs --------------------------------------------------------------------------------------
class Cost(NamedTuple):
    bucket: BucketName
    tokens: int


_ORDERS: Final = ("/portfolio/events/orders", "/portfolio/orders")  # V2, and the deprecated V1 endpoints


def request_cost(method: str, path: str, items: int = 1) -> Cost:
    """What a request costs: its bucket and tokens. ``path`` is under ``/trade-api/v2`` (a full path is read the
    same way), without the query; ``items`` is the number of orders of a batch create or cancel."""
    method = method.upper()
    path = path.split("?", 1)[0].rstrip("/")
    path = path[path.find("/trade-api/v2") + len("/trade-api/v2"):] if "/trade-api/v2" in path else path
    if method == "GET" or method == "HEAD":
        return Cost("read", DEFAULT_COST)
    n = max(1, items)
    for base in _ORDERS:
        if path == base + "/batched":
            return Cost("write", (CANCEL_COST if method == "DELETE" else DEFAULT_COST) * n)
        if path.startswith(base + "/") and method == "DELETE" and path.count("/") == base.count("/") + 1:
            return Cost("write", CANCEL_COST)  # one cancel
        if path == base or path.startswith(base + "/"):
            return Cost("write", DEFAULT_COST)  # create, amend, decrease
    if path.startswith("/portfolio/order_groups") or path.startswith("/communications/quotes"):
        return Cost("write", DEFAULT_COST)
    return Cost("read", DEFAULT_COST)


# --- the bucket ----------------------------------------------------------------------------------------------
class BucketState(msgspec.Struct, frozen=True, array_like=True):
    """A bucket's level (nano-tokens; negative only in a client's model, after :meth:`TokenBucket.withhold`) as
    of ``at_ns``."""

    level: int
    at_ns: int | None = None


class TokenBucket:
    """One token bucket: ``rate`` tokens per second up to ``capacity`` tokens; starts full. Every method takes the
    time (ns, on any clock that only moves forward) as an argument."""

    __slots__ = ("at_ns", "capacity", "level", "rate")

    def __init__(self, rate: int, capacity: int, state: BucketState | None = None) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"a bucket needs a positive rate and capacity, got {rate} tokens/s, {capacity} tokens")
        self.rate = rate
        self.capacity = capacity
        self.level = capacity * NANO if state is None else state.level
        self.at_ns: int | None = None if state is None else state.at_ns

    def __repr__(self) -> str:
        return f"TokenBucket({self.rate}/s, {self.level / NANO:g} of {self.capacity} tokens at {self.at_ns})"

    def _refill(self, now_ns: int) -> None:
        if self.at_ns is not None and now_ns > self.at_ns:
            self.level = min(self.capacity * NANO, self.level + self.rate * (now_ns - self.at_ns))
        if self.at_ns is None or now_ns > self.at_ns:
            self.at_ns = now_ns

    def tokens(self, now_ns: int) -> int:
        """Whole tokens in the bucket at ``now_ns``."""
        self._refill(now_ns)
        return self.level // NANO

    def wait_ns(self, now_ns: int, tokens: int, headroom_ns: int = 0) -> int:
        """How long from ``now_ns`` until the bucket holds ``tokens`` plus ``headroom_ns`` of refill (0: now).
        The headroom is capped so that the whole need never exceeds the capacity."""
        self._check(tokens)
        self._refill(now_ns)
        need = min(tokens * NANO + self.rate * max(0, headroom_ns), self.capacity * NANO)
        short = need - self.level
        return 0 if short <= 0 else -(-short // self.rate)

    def take(self, now_ns: int, tokens: int) -> bool:
        """Take ``tokens`` if the bucket holds them at ``now_ns`` (a venue admitting a request); else take
        nothing and return False (the venue's 429)."""
        self._check(tokens)
        self._refill(now_ns)
        if self.level < tokens * NANO:
            return False
        self.level -= tokens * NANO
        return True

    def full(self, now_ns: int) -> bool:
        self._refill(now_ns)
        return self.level >= self.capacity * NANO

    def withhold(self, ns: int) -> None:
        """Take back ``ns`` of refill, at most a bucket's worth (a client that learns the venue's bucket started
        refilling later than its own); the level may go below zero."""
        self.level -= min(self.rate * max(0, ns), self.capacity * NANO)

    def drain(self, now_ns: int) -> None:
        """Empty the bucket at ``now_ns`` (the venue said 429: it holds less than we thought)."""
        self._refill(now_ns)
        self.level = min(self.level, 0)

    def state(self) -> BucketState:
        return BucketState(self.level, self.at_ns)

    def _check(self, tokens: int) -> None:
        if not 0 < tokens <= self.capacity:
            raise ValueError(f"a request of {tokens} tokens can never pass a bucket of {self.capacity} "
                             f"({'split the batch' if tokens > self.capacity else 'a cost is positive'})")


class RateLimitsSnapshot(msgspec.Struct, frozen=True, array_like=True):
    tier: str
    read: BucketState
    write: BucketState


class RateLimits:
    """One account's two buckets under a tier."""

    __slots__ = ("buckets", "tier")

    def __init__(self, limits: Tier | str, snapshot: RateLimitsSnapshot | None = None) -> None:
        self.tier = limits if isinstance(limits, Tier) else tier(limits)
        t = self.tier
        self.buckets: dict[BucketName, TokenBucket] = {
            "read": TokenBucket(t.read_per_s, t.read_capacity, None if snapshot is None else snapshot.read),
            "write": TokenBucket(t.write_per_s, t.write_capacity, None if snapshot is None else snapshot.write),
        }

    def __repr__(self) -> str:
        return f"RateLimits({self.tier.name!r}, read={self.buckets['read']!r}, write={self.buckets['write']!r})"

    def take(self, now_ns: int, cost: Cost) -> bool:
        return self.buckets[cost.bucket].take(now_ns, cost.tokens)

    def wait_ns(self, now_ns: int, cost: Cost, headroom_ns: int = 0) -> int:
        return self.buckets[cost.bucket].wait_ns(now_ns, cost.tokens, headroom_ns)

    def drain(self, now_ns: int, bucket: BucketName) -> None:
        self.buckets[bucket].drain(now_ns)

    def snapshot(self) -> RateLimitsSnapshot:
        return RateLimitsSnapshot(self.tier.name, self.buckets["read"].state(), self.buckets["write"].state())

    @classmethod
    def restore(cls, snap: RateLimitsSnapshot) -> RateLimits:
        return cls(snap.tier, snap)
