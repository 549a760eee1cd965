"""The append-only event log: one interface (:class:`EventLog`), two backends (files, PostgreSQL).

A *target* names where logs live: a run directory (one session), a directory of run directories, or a
``postgresql://`` DSN (a session is picked with ``?session=ID``)::

    log = await create_log("runs", SessionMeta(session_id=new_session_id(), ...))
    await log.append([(ts_ns, event), ...])          # -> SeqRange, once durable
    async with await open_log("runs/<id>") as log:   # read-only
        async for batch in log.read(): ...
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from config import LogSettings

from .base import (
    CorruptLogError,
    Entry,
    EventLog,
    LogBrokenError,
    LogError,
    LogLockedError,
    LogUnavailableError,
    NotALogError,
    Recovery,
    SeqConflictError,
    SeqRange,
    SessionMeta,
)
from .files import FileLog, is_file_log

__all__ = [
    "CorruptLogError",
    "Entry",
    "EventLog",
    "FileLog",
    "LogBrokenError",
    "LogError",
    "LogLockedError",
    "LogUnavailableError",
    "NotALogError",
    "Recovery",
    "SeqConflictError",
    "SeqRange",
    "SessionMeta",
    "create_log",
    "is_postgres",
    "list_sessions",
    "open_log",
    "split_target",
]


def is_postgres(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def split_target(target: str) -> tuple[str, str | None]:
    """``postgresql://…?session=ID`` -> (the DSN without ``session``, ``ID`` or None)."""
    parts = urlsplit(target)
    query = parse_qsl(parts.query, keep_blank_values=True)
    session = next((v for k, v in query if k == "session"), None)
    rest = urlencode([(k, v) for k, v in query if k != "session"])
    return urlunsplit(parts._replace(query=rest)), session or None


async def create_log(target: str | Path, meta: SessionMeta, settings: LogSettings | None = None) -> EventLog:
    """Start a new session's log under ``target`` (a directory of runs, or a DSN), open for writing."""
    settings = settings or LogSettings()
    if is_postgres(target):
        from .postgres import PgLog

        dsn, _ = split_target(str(target))
        return await PgLog.create(dsn, meta, settings)
    return FileLog.create(Path(target) / meta.session_id, meta, settings)


async def open_log(
    target: str | Path, *, mode: str = "r", session: str | None = None, settings: LogSettings | None = None
) -> EventLog:
    """Open one session's log: ``mode="r"`` read-only, ``"a"`` as its one writer (recovering a crash)."""
    if mode not in ("r", "a"):
        raise ValueError(f"open_log: mode must be 'r' or 'a', got {mode!r}")
    settings = settings or LogSettings()
    if is_postgres(target):
        from .postgres import PgLog

        dsn, from_dsn = split_target(str(target))
        session = session or from_dsn
        if session is None:
            names = [m.session_id for m in await list_sessions(dsn, settings)]
            shown = ", ".join(names[-5:]) or "none yet"
            raise NotALogError(f"{_redact(dsn)}: name a session with ?session=ID (latest: {shown})")
        return await PgLog.open(dsn, session, settings, writable=mode == "a")
    path = Path(target) / session if session else Path(target)
    return FileLog.open(path, settings, writable=mode == "a")


async def list_sessions(
    target: str | Path, settings: LogSettings | None = None, *, damaged: list[tuple[Path, str]] | None = None
) -> list[SessionMeta]:
    """Every session under ``target``, oldest first.

    A run directory that cannot be read raises, unless ``damaged`` is given: then ``(run, error)`` is
    appended to it and the other sessions are still listed.
    """
    settings = settings or LogSettings()
    if is_postgres(target):
        from .postgres import pg_list_sessions

        return await pg_list_sessions(split_target(str(target))[0], settings)
    root = Path(target)
    runs = [root] if is_file_log(root) else sorted(p for p in root.iterdir() if is_file_log(p)) if root.is_dir() else []
    if not runs and not root.is_dir():
        raise NotALogError(f"{root}: no such directory")
    metas = []
    for run in runs:
        try:
            log = FileLog.open(run, settings)
            try:
                metas.append(await log.meta())
            finally:
                await log.close()
        except (LogError, OSError) as exc:
            if damaged is None:
                raise
            damaged.append((run, str(exc)))
    return sorted(metas, key=lambda m: (m.created_ns, m.session_id))


def _redact(dsn: str) -> str:
    """A DSN for messages: its password hidden, in the netloc and in a ``password=`` parameter."""
    parts = urlsplit(dsn)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))
