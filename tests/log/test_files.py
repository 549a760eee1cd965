"""The file backend's own guarantees: torn tails, damage, headers, locking, rotation, sync policies."""

from __future__ import annotations

import asyncio
import errno
import os
import struct
from pathlib import Path

import pytest

from config import LogSettings
from runtime.log import (
    CorruptLogError,
    FileLog,
    LogBrokenError,
    LogLockedError,
    NotALogError,
    SessionMeta,
    create_log,
    open_log,
)
from runtime.log import segments as fmt
from runtime.log.tools import repair_log, verify_log
from tests.log.contract import entries, read_all

SMALL = LogSettings(sync="batch", segment_bytes=65_536)


async def make(tmp_path: Path, batches: int = 10, size: int = 100, settings: LogSettings = SMALL) -> Path:
    log = await create_log(tmp_path, SessionMeta(session_id="run"), settings)
    for i in range(batches):
        await log.append(entries(size, i * size))
    await log.close()
    return tmp_path / "run"


def segs(run: Path) -> list[Path]:
    return sorted(run.glob("*.seg"))


# -- torn tails and damage ----------------------------------------------------------------------------
async def test_a_torn_tail_is_truncated_by_the_next_writer_and_reported(tmp_path):
    """Given a log whose last append was cut short, when a writer opens it, the tail is dropped and said so."""
    run = await make(tmp_path, batches=3)
    seg = segs(run)[-1]
    whole = seg.stat().st_size
    partial = fmt.encode_frame(301, [(301, 5, entries(1)[0][1])])[:-7]
    with open(seg, "ab") as f:
        f.write(partial)
    log = await open_log(run, mode="a")
    assert log.recovery is not None
    assert log.recovery.truncated_bytes == len(partial)
    assert log.recovery.truncated_at == f"{seg} at byte offset {whole}"
    assert seg.stat().st_size == whole
    assert log.last_seq == 300
    assert await log.append(entries(1)) == (301, 301)
    await log.close()


async def test_zero_bytes_after_the_last_frame_are_a_torn_tail(tmp_path):
    """A crash can leave the file extended with zeros; that is torn, not damage."""
    run = await make(tmp_path, batches=2)
    with open(segs(run)[-1], "ab") as f:
        f.write(b"\x00" * 4096)
    log = await open_log(run, mode="a")
    assert log.recovery.truncated_bytes == 4096
    await log.close()


async def test_a_read_only_open_never_truncates(tmp_path):
    """Readers leave a torn tail in place (a writer may still be writing it) and read what is whole."""
    run = await make(tmp_path, batches=2)
    seg = segs(run)[-1]
    with open(seg, "ab") as f:
        f.write(b"\x07" * 10)
    size = seg.stat().st_size
    log = await open_log(run)
    assert len(await read_all(log)) == 200
    await log.close()
    assert seg.stat().st_size == size


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


async def test_a_flipped_byte_in_the_middle_is_refused_naming_segment_and_offset(tmp_path):
    """Damage to acknowledged data is never truncated away: the writer refuses, naming where."""
    run = await make(tmp_path, batches=3, settings=LogSettings())
    seg = segs(run)[0]
    frame2 = fmt.HEADER_SIZE + fmt.FRAME_SIZE + fmt.FRAME.unpack_from(seg.read_bytes(), fmt.HEADER_SIZE)[1]
    flip(seg, frame2 + fmt.FRAME_SIZE + 50)
    with pytest.raises(CorruptLogError) as info:
        await open_log(run, mode="a")
    assert str(info.value).startswith(f"corrupt log: {seg} at byte offset {frame2}: checksum mismatch in the frame of seqs 101..200.")
    assert "tape log repair" in str(info.value)


