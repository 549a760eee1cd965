"""What a dependency says, for tests that assert our words exactly and only that a dependency's are carried.

Our messages name what went wrong and where; when a dependency failed (msgspec, asyncpg, the PostgreSQL
server, ...), they carry its words too. Those change between its versions — msgspec 0.23 reworded its
UTF-8 error — so a test takes them from the dependency itself instead of spelling them out.
"""

from __future__ import annotations

from collections.abc import Callable


def words_of(exc: BaseException) -> str:
    """An exception's message, less msgspec's `` - at `$…` `` (our messages name the place themselves)."""
    reason, at, _ = str(exc).rpartition(" - at `")
    return reason if at else str(exc)


def said_by(call: Callable[[], object]) -> str:
    """The words of the error that ``call`` raises."""
    try:
        call()
    except Exception as exc:
        return words_of(exc)
    raise AssertionError(f"{call} raised nothing")
