"""Parquet export of a session: specifications of what the file holds and how it is written."""

from __future__ import annotations

import asyncio
import itertools
import tracemalloc
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from config import LogSettings
from replay.export import RECORD_COLUMNS, ExportSchemaError, export_parquet, export_schema
from runtime.events import EVENT_TYPES, BookDelta, Record, event_type
from runtime.log import EventLog, SessionMeta, create_log, open_log
from tests.samples import one_of_each

SETTINGS = LogSettings(sync="none")
_ids = itertools.count()
LEVEL = pa.struct([("price", pa.int64()), ("count", pa.int64())])
PAIR = pa.struct([("key", pa.string()), ("value", pa.string())])
RANGE = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("step", pa.int64())])


def delta(i: int) -> BookDelta:
    return BookDelta(
        market=f"KX-{i % 3}",
        side="yes" if i % 2 else "no",
        price=1 + i % 9_999,
        delta=i % 500 - 250,
        sid=3,
        venue_seq=i + 1,
    )


def meta(**kw) -> SessionMeta:
    fields = {
        "session_id": f"x{next(_ids)}",
        "mode": "demo",
        "venue": "sim",
        "seed": 7,
        "config_hash": "c" * 64,
        "code_version": "test",
    }
    fields.update(kw)
    return SessionMeta(**fields)


async def write_session(root: Path, events, *, batch: int = 10_000, **kw) -> str:
    """A closed file log holding ``events`` (an iterable), appended in batches; returns its session id."""
    m = meta(**kw)
    async with await create_log(root, m, SETTINGS) as log:
        ts = itertools.count(1_700_000_000_000_000_000, 1_000)
        it = iter(events)
        while chunk := list(itertools.islice(it, batch)):
            await log.append([(next(ts), e) for e in chunk])
    return m.session_id


async def read_all(log: EventLog) -> list[Record]:
    return [r async for batch in log.read() for r in batch]


async def export(root: Path, session: str, out: Path, **kw):
    async with await open_log(root, session=session, settings=SETTINGS) as log:
        return await export_parquet(log, out, **kw)


def mixed_events() -> list:
    """Every event type twice (with its sample values, then with its defaults where it has them), interleaved
    with book deltas, so that several event types share each row group."""
    samples = one_of_each()
    defaults = [
        msgspec.structs.replace(
            e, **{f.name: f.default for f in msgspec.structs.fields(e) if f.default is not msgspec.NODEFAULT}
        )
        for e in samples
    ]
    return [e for i, (a, b) in enumerate(zip(samples, defaults, strict=True)) for e in (a, delta(i), b)]


def from_parquet(value):
    """A value read back with pyarrow, in the event's Python form (lists and structs -> tuples)."""
    if isinstance(value, list):
        return tuple(from_parquet(v) for v in value)
    if isinstance(value, dict):
        return tuple(from_parquet(v) for v in value.values())
    return value


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> tuple[Path, list[Record]]:
    """The mixed session exported once, with its records as the log returns them."""
    root = tmp_path_factory.mktemp("runs")

    async def make() -> tuple[Path, list[Record]]:
        sid = await write_session(root, mixed_events(), batch=7)
        async with await open_log(root, session=sid, settings=SETTINGS) as log:
            records = await read_all(log)
            await export_parquet(log, root / "session.parquet", row_group_rows=16)
        return root / "session.parquet", records

    return asyncio.run(make())


def column(records: list[Record], name: str) -> list:
    return [getattr(r.event, name, None) for r in records]


# --- schema -------------------------------------------------------------------------------------------
def test_schema_covers_every_field_of_every_event_type():
    """The columns are seq, ts_ns, type, then exactly the union of every event type's fields, each typed."""
    schema = export_schema()
    fields = {f.name for cls in EVENT_TYPES.values() for f in msgspec.structs.fields(cls)}
    assert schema.names[:3] == list(RECORD_COLUMNS)
    assert set(schema.names[3:]) == fields and len(schema.names) == 3 + len(fields)
    assert [schema.field(n).type for n in RECORD_COLUMNS] == [pa.int64(), pa.int64(), pa.string()]
    assert all(schema.field(n).nullable for n in fields)
    expected = {
        "price": pa.int64(),
        "amount": pa.int64(),
        "market": pa.string(),
        "side": pa.string(),
        "is_taker": pa.bool_(),
        "score": pa.float64(),
        "raw": pa.binary(),
        "markets": pa.list_(pa.string()),
        "yes_bids": pa.list_(LEVEL),
        "no_bids": pa.list_(LEVEL),
        "args": pa.list_(PAIR),
        "price_ranges": pa.list_(RANGE),
    }
    assert {n: schema.field(n).type for n in expected} == expected
    allowed = {
        pa.int64(),
        pa.string(),
        pa.bool_(),
        pa.float64(),
        pa.binary(),
        pa.list_(pa.string()),
        pa.list_(LEVEL),
        pa.list_(PAIR),
        pa.list_(RANGE),
    }
    assert {n: schema.field(n).type for n in fields if schema.field(n).type not in allowed} == {}