async def test_reading_stops_at_damage_with_the_same_error(tmp_path):
    """A read-only reader gets every record before the damage, then the error naming it."""
    run = await make(tmp_path, batches=3, settings=LogSettings())
    seg = segs(run)[0]
    frame2 = fmt.HEADER_SIZE + fmt.FRAME_SIZE + fmt.FRAME.unpack_from(seg.read_bytes(), fmt.HEADER_SIZE)[1]
    flip(seg, frame2 + fmt.FRAME_SIZE + 50)
    log = await open_log(run)
    got = []
    with pytest.raises(CorruptLogError, match=f"at byte offset {frame2}"):
        async for batch in log.read():
            got.extend(batch)
    assert [r.seq for r in got] == list(range(1, 101))


async def test_damage_in_a_sealed_segment_is_found_by_reading_and_verify(tmp_path):
    """Sealed segments are trusted on open (for speed) but every read and verify checks their checksums."""
    run = await make(tmp_path, batches=40)
    assert len(segs(run)) >= 3
    first = segs(run)[0]
    flip(first, first.stat().st_size - 10)
    log = await open_log(run, mode="a")  # the active segment is sound: writing may go on
    with pytest.raises(CorruptLogError, match=str(first)):
        await read_all(log)
    report = await verify_log(log)
    assert not report.ok and report.problems[0].where == str(first)
    await log.close()


async def test_a_damaged_frame_header_is_damage_not_a_torn_tail(tmp_path):
    """A frame length damaged to point past the end fails the header checksum: refused, never truncated."""
    run = await make(tmp_path, batches=3, settings=LogSettings())
    seg = segs(run)[0]
    with open(seg, "r+b") as f:
        f.seek(fmt.HEADER_SIZE + 4)
        f.write(struct.pack("<I", 10_000_000))
    with pytest.raises(CorruptLogError, match=f"{seg} at byte offset {fmt.HEADER_SIZE}: frame header checksum mismatch"):
        await open_log(run, mode="a")


async def test_a_damaged_header_of_the_last_frame_is_never_truncated_away(tmp_path):
    """One flipped bit in the last acknowledged frame's header: the writer refuses instead of truncating."""
    run = await make(tmp_path, batches=3, settings=LogSettings())
    seg = segs(run)[0]
    data = seg.read_bytes()
    last = fmt.HEADER_SIZE
    for _ in range(2):  # walk to the third frame
        last += fmt.FRAME_SIZE + fmt.FRAME.unpack_from(data, last)[1]
    flip(seg, last + 5)
    with pytest.raises(CorruptLogError, match="frame header checksum mismatch"):
        await open_log(run, mode="a")
    assert seg.read_bytes()[:last] == data[:last] and len(seg.read_bytes()) == len(data)


async def test_a_writer_never_truncates_below_the_seq_the_session_was_closed_at(tmp_path):
    """If a closed session's tail is cut (lost writes, a copy cut short), reopening refuses to write over it."""
    run = await make(tmp_path, batches=3, settings=LogSettings())
    seg = segs(run)[0]
    with open(seg, "r+b") as f:
        f.truncate(seg.stat().st_size - 10)
    with pytest.raises(CorruptLogError, match="the session was closed at seq 300 and only 200 are whole"):
        await open_log(run, mode="a")


async def test_a_segment_whose_creation_was_cut_short_is_dropped(tmp_path):
    """A crash while creating the next segment leaves at most a headerless file: the writer removes it."""
    run = await make(tmp_path, batches=3, settings=LogSettings())
    stray = run / fmt.segment_name(301)
    stray.write_bytes(fmt.MAGIC[:5])
    reader = await open_log(run)
    assert reader.last_seq == 300
    log = await open_log(run, mode="a")
    assert not stray.exists() and await log.append(entries(1)) == (301, 301)
    await log.close()


