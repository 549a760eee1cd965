"""The file backend's on-disk format: segment headers, framed batches, and a scanner.

A segment file ``<first seq, 20 digits>.seg`` is a header followed by frames::

    header  magic "TAPESEG\\0" | format u16 | schema u16 | flags u32 | first_seq u64 |
            session id (48 bytes, utf-8, NUL padded) | crc32 u32 of the preceding bytes
    frame   payload length u32 | crc32 u32 | first_seq u64 | count u32 | payload

A frame holds one appended batch (so a batch is atomic): its payload is the msgpack array of its
records ``[seq, ts_ns, event]``. The crc covers ``first_seq``, ``count`` and the payload.

The scanner walks frames and classifies how a segment ends:

* ``clean`` – the last frame ends exactly at the end of the file;
* ``torn`` – the file ends inside a frame (or in zero bytes a crash left behind) and no valid frame
  follows: an append that was never acknowledged; a writer truncates it when it opens the log;
* ``corrupt`` – a complete frame fails its crc, is out of sequence, or is followed by valid data:
  damage to acknowledged data, refused with the segment and offset.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import msgspec

from ..events import SCHEMA_VERSION, Record

MAGIC = b"TAPESEG\x00"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sHHIQ48s")
HEADER_SIZE = HEADER.size + 4
FRAME = struct.Struct("<IIQI")
FRAME_SIZE = FRAME.size
SEQ_COUNT = struct.Struct("<QI")
MAX_FRAME_BYTES = 256 * 1024 * 1024
MAX_FRAME_RECORDS = 65_536  # a larger append is written as several frames, each atomic

ENCODER = msgspec.msgpack.Encoder()
RECORDS = msgspec.msgpack.Decoder(list[Record])

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "ScanEnd",
    "SegmentHeader",
    "encode_frame",
    "read_header",
    "scan",
    "segment_name",
]


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    format_version: int
    schema_version: int
    first_seq: int
    session_id: str


def encode_header(first_seq: int, session_id: str) -> bytes:
    sid = session_id.encode()
    if len(sid) > 48:
        raise ValueError(f"session id {session_id!r} is longer than 48 bytes")
    body = HEADER.pack(MAGIC, FORMAT_VERSION, SCHEMA_VERSION, 0, first_seq, sid)
    return body + struct.pack("<I", zlib.crc32(body))


def read_header(data: bytes | memoryview, where: str) -> SegmentHeader:
    """Parse and check a segment header; errors name the file."""
    from .base import CorruptLogError, NotALogError

    if len(data) < HEADER_SIZE:
        if len(data) < len(MAGIC) or bytes(data[: len(MAGIC)]) != MAGIC:
            raise NotALogError(f"{where}: not a tape segment (file too short, {len(data)} bytes)")
        raise CorruptLogError(where, 0, f"segment header truncated ({len(data)} of {HEADER_SIZE} bytes)")
    magic, fmt, schema, _flags, first_seq, sid = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise NotALogError(f"{where}: not a tape segment (bad magic {magic!r})")
    (crc,) = struct.unpack_from("<I", data, HEADER.size)
    if crc != zlib.crc32(data[: HEADER.size]):
        raise CorruptLogError(where, 0, "segment header checksum mismatch")
    if fmt != FORMAT_VERSION:
        raise NotALogError(
            f"{where}: segment format version {fmt} is not supported (this tape reads version "
            f"{FORMAT_VERSION}); use a tape release that matches the log"
        )
    if schema > SCHEMA_VERSION:
        raise NotALogError(
            f"{where}: written with event schema version {schema}, newer than this tape's "
            f"{SCHEMA_VERSION}; upgrade tape to read it"
        )
    return SegmentHeader(fmt, schema, first_seq, sid.rstrip(b"\x00").decode())


def encode_frame(first_seq: int, records: list[tuple[int, int, object]]) -> bytes:
    """Frame one batch of ``(seq, ts_ns, event)`` records."""
    payload = ENCODER.encode(records)
    if len(payload) > MAX_FRAME_BYTES:
        raise ValueError(f"a batch of {len(records)} events encodes to {len(payload)} bytes, over the frame limit")
    crc = zlib.crc32(payload, zlib.crc32(SEQ_COUNT.pack(first_seq, len(records))))
    return FRAME.pack(len(payload), crc, first_seq, len(records)) + payload


@dataclass(frozen=True, slots=True)
class ScanEnd:
    """How a scan stopped: ``clean``, ``torn`` (at ``offset``) or ``corrupt`` (at ``offset``)."""

    kind: Literal["clean", "torn", "corrupt"]
    offset: int
    next_seq: int
    detail: str = ""


def _frame_ok(data: memoryview, off: int, end: int, expect_seq: int | None) -> tuple[int, int, int] | None:
    """(length, first_seq, count) if a whole, checksummed frame starts at ``off``."""
    if end - off < FRAME_SIZE:
        return None
    length, crc, first_seq, count = FRAME.unpack_from(data, off)
    if not 0 < length <= MAX_FRAME_BYTES or count == 0 or off + FRAME_SIZE + length > end:
        return None
    if expect_seq is not None and first_seq != expect_seq:
        return None
    payload = data[off + FRAME_SIZE : off + FRAME_SIZE + length]
    if zlib.crc32(payload, zlib.crc32(SEQ_COUNT.pack(first_seq, count))) != crc:
        return None
    return length, first_seq, count


def _valid_frame_after(data: memoryview, start: int, end: int, after_seq: int) -> int | None:
    """Offset of a checksummed frame with a seq beyond ``after_seq`` somewhere past ``start``."""
    for off in range(start, end - FRAME_SIZE + 1):
        first_seq = SEQ_COUNT.unpack_from(data, off + 8)[0]
        if after_seq <= first_seq < after_seq + (1 << 40) and _frame_ok(data, off, end, None):
            return off
    return None


def scan(
    data: memoryview, start: int, next_seq: int, *, where: str, verify: bool = True
) -> Iterator[tuple[int, int, int, memoryview] | ScanEnd]:
    """Yield ``(offset, first_seq, count, payload)`` per frame, then one :class:`ScanEnd`.

    With ``verify`` every crc is checked; without it only frame headers are read (the sealed
    segments' fast path: their frames were checked when the segment was written and sealed).
    """
    end = len(data)
    off = start
    while off < end:
        if end - off < FRAME_SIZE:
            yield _tail(data, off, end, next_seq, "file ends inside a frame header")
            return
        length, crc, first_seq, count = FRAME.unpack_from(data, off)
        if not 0 < length <= MAX_FRAME_BYTES or count == 0 or count > MAX_FRAME_RECORDS:
            yield _tail(data, off, end, next_seq, f"implausible frame header (length {length}, count {count})")
            return
        stop = off + FRAME_SIZE + length
        if stop > end:
            yield _tail(data, off, end, next_seq, f"file ends inside a frame ({end - off} of {stop - off} bytes)")
            return
        if first_seq != next_seq:
            yield ScanEnd("corrupt", off, next_seq, f"frame starts at seq {first_seq}, expected {next_seq}")
            return
        payload = data[off + FRAME_SIZE : stop]
        if verify and zlib.crc32(payload, zlib.crc32(SEQ_COUNT.pack(first_seq, count))) != crc:
            yield ScanEnd("corrupt", off, next_seq, f"checksum mismatch in the frame of seqs {first_seq}..{first_seq + count - 1}")
            return
        yield off, first_seq, count, payload
        next_seq = first_seq + count
        off = stop
    yield ScanEnd("clean", off, next_seq)


def _tail(data: memoryview, off: int, end: int, next_seq: int, detail: str) -> ScanEnd:
    """An incomplete frame at ``off``: torn if nothing valid follows it, else corruption."""
    rest = data[off:end]
    if not bytes(rest).strip(b"\x00"):
        return ScanEnd("torn", off, next_seq, f"{end - off} zero bytes after the last frame")
    found = _valid_frame_after(data, off + 1, end, next_seq)
    if found is not None:
        return ScanEnd("corrupt", off, next_seq, f"{detail}, yet a valid frame follows at offset {found}")
    return ScanEnd("torn", off, next_seq, detail)
