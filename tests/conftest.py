"""Session-wide fixtures: one local Ray instance, and the real PostgreSQL server.

PostgreSQL tests use the server at ``TAPE_TEST_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
When it is unreachable they skip with the reason on a user's machine, and **fail** in CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

PG_DSN = os.environ.get("TAPE_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (2 CPUs, no dashboard)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _pg_reachable(dsn: str) -> str | None:
    """None if PostgreSQL answers at ``dsn``, else why not."""
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The DSN of a reachable PostgreSQL server (see the module docstring for CI behaviour)."""
    why = _pg_reachable(PG_DSN)
    if why is not None:
        message = f"PostgreSQL is unreachable at {PG_DSN} ({why}); set TAPE_TEST_DSN to a reachable server"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " — in CI these tests must run, not skip", pytrace=False)
        pytest.skip(message)
    return PG_DSN


@pytest.fixture
def pg_schema_dsn(pg_dsn: str):
    """A DSN whose tables live in a fresh PostgreSQL schema, dropped after the test."""
    import asyncpg

    schema = f"tape_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_dsn else "?"
    yield f"{pg_dsn}{sep}options=-csearch_path%3D{schema}"
    asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))