async def test_damage_in_an_early_segment_leaves_what_precedes_it_readable_and_repairable(tmp_path):
    """With its index gone and a byte flipped, the first segment stops reading there; repair salvages it."""
    run = await make(tmp_path, batches=40)
    first = segs(run)[0]
    first.with_suffix(".idx").unlink()
    flip(first, first.stat().st_size - 10)
    log = await open_log(run)
    with pytest.raises(CorruptLogError, match=str(first)):
        await read_all(log)
    report = await repair_log(log, lambda meta: create_log(tmp_path / "fixed", meta))
    assert report.salvaged > 0 and report.damage.where == str(first)


async def test_repair_salvages_everything_before_the_damage(tmp_path):
    """`repair` copies the records before the first damage into a new, valid log."""
    run = await make(tmp_path, batches=3, settings=LogSettings())
    seg = segs(run)[0]
    frame3 = seg.stat().st_size - 1
    flip(seg, frame3)
    src = await open_log(run)
    report = await repair_log(src, lambda meta: create_log(tmp_path / "fixed", meta))
    assert report.salvaged == 200 and report.damage is not None and report.damage.where == str(seg)
    fixed = await open_log(tmp_path / "fixed" / "run")
    assert (await verify_log(fixed)).ok
    assert [r.event for r in await read_all(fixed)] == [e for _, e in entries(200)]
    assert await (await open_log(tmp_path / "fixed" / "run", mode="a")).append(entries(1)) == (201, 201)


# -- headers and what is not a log ---------------------------------------------------------------------
async def test_a_directory_that_is_not_a_log_is_named(tmp_path):
    with pytest.raises(NotALogError, match=f"^{tmp_path}: not a tape log \\(no session.json\\)$"):
        await open_log(tmp_path)
    with pytest.raises(NotALogError, match="no such directory"):
        await open_log(tmp_path / "missing")


async def test_a_directory_of_runs_hints_at_its_sessions(tmp_path):
    await make(tmp_path)
    with pytest.raises(NotALogError, match=r"it holds 1 session\(s\) \(e.g. .*/run\): name one"):
        await open_log(tmp_path)


async def test_a_wrong_format_version_is_refused_clearly(tmp_path):
    run = await make(tmp_path, batches=1)
    seg = segs(run)[0]
    data = bytearray(seg.read_bytes())
    body = bytearray(data[: fmt.HEADER.size])
    body[8:10] = (7).to_bytes(2, "little")
    import zlib

    data[: fmt.HEADER_SIZE] = bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))
    seg.write_bytes(bytes(data))
    with pytest.raises(NotALogError, match="segment format version 7 is not supported \\(this tape reads version 1\\)"):
        await open_log(run)


async def test_a_foreign_file_named_like_a_segment_is_not_a_log(tmp_path):
    run = await make(tmp_path, batches=1)
    segs(run)[0].write_bytes(b"PK\x03\x04 a zip file, not a segment" * 3)
    with pytest.raises(NotALogError, match="not a tape segment \\(bad magic"):
        await open_log(run)


async def test_a_missing_segment_is_damage(tmp_path):
    """Readers get everything before the gap, then the error; a writer is refused outright."""
    run = await make(tmp_path, batches=40)
    gone = segs(run)[1]
    gone.unlink()
    log = await open_log(run)
    got = []
    with pytest.raises(CorruptLogError, match="a segment is missing"):
        async for batch in log.read():
            got.extend(batch)
    assert got and [r.seq for r in got] == list(range(1, len(got) + 1))
    with pytest.raises(CorruptLogError, match="a segment is missing"):
        await open_log(run, mode="a")


# -- writers, rotation, sync ---------------------------------------------------------------------------
async def test_the_second_writer_is_told_which_process_holds_the_log(tmp_path):
    log = await create_log(tmp_path, SessionMeta(session_id="run"))
    with pytest.raises(LogLockedError, match=f"already open for writing by process {os.getpid()}"):
        FileLog.open(tmp_path / "run", LogSettings(), writable=True)
    await log.close()


