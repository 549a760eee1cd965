"""The embedded event-log backend: one run directory of segment files per session.

Layout of a run directory::

    session.json                 session metadata (replaced atomically)
    LOCK                         held (flock) by the one writer; holds its pid
    00000000000000000001.seg     segments, named by their first seq (format: runtime.log.segments)
    00000000000000000001.idx     sparse seq -> offset index of a sealed segment (rebuilt if missing)

Opening for writing truncates a torn tail (an append that was never acknowledged) and says so in
:attr:`FileLog.recovery`; damage to acknowledged data is refused with the segment and offset.
Opening read-only never changes a file, and may run while a writer appends.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fcntl
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from config import LogSettings

from ..events import Record
from ..logger import get_logger
from . import segments as fmt
from .base import (
    CorruptLogError,
    Entry,
    EventLog,
    LogError,
    LogLockedError,
    NotALogError,
    Recovery,
    SeqRange,
    SessionMeta,
    SessionStatus,
    check_entries,
)

__all__ = ["FileLog", "fsync_path", "is_file_log"]

META_FILE = "session.json"
LOCK_FILE = "LOCK"
INDEX_EVERY_BYTES = 64 * 1024


class _SegmentIndex(msgspec.Struct, array_like=True):
    first_seq: int
    last_seq: int
    size: int
    seqs: list[int]
    offsets: list[int]


_INDEX_DECODER = msgspec.msgpack.Decoder(_SegmentIndex)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A batch admitted to the queue: its seqs and its encoded, validated frames."""

    first: int
    last: int
    frames: list[bytes]


@dataclass
class _Segment:
    path: Path
    first_seq: int
    last_seq: int  # first_seq - 1 while empty
    size: int  # end of the last whole frame
    seqs: list[int] = field(default_factory=list)  # sparse index: first seq of a frame ...
    offsets: list[int] = field(default_factory=list)  # ... and its offset

    def note_frame(self, first_seq: int, offset: int) -> None:
        if not self.offsets or offset - self.offsets[-1] >= INDEX_EVERY_BYTES:
            self.seqs.append(first_seq)
            self.offsets.append(offset)

    def start_for(self, seq: int) -> tuple[int, int]:
        """(offset, first seq) of the indexed frame at or before ``seq``."""
        i = bisect.bisect_right(self.seqs, seq) - 1
        if i < 0:
            return fmt.HEADER_SIZE, self.first_seq
        return self.offsets[i], self.seqs[i]


def is_file_log(path: Path) -> bool:
    return (path / META_FILE).is_file()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory after creating, renaming or removing an entry in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once (a temporary file renamed over it), fsynced unless ``sync`` is off."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        fsync_path(path.parent)


CHECKPOINTS = "checkpoints"
_CKPT_MAGIC = b"TCKP"


