"""Record framing under random damage: only documented errors, and never a record that was not written."""

from __future__ import annotations

import asyncio
import atexit
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from config import LogSettings
from runtime.log import FileLog, LogError, SessionMeta
from runtime.log import segments as fmt
from tests.log.contract import entries

ORIGINAL = [e for _, e in entries(300)]


def build(root: Path) -> bytes:
    async def write() -> None:
        log = FileLog.create(root, SessionMeta(session_id="prop"), LogSettings(sync="none"))
        for lo in range(0, 300, 30):
            await log.append(entries(30, lo))
        await log.close()

    asyncio.run(write())
    # as if the writer had died: the session still open, no closing seq recorded (the most permissive
    # case for a recovering writer, which may then truncate only a tail that was never acknowledged)
    meta = root / "session.json"
    meta.write_bytes(meta.read_bytes().replace(b'"status":"closed"', b'"status":"open"').replace(b'"last_seq":300', b'"last_seq":0'))
    return (root / fmt.segment_name(1)).read_bytes()


TEMPLATE_DIR = Path(tempfile.mkdtemp(prefix="tape-prop-"))
atexit.register(shutil.rmtree, TEMPLATE_DIR, ignore_errors=True)  # built at import (the strategies need it)
SEGMENT = build(TEMPLATE_DIR / "run")


def read_damaged(data: bytes, writable: bool) -> list:
    """Open a copy of the log whose segment holds ``data``; return what reads back, or the LogError."""
    root = Path(tempfile.mkdtemp(prefix="tape-prop-case-"))
    try:
        shutil.copytree(TEMPLATE_DIR / "run", root / "run")
        (root / "run" / fmt.segment_name(1)).write_bytes(data)

        async def read() -> list:
            log = FileLog.open(root / "run", LogSettings(sync="none"), writable=writable)
            try:
                return [r for batch in [b async for b in log.read()] for r in batch]
            finally:
                await log.close()

        try:
            return asyncio.run(read())
        except LogError as exc:
            return [exc]
    finally:
        shutil.rmtree(root)


def check(result: list) -> None:
    if result and isinstance(result[0], LogError):
        return
    assert [r.seq for r in result] == list(range(1, len(result) + 1))
    assert [r.event for r in result] == ORIGINAL[: len(result)], "a record that was never written came back"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_flipped_bytes_always_give_a_documented_error(data):
    """Every byte of a whole log is covered by a checksum: damage is never read, nor truncated away."""
    raw = bytearray(SEGMENT)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
    assume(bytes(raw) != SEGMENT)  # two flips of one byte can cancel out
    result = read_damaged(bytes(raw), writable=data.draw(st.booleans()))
    assert len(result) == 1 and isinstance(result[0], LogError), f"damage went unnoticed: {len(result)} records read"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(SEGMENT)), st.binary(max_size=64), st.booleans())
def test_truncation_and_garbage_tails_give_a_documented_error_or_a_true_prefix(cut, tail, writable):
    check(read_damaged(SEGMENT[:cut] + tail, writable))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_as_a_segment_never_crash_the_reader(blob):
    result = read_damaged(blob, writable=False)
    assert result == [] or isinstance(result[0], LogError)


def test_a_cut_inside_the_last_frame_keeps_every_whole_frame():
    """Truncating mid-frame (a torn write) keeps exactly the frames before it."""
    result = read_damaged(SEGMENT[:-5], writable=True)
    assert [r.seq for r in result] == list(range(1, 271))