def test_a_new_event_type_gets_its_columns_without_changes_to_the_exporter():
    """An event type the exporter has never seen adds its new fields as columns, typed from its annotations."""

    class Quote(msgspec.Struct, frozen=True, tag="quote"):
        market: str
        bid: int | None = None
        venues: tuple[str, ...] = ()

    schema = export_schema({**EVENT_TYPES, "quote": Quote})
    assert schema.names == [*export_schema().names, "bid", "venues"]
    assert (schema.field("bid").type, schema.field("venues").type) == (pa.int64(), pa.list_(pa.string()))


def test_a_field_name_with_two_types_is_refused():
    """Two event types using one field name with different types fail at schema build, naming both."""

    class A(msgspec.Struct, tag="a"):
        size: int

    class B(msgspec.Struct, tag="b"):
        size: str | None = None

    with pytest.raises(ExportSchemaError, match=f"field 'size' is {pa.int64()} in a but {pa.string()} in b"):
        export_schema({"a": A, "b": B})


# --- contents -----------------------------------------------------------------------------------------
def test_every_field_of_every_event_type_round_trips(session):
    """Read back with pyarrow, each row has its record's seq, ts, type and every field; others are null."""
    out, records = session
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(records) and {event_type(r.event) for r in records} == set(EVENT_TYPES)
    for row, record in zip(rows, records, strict=True):
        event = record.event
        own = set(event.__struct_fields__)
        assert (row["seq"], row["ts_ns"], row["type"]) == (record.seq, record.ts_ns, event_type(event))
        for name, got in row.items():
            if name in RECORD_COLUMNS:
                continue
            if name in own:
                want = getattr(event, name)
                assert from_parquet(got) == want and type(from_parquet(got)) is type(want), (record.seq, name)
            else:
                assert got is None, (record.seq, name)
        assert EVENT_TYPES[row["type"]](**{n: from_parquet(row[n]) for n in own}) == event


def test_pandas_reads_the_file(session):
    """pandas reads the file directly: right rows, exact integers (nullable Int64, never floats), values."""
    pd = pytest.importorskip("pandas")
    out, records = session
    df = pd.read_parquet(out)
    assert len(df) == len(records)
    assert (df["seq"].dtype, df["ts_ns"].dtype) == ("int64", "int64")
    assert (df["price"].dtype, df["amount"].dtype, df["is_taker"].dtype, df["score"].dtype) == (
        "Int64",
        "Int64",
        "boolean",
        "float64",
    )
    for name in ("price", "amount", "fee", "starting_cash", "market", "type"):
        got = [None if v is pd.NA or (isinstance(v, float) and v != v) else v for v in df[name].tolist()]
        want = [event_type(r.event) for r in records] if name == "type" else column(records, name)
        assert got == want, name
        assert all(type(v) is type(w) for v, w in zip(got, want, strict=True)), name
    assert df["seq"].tolist() == [r.seq for r in records]


def test_polars_reads_the_file(session):
    """polars reads the file directly: right rows, types (nested levels included) and values."""
    pl = pytest.importorskip("polars")
    out, records = session
    df = pl.read_parquet(out)
    assert df.height == len(records)
    level = pl.List(pl.Struct({"price": pl.Int64, "count": pl.Int64}))
    assert (df.schema["seq"], df.schema["price"], df.schema["raw"], df.schema["yes_bids"]) == (
        pl.Int64,
        pl.Int64,
        pl.Binary,
        level,
    )
    for name in ("price", "amount", "market", "raw", "is_taker", "score"):
        assert df[name].to_list() == column(records, name), name
    bids = [from_parquet(v) if v is not None else None for v in df["yes_bids"].to_list()]
    assert bids == column(records, "yes_bids")


def test_ray_data_reads_the_file(session, ray_session):
    """Ray Data reads the file directly: right row count, Arrow types and values."""
    out, records = session
    ds = ray_session.data.read_parquet(str(out)).materialize()  # one execution; the checks below reuse it
    assert ds.count() == len(records)
    types = dict(zip(ds.schema().names, ds.schema().types, strict=True))
    assert (types["seq"], types["price"], types["yes_bids"], types["args"]) == (
        pa.int64(),
        pa.int64(),
        pa.list_(LEVEL),
        pa.list_(PAIR),
    )
    rows = sorted(ds.take_all(), key=lambda r: r["seq"])
    assert [r["seq"] for r in rows] == [r.seq for r in records]
    assert [r["type"] for r in rows] == [event_type(r.event) for r in records]
    assert [r["amount"] for r in rows] == column(records, "amount")


