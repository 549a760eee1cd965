"""Appends to a file log forever, printing ``ACK first last`` after each acknowledged batch.

Run by test_crash_safety.py, which kills it with SIGKILL at random moments. Event content is a
function of its seq, so the parent can check every record it finds.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from config import LogSettings
from runtime.events import BookDelta
from runtime.log import FileLog, SessionMeta


def event_for(seq: int) -> BookDelta:
    return BookDelta(market=f"KX-{seq % 7}", side="yes" if seq % 2 else "no", price=1 + seq % 9_999, delta=seq % 1000 - 500)


async def main(root: Path, seed: int) -> None:
    settings = LogSettings(sync="batch", segment_bytes=262_144)
    log = FileLog.open(root, settings, writable=True) if root.exists() else FileLog.create(root, SessionMeta(session_id="crash"), settings)
    rng = random.Random(seed)
    print(f"OPEN {log.last_seq}", flush=True)
    while True:
        size = rng.choice((1, 7, 100, 1_000, 3_000))
        first = log.last_seq + 1
        rng_ = await log.append([(seq, event_for(seq)) for seq in range(first, first + size)])
        print(f"ACK {rng_.first} {rng_.last}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
