"""Whole-log checks and salvage: ``verify_log`` (what ``tape log verify`` runs) and ``repair_log``."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from . import segments as fmt
from .base import CorruptLogError, EventLog, LogError, SessionMeta
from .files import FileLog

__all__ = ["Problem", "RepairReport", "VerifyReport", "repair_log", "verify_log"]

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Problem:
    where: str
    offset: int | None
    detail: str

    def __str__(self) -> str:
        at = f"{self.where} at byte offset {self.offset}" if self.offset is not None else self.where
        return f"{at}: {self.detail}"


@dataclass
class VerifyReport:
    location: str
    records: int = 0
    frames: int = 0
    segments: int = 0
    last_seq: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify_log(log: EventLog, progress: Progress | None = None) -> VerifyReport:
    """Check everything: headers, every checksum, every record's schema, seq continuity from 1."""
    if isinstance(log, FileLog):
        return _verify_files(log, progress)
    report = VerifyReport(log.location, segments=0)
    expect = 1
    try:
        async for batch in log.read():
            for record in batch:
                if record.seq != expect:
                    report.problems.append(Problem(log.location, None, f"seq {record.seq} where {expect} was expected"))
                    report.records = report.last_seq = expect - 1  # the sound records before the gap
                    return report
                expect += 1
            report.records += len(batch)
            report.frames += 1
            if progress:
                progress(report.records)
    except CorruptLogError as exc:
        report.problems.append(Problem(exc.where, exc.offset, exc.detail))
    report.last_seq = expect - 1
    meta = await log.meta()
    if meta.last_seq != report.last_seq:
        report.problems.append(Problem(log.location, None, f"metadata says last seq {meta.last_seq}, records end at {report.last_seq}"))
    return report


def _verify_files(log: FileLog, progress: Progress | None) -> VerifyReport:
    report = VerifyReport(log.location)
    paths = log._segment_paths()
    expect = 1
    for i, path in enumerate(paths):
        report.segments += 1
        where = str(path)
        data = path.read_bytes()
        try:
            head = fmt.read_header(data, where)
        except LogError as exc:
            report.problems.append(Problem(where, 0, str(exc)))
            return report
        if head.first_seq != expect:
            report.problems.append(Problem(where, 0, f"segment starts at seq {head.first_seq}, expected {expect}"))
            return report
        with memoryview(data) as view:
            for item in fmt.scan(view, fmt.HEADER_SIZE, expect, where=where):
                if isinstance(item, fmt.ScanEnd):
                    if item.kind == "corrupt":
                        report.problems.append(Problem(where, item.offset, item.detail))
                        return report
                    if item.kind == "torn":
                        if i == len(paths) - 1:
                            report.notes.append(
                                f"{where}: torn tail of {len(data) - item.offset} bytes at byte offset {item.offset} "
                                "(an append that was never acknowledged; the next writer truncates it)"
                            )
                        else:
                            report.problems.append(Problem(where, item.offset, f"torn data inside a sealed segment ({item.detail})"))
                            return report
                    break
                off, first_seq, count, payload = item
                try:
                    records = fmt.RECORDS.decode(payload)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    report.problems.append(Problem(where, off, f"frame of seqs {first_seq}..{first_seq + count - 1} does not decode: {exc}"))
                    return report
                finally:
                    payload.release()
                seqs = [r.seq for r in records]
                if len(seqs) != count or seqs != list(range(first_seq, first_seq + count)):
                    report.problems.append(Problem(where, off, f"frame header says seqs {first_seq}..{first_seq + count - 1}, records hold {seqs[:1]}..{seqs[-1:]}"))
                    return report
                report.frames += 1
                report.records += count
                expect = first_seq + count
                report.last_seq = expect - 1  # kept current: every early return reports the sound prefix
                if progress:
                    progress(report.records)
        idx = path.with_suffix(".idx")
        if i < len(paths) - 1 and idx.exists():
            body = idx.read_bytes()
            if len(body) < 4 or zlib.crc32(body[:-4]) != int.from_bytes(body[-4:], "little"):
                report.notes.append(f"{idx}: index checksum mismatch (harmless: it is rebuilt from the segment)")
    report.last_seq = expect - 1
    return report


@dataclass
class RepairReport:
    source: str
    destination: str
    salvaged: int
    damage: Problem | None


async def repair_log(
    src: EventLog, create: Callable[[SessionMeta], object], progress: Progress | None = None
) -> RepairReport:
    """Copy every record of ``src`` before its first damage into a new log made by ``create(meta)``."""
    meta = await src.meta()
    dst = await create(msgspec.structs.replace(meta, status="open", ended_ns=None, end_reason=None, last_seq=0))  # type: ignore[misc]
    damage: Problem | None = None
    expect = 1
    try:
        try:
            async for batch in src.read():
                good = []
                for record in batch:
                    if record.seq != expect:
                        raise CorruptLogError(src.location, None, f"seq {record.seq} where {expect} was expected")
                    good.append((record.ts_ns, record.event))
                    expect += 1
                await dst.append(good)
                if progress:
                    progress(expect - 1)
        except CorruptLogError as exc:
            damage = Problem(exc.where, exc.offset, exc.detail)
        await dst.flush()
    finally:
        await dst.close()
    return RepairReport(src.location, dst.location, expect - 1, damage)