async def test_session_metadata_is_stored(tmp_path):
    """The file's key-value metadata names the session, its config hash, code version, seed, schema version and seq range."""
    sid = await write_session(tmp_path, one_of_each(), seed=99, config_hash="h" * 64, code_version="1.2.3")
    await export(tmp_path, sid, tmp_path / "s.parquet")
    kv = {k.decode(): v.decode() for k, v in pq.read_metadata(tmp_path / "s.parquet").metadata.items()}
    want = {
        "session_id": sid,
        "config_hash": "h" * 64,
        "code_version": "1.2.3",
        "seed": "99",
        "schema_version": "1",
        "first_seq": "1",
        "last_seq": str(len(one_of_each())),
    }
    assert {k: kv.get(f"tape.{k}") for k in want} == want
    assert pq.read_schema(tmp_path / "s.parquet").metadata[b"tape.session_id"] == sid.encode()


async def test_an_empty_session_exports_an_empty_file(tmp_path):
    """A session with no records gives a readable file with every column and no rows."""
    sid = await write_session(tmp_path, [])
    summary = await export(tmp_path, sid, tmp_path / "s.parquet")
    table = pq.read_table(tmp_path / "s.parquet")
    assert (summary.rows, table.num_rows, table.schema.remove_metadata()) == (0, 0, export_schema())


# --- streaming and failure ----------------------------------------------------------------------------
@pytest.mark.slow
async def test_a_large_session_streams_in_row_groups_with_bounded_memory(tmp_path):
    """200,000 events export in row groups, holding only about a row group at a time (Python and Arrow memory)."""
    n, group = 200_000, 20_000
    sid = await write_session(tmp_path, map(delta, range(n)))
    await export(tmp_path, sid, tmp_path / "warm.parquet", row_group_rows=1_000)  # first-use imports and caches
    tracemalloc.start()
    one_group = [Record(i + 1, i, delta(i)) for i in range(group)]
    group_bytes = tracemalloc.get_traced_memory()[0]
    del one_group
    tracemalloc.reset_peak()
    default_pool = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(default_pool)
    pa.set_memory_pool(pool)
    done: list[int] = []
    try:
        summary = await export(tmp_path, sid, tmp_path / "s.parquet", row_group_rows=group, progress=done.append)
        python_peak = tracemalloc.get_traced_memory()[1]
    finally:
        pa.set_memory_pool(default_pool)
        tracemalloc.stop()
    assert (summary.rows, summary.row_groups) == (n, n // group)
    assert summary.bytes == (tmp_path / "s.parquet").stat().st_size and summary.seconds > 0
    assert done == list(range(group, n + 1, group))
    f = pq.ParquetFile(tmp_path / "s.parquet")
    assert f.metadata.num_row_groups == n // group and f.metadata.row_group(0).column(3).compression == "ZSTD"
    assert python_peak < 3 * group_bytes  # the whole session as records would be ~10 of them
    assert pool.max_memory() < f.read().nbytes / 3  # the whole session as one Arrow table


async def test_a_failed_export_leaves_no_file(tmp_path):
    """An exception in the middle of an export leaves nothing under the output name, nor a temporary file."""
    sid = await write_session(tmp_path / "runs", map(delta, range(5_000)))
    out = tmp_path / "exports" / "s.parquet"

    def fail(done: int) -> None:
        raise RuntimeError(f"stopped at {done}")

    with pytest.raises(RuntimeError, match="stopped at 1000"):
        await export(tmp_path / "runs", sid, out, row_group_rows=1_000, progress=fail)
    assert list(out.parent.iterdir()) == []


async def test_a_cancelled_export_keeps_an_earlier_file(tmp_path):
    """An export cancelled midway (as by Ctrl-C) leaves the earlier export under the output name as it was."""
    sid = await write_session(tmp_path / "runs", map(delta, range(5_000)))
    out = tmp_path / "s.parquet"
    await export(tmp_path / "runs", sid, out)
    before = out.read_bytes()
    async with await open_log(tmp_path / "runs", session=sid, settings=SETTINGS) as log:
        task = asyncio.create_task(export_parquet(log, out, row_group_rows=1_000, progress=lambda _: task.cancel()))
        with pytest.raises(asyncio.CancelledError):
            await task
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["runs", "s.parquet"]
