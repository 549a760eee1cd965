"""The file backend's on-disk format: segment headers, framed batches, and a scanner.

A segment file ``<first seq, 20 digits>.seg`` is a header followed by frames::

    header  magic "TAPESEG\\0" | format u16 | schema u16 | flags u32 | first_seq u64 |
            session id (48 bytes, utf-8, NUL padded) | crc32 u32 of the preceding bytes
    frame   header crc32 u32 | payload length u32 | payload crc32 u32 | first_seq u64 | count u32 |
            payload

A frame holds one appended batch (so a batch is atomic): its payload is the msgpack array of its
records ``[seq, ts_ns, event]``. The header crc covers the four header fields after it; the payload
crc covers the payload. A frame is written with one ``write`` call, so a crash leaves a prefix of it.

The scanner walks frames and classifies how a segment ends:

* ``clean`` – the last frame ends exactly at the end of the file;
* ``torn`` – the file ends inside a frame header, or after a sound header inside its payload, or in
  zero bytes a crash left behind: an append that was never acknowledged (acknowledged frames are
  whole); a writer truncates it when it opens the log;
* ``corrupt`` – a header or payload fails its crc, or a frame is out of sequence: damage to data that
  may have been acknowledged, refused with the segment and offset.
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
FRAME = struct.Struct("<IIIQI")  # header crc, payload length, payload crc, first seq, count
FRAME_SIZE = FRAME.size
_FRAME_BODY = struct.Struct("<IIQI")  # what the header crc covers
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
    body = _FRAME_BODY.pack(len(payload), zlib.crc32(payload), first_seq, len(records))
    return struct.pack("<I", zlib.crc32(body)) + body + payload


@dataclass(frozen=True, slots=True)
class ScanEnd:
    """How a scan stopped: ``clean``, ``torn`` (at ``offset``) or ``corrupt`` (at ``offset``)."""

    kind: Literal["clean", "torn", "corrupt"]
    offset: int
    next_seq: int
    detail: str = ""


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
            yield ScanEnd("torn", off, next_seq, f"the file ends inside a frame header ({end - off} bytes)")
            return
        head_crc, length, crc, first_seq, count = FRAME.unpack_from(data, off)
        if zlib.crc32(data[off + 4 : off + FRAME_SIZE]) != head_crc:
            if not bytes(data[off:end]).strip(b"\x00"):
                yield ScanEnd("torn", off, next_seq, f"{end - off} zero bytes after the last frame")
            else:
                yield ScanEnd("corrupt", off, next_seq, "frame header checksum mismatch")
            return
        if not 0 < length <= MAX_FRAME_BYTES or not 0 < count <= MAX_FRAME_RECORDS:
            yield ScanEnd("corrupt", off, next_seq, f"implausible frame header (length {length}, count {count})")
            return
        if first_seq != next_seq:
            yield ScanEnd("corrupt", off, next_seq, f"frame starts at seq {first_seq}, expected {next_seq}")
            return
        stop = off + FRAME_SIZE + length
        if stop > end:
            yield ScanEnd("torn", off, next_seq, f"the file ends inside the frame of seqs {first_seq}.."
                          f"{first_seq + count - 1} ({end - off} of {stop - off} bytes)")
            return
        payload = data[off + FRAME_SIZE : stop]
        if verify and zlib.crc32(payload) != crc:
            yield ScanEnd("corrupt", off, next_seq, f"checksum mismatch in the frame of seqs {first_seq}..{first_seq + count - 1}")
            return
        yield off, first_seq, count, payload
        next_seq = first_seq + count
        off = stop
    yield ScanEnd("clean", off, next_seq)