async def test_segments_rotate_and_sealed_ones_get_an_index(tmp_path):
    """Past segment_bytes a new segment starts at the next seq; sealed segments carry a sparse index."""
    run = await make(tmp_path, batches=40)
    names = [p.name for p in segs(run)]
    assert len(names) >= 3 and names[0] == fmt.segment_name(1)
    assert all(p.with_suffix(".idx").exists() for p in segs(run)[:-1])
    log = await open_log(run)
    assert [r.seq for r in await read_all(log, 2500, 2600)] == list(range(2500, 2601))
    assert len(await read_all(log)) == 4000


async def test_a_lost_or_stale_index_is_rebuilt(tmp_path):
    run = await make(tmp_path, batches=40)
    sealed = segs(run)[:-1]
    sealed[0].with_suffix(".idx").unlink()
    sealed[1].with_suffix(".idx").write_bytes(b"garbage!")
    log = await open_log(run, mode="a")
    assert len(await read_all(log)) == 4000
    await log.close()
    assert sealed[0].with_suffix(".idx").exists()


@pytest.mark.parametrize("sync", ["batch", "interval", "none"])
async def test_every_sync_policy_keeps_what_it_acknowledged(tmp_path, sync):
    settings = LogSettings(sync=sync, sync_interval_ms=5)
    run = await make(tmp_path, batches=5, settings=settings)
    log = await open_log(run)
    assert len(await read_all(log)) == 500


async def test_a_failed_write_breaks_the_log_instead_of_carrying_on(tmp_path, monkeypatch):
    """Disk full: the append fails with the OS error, and every later append is refused."""
    log = await create_log(tmp_path, SessionMeta(session_id="run"))
    await log.append(entries(3))

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left on device"):
        await log.append(entries(3))
    monkeypatch.undo()
    with pytest.raises(LogBrokenError, match="an earlier write failed"):
        await log.append(entries(3))
    await log.close()
    reopened = await open_log(tmp_path / "run", mode="a")
    assert reopened.last_seq == 3
    await reopened.close()


async def test_a_failed_background_sync_breaks_the_log(tmp_path, monkeypatch):
    """With sync=interval, if the timer's fsync fails, acknowledged data may be lost: no more appends."""
    log = await create_log(tmp_path, SessionMeta(session_id="run"), LogSettings(sync="interval", sync_interval_ms=5))
    await log.append(entries(1))
    await log.append(entries(1, 1))  # within the interval: written, not yet synced

    def failing(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    await asyncio.sleep(0.1)
    monkeypatch.undo()
    with pytest.raises(LogBrokenError, match="Input/output error"):
        await log.append(entries(1, 2))
    await log.close()


async def test_a_reader_probing_the_lock_does_not_refuse_a_recovering_writer(tmp_path):
    """A follower's momentary shared lock (its liveness probe) makes the writer wait, not fail."""
    import fcntl
    import threading

    run = await make(tmp_path, batches=1)
    fd = os.open(run / "LOCK", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    threading.Timer(0.05, lambda: os.close(fd)).start()
    log = await open_log(run, mode="a")
    assert log.last_seq == 100
    await log.close()


async def test_a_damaged_checkpoint_is_named_and_the_records_are_untouched(tmp_path):
    """A checkpoint is checksummed: a flipped byte is a CorruptLogError naming its file; the log still opens and
    verifies (a checkpoint is a cache beside the records, never part of them)."""
    log = await create_log(tmp_path, SessionMeta(session_id="run"), SMALL)
    await log.append(entries(10))
    await log.put_checkpoint(10, b"every machine's state")
    await log.close()
    (path,) = (tmp_path / "run" / "checkpoints").glob("*.ckpt")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    async with await open_log(tmp_path / "run") as reader:
        with pytest.raises(CorruptLogError, match=f"{path.name}.*checksum"):
            await reader.get_checkpoint(10)
        assert len(await read_all(reader)) == 10
        assert (await verify_log(reader)).ok