def _checkpoint_path(root: Path, seq: int) -> Path:
    return root / CHECKPOINTS / f"{seq:020d}.ckpt"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class FileLog(EventLog):
    """A session's log in a run directory. Create with :meth:`create`, open with :meth:`open`."""

    def __init__(self, root: Path, meta: SessionMeta, settings: LogSettings, *, writable: bool) -> None:
        super().__init__(
            writable=writable, queue_batches=settings.queue_batches, group_batches=settings.group_batches
        )
        self.root = root
        self.location = str(root)
        self.settings = settings
        self.recovery: Recovery | None = None
        self._meta = meta
        self._segments: list[_Segment] = []
        self._damage: CorruptLogError | None = None
        self._lock_fd: int | None = None
        self._fd: int | None = None  # the active segment, open for appending
        self._state = threading.Lock()
        self._last_seq = 0
        self._next_seq = 1  # the seq the next admitted batch starts at (writable logs)
        self._unsynced = False
        self._last_sync = time.monotonic()
        self._sync_timer: asyncio.TimerHandle | None = None
        self._sync_task: asyncio.Future[None] | None = None
        self._generation = 0  # bumped by every write, so a concurrent sync knows what it covered

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, meta: SessionMeta, settings: LogSettings) -> FileLog:
        """Make a new run directory holding an empty log, and open it for writing."""
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise LogError(f"{root}: already exists and is not an empty directory; choose a new run directory")
        root.mkdir(parents=True, exist_ok=True)
        log = cls(root, msgspec.structs.replace(meta, status="open"), settings, writable=True)
        log._acquire_lock()
        _write_atomic(root / META_FILE, msgspec.json.encode(log._meta))
        log._start_segment(1)
        return log

    @classmethod
    def open(cls, root: Path, settings: LogSettings, *, writable: bool = False) -> FileLog:
        """Open an existing run directory, read-only or (``writable``) as its one writer."""
        root = Path(root)
        if not root.is_dir():
            raise NotALogError(f"{root}: no such directory")
        if not is_file_log(root):
            hint = ""
            with contextlib.suppress(OSError):
                runs = sorted(p.name for p in root.iterdir() if is_file_log(p))
                if runs:
                    hint = f"; it holds {len(runs)} session(s) (e.g. {root / runs[-1]}): name one"
            raise NotALogError(f"{root}: not a tape log (no {META_FILE}){hint}")
        try:
            meta = msgspec.json.decode((root / META_FILE).read_bytes(), type=SessionMeta)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CorruptLogError(str(root / META_FILE), None, f"unreadable session metadata ({exc})") from exc
        log = cls(root, meta, settings, writable=writable)
        if writable:
            log._acquire_lock()
        try:
            log._load(recover=writable)
        except BaseException:
            log._release_lock()
            raise
        return log

    def _acquire_lock(self) -> None:
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(50):  # a reader probing the lock holds it shared for a moment: retry briefly
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt < 49:
                    time.sleep(0.005)
        else:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LogLockedError(
                f"{self.root}: already open for writing by process {holder}; a log has exactly one "
                "writer. Stop that process, or open the log read-only."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _writer_alive(self) -> bool:
        """True if some process holds the writer lock."""
        if self._lock_fd is not None:
            return True
        try:
            fd = os.open(self.root / LOCK_FILE, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _segment_paths(self) -> list[Path]:
        return sorted(p for p in self.root.iterdir() if p.suffix == ".seg" and p.stem.isdigit())

    def _load(self, *, recover: bool) -> None:
        paths = self._segment_paths()
        if not paths:
            raise NotALogError(f"{self.root}: holds {META_FILE} but no segment files")
        expect = 1
        for i, path in enumerate(paths):
            last = i == len(paths) - 1
            try:
                seg = self._open_segment(path, expect, last=last, recover=recover)
            except CorruptLogError as exc:
                if recover:
                    raise
                self._damage = exc  # read-only: everything before the damage stays readable
                break
            if seg is None:  # the next segment was being created when the writer died
                break
            self._segments.append(seg)
            expect = seg.last_seq + 1
            if self._damage is not None:
                break
        if not self._segments:
            raise self._damage or NotALogError(f"{self.root}: no readable segment")
        self._last_seq = self._segments[-1].last_seq
        self._next_seq = self._last_seq + 1
        if recover:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
            if self.recovery is None:
                self.recovery = Recovery(self._meta.status, self._last_seq, 0)
            self._meta = msgspec.structs.replace(self._meta, status="open", ended_ns=None, end_reason=None)
            _write_atomic(self.root / META_FILE, msgspec.json.encode(self._meta))

    def _open_segment(self, path: Path, expect: int, *, last: bool, recover: bool) -> _Segment | None:
        """The segment at ``path`` (None: a last segment whose creation a crash cut short)."""
        where = str(path)
        with open(path, "rb") as f:
            raw = f.read(fmt.HEADER_SIZE)
            file_size = os.fstat(f.fileno()).st_size
        if last and expect > 1 and len(raw) < fmt.HEADER_SIZE and fmt.MAGIC.startswith(raw[: len(fmt.MAGIC)]):
            # older writers created segments in place: a crash could leave one without its header
            if recover:
                path.unlink()
                fsync_path(self.root)
            return None
        head = fmt.read_header(raw, where)
        if head.first_seq != expect:
            raise CorruptLogError(where, 0, f"segment starts at seq {head.first_seq}, expected {expect} (a segment is missing)")
        if head.session_id != self._meta.session_id:
            raise CorruptLogError(where, 0, f"segment belongs to session {head.session_id!r}, not {self._meta.session_id!r}")
        seg = _Segment(path, head.first_seq, head.first_seq - 1, fmt.HEADER_SIZE)
        if not last and self._load_index(seg, file_size):
            return seg
        end = self._scan_into(seg, file_size)
        if end.kind == "clean":
            if not last:
                self._save_index(seg)
            return seg
        if end.kind == "corrupt" or not last:
            detail = end.detail if end.kind == "corrupt" else f"torn data in a sealed segment ({end.detail})"
            err = CorruptLogError(where, end.offset, detail)
            if recover:
                raise err
            self._damage = err
            return seg
        # a torn tail of the last segment: an append that was never acknowledged
        if recover:
            if seg.last_seq < self._meta.last_seq:
                raise CorruptLogError(where, end.offset, f"{end.detail}, but the session was closed at seq "
                                      f"{self._meta.last_seq} and only {seg.last_seq} are whole")
            truncated = file_size - end.offset
            with open(path, "r+b") as f:
                f.truncate(end.offset)
                f.flush()
                os.fsync(f.fileno())
            self.recovery = Recovery(self._meta.status, seg.last_seq, truncated, f"{where} at byte offset {end.offset}")
            get_logger("log").warning(
                "torn tail truncated", log=str(self.root), segment=where, offset=end.offset, bytes=truncated,
                last_seq=seg.last_seq, why=end.detail,
            )
        return seg

    def _scan_into(self, seg: _Segment, file_size: int) -> fmt.ScanEnd:
        """Scan ``seg`` from its current end to ``file_size``, extending it frame by frame."""
        if file_size <= seg.size:
            return fmt.ScanEnd("clean", seg.size, seg.last_seq + 1)
        with open(seg.path, "rb") as f, mmap.mmap(f.fileno(), file_size, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                for item in fmt.scan(view, seg.size, seg.last_seq + 1, where=str(seg.path)):
                    if isinstance(item, fmt.ScanEnd):
                        return item
                    off, first_seq, count, payload = item
                    seg.note_frame(first_seq, off)
                    seg.last_seq = first_seq + count - 1
                    seg.size = off + fmt.FRAME_SIZE + len(payload)
                    payload.release()
            finally:
                view.release()
        raise AssertionError("scan ends with a ScanEnd")  # pragma: no cover

    def _index_path(self, seg: _Segment) -> Path:
        return seg.path.with_suffix(".idx")

    def _load_index(self, seg: _Segment, file_size: int) -> bool:
        try:
            raw = self._index_path(seg).read_bytes()
            body, crc = raw[:-4], struct.unpack("<I", raw[-4:])[0]
            if zlib.crc32(body) != crc:
                return False
            idx = _INDEX_DECODER.decode(body)
        except (OSError, struct.error, msgspec.DecodeError, msgspec.ValidationError, IndexError):
            return False
        if idx.size != file_size or idx.first_seq != seg.first_seq:
            return False
        seg.last_seq, seg.size, seg.seqs, seg.offsets = idx.last_seq, idx.size, idx.seqs, idx.offsets
        return True

    def _save_index(self, seg: _Segment) -> None:
        if not self.writable:
            return
        body = msgspec.msgpack.encode(_SegmentIndex(seg.first_seq, seg.last_seq, seg.size, seg.seqs, seg.offsets))
        _write_atomic(self._index_path(seg), body + struct.pack("<I", zlib.crc32(body)))

    def _start_segment(self, first_seq: int) -> None:
        """Create the next segment whole: header written and synced under a temporary name, then renamed."""
        path = self.root / fmt.segment_name(first_seq)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        _write_all(fd, fmt.encode_header(first_seq, self._meta.session_id))
        os.fsync(fd)
        os.rename(tmp, path)
        fsync_path(self.root)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(path, first_seq, first_seq - 1, fmt.HEADER_SIZE))

    # -- reading ------------------------------------------------------------------------------
    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def damage(self) -> CorruptLogError | None:
        """Damage found while opening read-only (reads stop there with this error)."""
        return self._damage

    async def meta(self) -> SessionMeta:
        if not self.writable:
            self._refresh()
            with contextlib.suppress(OSError, msgspec.DecodeError, msgspec.ValidationError):
                self._meta = msgspec.json.decode((self.root / META_FILE).read_bytes(), type=SessionMeta)
        status = self._meta.status
        if status == "open" and not self._writer_alive():
            status = "crashed"
        return msgspec.structs.replace(self._meta, status=status, last_seq=self._last_seq)

    def _refresh(self) -> None:
        """Pick up what another process appended since we looked (read-only logs)."""
        if self.writable or self._damage is not None:
            return
        seg = self._segments[-1]
        size = os.stat(seg.path).st_size
        end = self._scan_into(seg, size)
        if end.kind == "corrupt":
            self._damage = CorruptLogError(str(seg.path), end.offset, end.detail)
        elif end.kind == "clean":
            for path in self._segment_paths():
                if int(path.stem) > seg.first_seq:
                    try:
                        nxt = self._open_segment(path, seg.last_seq + 1, last=True, recover=False)
                    except (CorruptLogError, NotALogError, OSError):
                        break  # a segment being created right now; look again next time
                    self._segments.append(nxt)
                    seg = nxt
        self._last_seq = self._segments[-1].last_seq

    def read_sync(self, first: int = 1, last: int | None = None) -> Iterator[list[Record]]:
        """Synchronous form of :meth:`read` (for replay and training loops without an event loop)."""
        if first < 1:
            raise ValueError(f"read: first seq must be >= 1, got {first}")
        self._refresh()
        with self._state:
            segs = list(self._segments)
            stop = self._last_seq if last is None else min(last, self._last_seq)
        i = max(0, bisect.bisect_right([s.first_seq for s in segs], first) - 1)
        for seg in segs[i:]:
            if seg.first_seq > stop:
                break
            if seg.last_seq < first:
                continue
            yield from self._read_segment(seg, first, stop)
        damage = self._damage
        if damage is not None and (last is None or last > self._last_seq):
            raise damage

    def _read_segment(self, seg: _Segment, first: int, stop: int) -> Iterator[list[Record]]:
        off, seq = seg.start_for(first)
        size = seg.size
        where = str(seg.path)
        with open(seg.path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                for item in fmt.scan(view, off, seq, where=where):
                    if isinstance(item, fmt.ScanEnd):
                        if item.kind != "clean":
                            raise CorruptLogError(where, item.offset, item.detail)
                        return
                    off, first_seq, count, payload = item
                    if first_seq + count <= first:
                        payload.release()
                        continue
                    if first_seq > stop:
                        payload.release()
                        return
                    try:
                        records = fmt.RECORDS.decode(payload)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        raise CorruptLogError(where, off, f"undecodable frame of seqs {first_seq}..{first_seq + count - 1} ({exc})") from exc
                    finally:
                        payload.release()
                    if first_seq < first or first_seq + count - 1 > stop:
                        records = [r for r in records if first <= r.seq <= stop]
                    yield records
            finally:
                view.release()

    async def read(self, first: int = 1, last: int | None = None) -> AsyncIterator[list[Record]]:
        for batch in self.read_sync(first, last):
            yield batch
            await asyncio.sleep(0)

    # -- writing ------------------------------------------------------------------------------
    def _admit(self, entries: Sequence[Entry]) -> _Prepared:
        """Number, encode and frame the batch now, and validate it by decoding the very bytes to be written.

        Seqs are assigned here, in the event loop's one thread, in the order batches are accepted; the
        writer writes them in that order, and a failed write breaks the log, so no seq is ever skipped.
        """
        if not entries:
            raise ValueError("append: the batch is empty")
        first = self._next_seq
        frames: list[bytes] = []
        try:
            seq = first
            for lo in range(0, len(entries), fmt.MAX_FRAME_RECORDS):
                part = entries[lo : lo + fmt.MAX_FRAME_RECORDS]
                frame = fmt.encode_frame(seq, [(s, ts, ev) for s, (ts, ev) in enumerate(part, seq)])
                with memoryview(frame) as view:
                    fmt.RECORDS.decode(view[fmt.FRAME_SIZE :])
                frames.append(frame)
                seq += len(part)
        except (msgspec.ValidationError, msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
            check_entries(entries)  # names the entry and the field
            raise ValueError(f"append: {exc}") from None
        self._next_seq = seq
        return _Prepared(first, seq - 1, frames)

    async def _write_batches(self, batches: list[_Prepared]) -> list[SeqRange]:
        ranges = await asyncio.to_thread(self._write_sync, batches)
        if self.settings.sync == "interval" and self._unsynced and self._sync_timer is None:
            loop = asyncio.get_running_loop()
            self._sync_timer = loop.call_later(self.settings.sync_interval_ms / 1000, self._timer_sync)
        return ranges

    def _timer_sync(self) -> None:
        self._sync_timer = None
        if self._unsynced and self._fd is not None and self._broken is None:
            self._sync_task = asyncio.ensure_future(self._sync())
            self._sync_task.add_done_callback(self._sync_done)

    def _sync_done(self, task: asyncio.Future[None]) -> None:
        """A failed background sync means acknowledged data may not be on disk: the log is broken."""
        if not task.cancelled() and task.exception() is not None and self._broken is None:
            self._broken = task.exception()
            get_logger("log").error("background fsync failed; the log accepts no more appends",
                                    log=str(self.root), error=str(self._broken))

    def _write_sync(self, batches: list[_Prepared]) -> list[SeqRange]:
        seg = self._segments[-1]
        offset = os.fstat(self._fd).st_size if self._fd is not None else seg.size
        if offset != seg.size:
            raise LogError(f"{seg.path}: size {offset} differs from the last written frame end {seg.size}; another process wrote it")
        if batches[0].first != self._last_seq + 1:
            raise LogError(f"{self.root}: batch starts at seq {batches[0].first}, the log ends at {self._last_seq}")
        notes: list[tuple[int, int]] = []
        chunks: list[bytes] = []
        for batch in batches:
            seq = batch.first
            for frame in batch.frames:
                notes.append((seq, offset))
                chunks.append(frame)
                offset += len(frame)
                seq += fmt.FRAME.unpack_from(frame, 0)[4]
        assert self._fd is not None
        self._generation += 1
        _write_all(self._fd, b"".join(chunks))
        policy = self.settings.sync
        if policy == "batch" or (
            policy == "interval" and (time.monotonic() - self._last_sync) * 1000 >= self.settings.sync_interval_ms
        ):
            os.fdatasync(self._fd)
            self._last_sync = time.monotonic()
            self._unsynced = False
        else:
            self._unsynced = policy != "none"
        last = batches[-1].last
        with self._state:
            for first_seq, off in notes:
                seg.note_frame(first_seq, off)
            seg.last_seq = last
            seg.size = offset
            self._last_seq = last
        if offset >= self.settings.segment_bytes:
            self._rotate()
        return [SeqRange(b.first, b.last) for b in batches]

    def _rotate(self) -> None:
        seg = self._segments[-1]
        assert self._fd is not None
        os.fsync(self._fd)
        self._unsynced = False
        self._save_index(seg)
        with self._state:
            self._start_segment(seg.last_seq + 1)

    async def _sync(self) -> None:
        if self._fd is not None and self._unsynced:
            generation = self._generation
            await asyncio.to_thread(os.fdatasync, self._fd)
            if generation == self._generation:  # nothing was written while we synced
                self._unsynced = False
            self._last_sync = time.monotonic()

    # -- status and closing -------------------------------------------------------------------
    # -- checkpoints: checkpoints/<seq>.ckpt, each "TCKP", CRC-32 of the data, the data -------------
    async def _put_checkpoint(self, seq: int, data: bytes) -> None:
        path = _checkpoint_path(self.root, seq)
        blob = _CKPT_MAGIC + zlib.crc32(data).to_bytes(4, "little") + data
        await asyncio.to_thread(self._write_checkpoint, path, blob)

    def _write_checkpoint(self, path: Path, blob: bytes) -> None:
        if path.exists():  # the checkpoint at a seq is a function of the records before it: keep the first
            return
        sync = self.settings.sync != "none"
        if not path.parent.is_dir():
            path.parent.mkdir()
            if sync:
                fsync_path(self.root)
        _write_atomic(path, blob, sync=sync)

    async def checkpoints(self) -> list[int]:
        folder = self.root / CHECKPOINTS
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.iterdir() if p.suffix == ".ckpt" and p.stem.isdigit())

    async def get_checkpoint(self, seq: int) -> bytes:
        path = _checkpoint_path(self.root, seq)
        try:
            blob = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise LogError(f"{self.root}: no checkpoint at seq {seq}") from None
        data = blob[8:]
        if blob[:4] != _CKPT_MAGIC or int.from_bytes(blob[4:8], "little") != zlib.crc32(data):
            raise CorruptLogError(str(path), None, "checkpoint fails its checksum (replay without it: --jobs 1)")
        return data

    @property
    def target(self) -> tuple[str, str | None]:
        return str(self.root), None

    async def mark(self, status: SessionStatus, reason: str | None = None) -> None:
        if not self.writable:
            raise LogError(f"{self.root}: opened read-only; cannot change the session status")
        await self.flush()
        ended = time.time_ns() if status in ("ended", "crashed") else None
        self._meta = msgspec.structs.replace(self._meta, status=status, ended_ns=ended, end_reason=reason,
                                             last_seq=self._last_seq)
        await asyncio.to_thread(_write_atomic, self.root / META_FILE, msgspec.json.encode(self._meta))

    def _status(self) -> SessionStatus:
        return self._meta.status

    async def _release(self) -> None:
        if self._sync_timer is not None:
            self._sync_timer.cancel()
            self._sync_timer = None
        if self._sync_task is not None and not self._sync_task.done():
            with contextlib.suppress(Exception):
                await self._sync_task
        if self._fd is not None:
            if self._unsynced and self._broken is None:
                os.fdatasync(self._fd)
            os.close(self._fd)
            self._fd = None
        self._release_lock()
