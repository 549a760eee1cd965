"""Many markets' order books as one state machine, for hosting them in one actor.

A Ray actor is a process (tens of MB): one per market fits tens of markets on a small machine, not the
hundreds a Kalshi collection session spans. :class:`BookShard` holds one :class:`~actors.book.OrderBook`
per market of its shard and hands each event to its market's book (``SeqGapDetected`` to every book it
names), so a shard derives exactly what its books would, in the same order. No logic of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from runtime.events import Event, SeqGapDetected

from .book import BookState, OrderBook
from .machine import NOTHING

__all__ = ["BookShard", "BookShardSnapshot"]


class BookShardSnapshot(msgspec.Struct, frozen=True):
    books: tuple[BookState, ...]  # in the shard's market order


class BookShard:
    """The books of ``markets`` (see the module docstring)."""

    def __init__(self, markets: Sequence[str]) -> None:
        self.markets = tuple(markets)
        self.books = {m: OrderBook(m) for m in self.markets}

    def handle(self, seq: int, ts_ns: int, event: Event) -> Sequence[Event]:
        if type(event) is SeqGapDetected:
            out: list[Event] = []
            for market in event.markets:
                book = self.books.get(market)
                if book is not None:
                    out.extend(book.handle(seq, ts_ns, event))
            return out or NOTHING
        book = self.books.get(getattr(event, "market", None))  # type: ignore[arg-type]
        return NOTHING if book is None else book.handle(seq, ts_ns, event)

    def snapshot(self) -> BookShardSnapshot:
        return BookShardSnapshot(tuple(self.books[m].snapshot() for m in self.markets))

    @classmethod
    def restore(cls, snap: BookShardSnapshot) -> BookShard:
        shard = cls([b.market for b in snap.books])
        shard.books = {b.market: OrderBook.restore(b) for b in snap.books}
        return shard
