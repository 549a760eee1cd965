"""``tape log``: inspect, check, salvage and export event logs."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections import Counter
from pathlib import Path

import msgspec

from config import Settings

from ..events import EVENT_TYPES, event_type, to_builtins
from ..log import (
    EventLog,
    FileLog,
    SessionMeta,
    create_log,
    is_file_log,
    is_postgres,
    list_sessions,
    split_target,
)
from ..log.tools import repair_log, verify_log
from . import UsageError, log_target, new_directory, open_log_target
from .progress import Progress
from .render import render

LOG_HELP = "a run directory, or postgresql://…?session=ID"
RUN = "runs/paper-20261122T185900Z-3fa9c1"  # the examples' run directory: an id as tape paper makes them


def _seq(text: str) -> int:
    """An argparse ``type=``: a seq, a whole number from 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seq (a whole number from 1)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a seq (seqs start at 1)")
    return value


def register(commands: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    log = commands.add_parser("log", help="inspect, check, salvage and export event logs",
                              description="Inspect, check, salvage and export event logs.", formatter_class=fmt)
    sub = log.add_subparsers(dest="log_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("info", help="a session's metadata, size and health", formatter_class=fmt,
                       description="Show a session's metadata (status, seed, config hash, code version), its "
                       "seq range and time span, and for a file log its segments and any torn tail or damage. "
                       "Given a directory of runs or a DSN without ?session=, list the sessions instead.",
                       epilog=f"examples:\n  tape log info {RUN}\n"
                       f"  {f'tape log info --types {RUN}':<58} (also counts events by type)\n"
                       f"  {'tape log info runs':<58} (a directory of runs: lists its sessions)\n"
                       "  tape log info postgresql://postgres@127.0.0.1/test")
    p.add_argument("log", metavar="LOG", help=LOG_HELP + " (or a directory of runs / a DSN to list sessions)")
    p.add_argument("--types", action="store_true", help="also count the events by type (reads the whole log)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=info)

    p = sub.add_parser("list", help="list the sessions under a directory of runs or a DSN", formatter_class=fmt,
                       description="List every session (oldest first) with its status and last seq. A run "
                       "whose metadata cannot be read is listed as damaged, with its error, after the others, "
                       "and the exit status is then 1.",
                       epilog="examples:\n  tape log list runs\n  tape log list postgresql://postgres@127.0.0.1/test")
    p.add_argument("target", metavar="TARGET", help="a directory of run directories, or a postgresql:// DSN")
    p.add_argument("--json", action="store_true", help="print JSON lines, one session each")
    p.set_defaults(handler=list_cmd)

    p = sub.add_parser("cat", help="print records", formatter_class=fmt,
                       description="Print a session's records in seq order: one line each, prices in dollars "
                       "and counts in contracts, or (--json) one JSON object per line with the exact integer "
                       "units (prices in 1/10,000 $, counts in 1/100 contract, money in micro-dollars).",
                       epilog=f"examples:\n  tape log cat {RUN} --from 100 --to 200\n"
                       f"  tape log cat {RUN} --type public_trade,order_filled --json | jq .\n\n"
                       "event types: " + ", ".join(sorted(EVENT_TYPES)))
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--from", dest="first", type=_seq, default=1, metavar="SEQ", help="first seq (default 1)")
    p.add_argument("--to", dest="last", type=_seq, default=None, metavar="SEQ", help="last seq (default: the end)")
    p.add_argument("--type", dest="types", action="append", default=[], metavar="TYPE",
                   help="only these event types (repeat, or comma-separate)")
    p.add_argument("--json", action="store_true", help="JSON lines with exact integer units")
    p.add_argument("--follow", action="store_true", help="keep printing new records until the session ends")
    p.set_defaults(handler=cat)

    p = sub.add_parser("verify", help="check every checksum, header and seq; non-zero exit on any problem",
                       formatter_class=fmt,
                       description="Read the whole log: segment headers and format versions, every frame's "
                       "checksum, every record's schema, seq continuity from 1. Exits 0 if sound, 1 if damaged "
                       "(with the segment and byte offset of the first damage). A torn tail (an append that was "
                       "never acknowledged) is reported but is not damage.",
                       epilog=f"example:\n  tape log verify {RUN} && echo sound")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(handler=verify)

    p = sub.add_parser("repair", help="salvage every record before the first damage into a new log",
                       formatter_class=fmt,
                       description="Copy every record before the first damage into a new, valid log with the "
                       "same session metadata. The damaged log is left untouched.",
                       epilog=f"example:\n  tape log repair {RUN} --out {RUN}-repaired")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--out", required=True, metavar="NEW",
                   help="the new run directory (must not exist), or a postgresql:// DSN")
    p.set_defaults(handler=repair)

    p = sub.add_parser("export", help="export a session to Parquet (pandas, polars, Ray Data)",
                       formatter_class=fmt,
                       description="Write one Parquet file with a row per record: seq, ts_ns, type, and a "
                       "column per event field (exact integer units). Read it with pandas.read_parquet, "
                       "polars.read_parquet or ray.data.read_parquet.",
                       epilog=f"example:\n  tape log export {RUN} --parquet session.parquet")
    p.add_argument("log", metavar="LOG", help=LOG_HELP)
    p.add_argument("--parquet", required=True, metavar="OUT", help="the Parquet file to write")
    p.set_defaults(handler=export)


def _time(ns: int | None) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


async def info(args: argparse.Namespace, settings: Settings) -> int:
    target = log_target(args.log)
    if (is_postgres(target) and split_target(target)[1] is None) or (
        not is_postgres(target) and Path(target).is_dir() and not is_file_log(Path(target))
        and any(is_file_log(p) for p in Path(target).iterdir())
    ):
        return await list_cmd(argparse.Namespace(target=target, json=args.json), settings)
    async with await open_log_target(target, settings) as log:
        meta = await log.meta()
        first = last = None
        async for batch in log.read(1, 1):
            first = batch[0]
        if meta.last_seq:
            async for batch in log.read(meta.last_seq, meta.last_seq):
                last = batch[-1]
        out: dict[str, object] = {"log": log.location, **msgspec.to_builtins(meta)}
        out["first_ts_ns"] = first.ts_ns if first else None
        out["last_ts_ns"] = last.ts_ns if last else None
        out["checkpoints"] = await log.checkpoints()
        if isinstance(log, FileLog):
            files = sorted(Path(log.location).glob("*.seg"))
            out["segments"] = len(files)
            out["bytes"] = sum(f.stat().st_size for f in files)
            if log.damage is not None:
                out["damage"] = str(log.damage)
        if args.types:
            counts: Counter[str] = Counter()
            async for batch in log.read():
                counts.update(event_type(r.event) for r in batch)
            out["types"] = dict(sorted(counts.items()))
    if args.json:
        print(msgspec.json.encode(out).decode())
        return 0
    span = ""
    if first and last:
        span = f"  ({(last.ts_ns - first.ts_ns) / 1e9:,.1f} s of event time)"
    lines = [
        f"log            {out['log']}",
        f"session        {meta.session_id}",
        f"status         {meta.status}" + (f" ({meta.end_reason})" if meta.end_reason else ""),
        f"mode / venue   {meta.mode or '-'} / {meta.venue or '-'}",
        f"seed           {meta.seed}",
        f"config hash    {meta.config_hash or '-'}",
        f"code version   {meta.code_version or '-'}",
        f"schema         v{meta.schema_version}",
        f"created        {_time(meta.created_ns)}" + (f", ended {_time(meta.ended_ns)}" if meta.ended_ns else ""),
        f"records        {meta.last_seq:,} (seq 1..{meta.last_seq}){span}",
    ]
    if "segments" in out:
        lines.append(f"storage        {out['segments']} segment(s), {out['bytes']:,} bytes")
    checkpoints: list[int] = out["checkpoints"]  # type: ignore[assignment]
    lines.append(f"checkpoints    {len(checkpoints)}" + (f" (seq {', '.join(f'{c:,}' for c in checkpoints[:3])}"
                                                      f"{', …' if len(checkpoints) > 3 else ''}; "
                                                      "tape replay verify --jobs N uses them)" if checkpoints else ""))
    if "damage" in out:
        lines.append(f"DAMAGE         {out['damage']}")
    if "types" in out:
        lines.append("types          " + ", ".join(f"{k} {v:,}" for k, v in out["types"].items()))  # type: ignore[union-attr]
    print("\n".join(lines))
    return 1 if "damage" in out else 0


async def _sessions(target: str, settings: Settings) -> tuple[list[SessionMeta], list[tuple[Path, str]]]:
    """The sessions under ``target``, oldest first, and ``(run directory, error)`` for each unreadable run."""
    damaged: list[tuple[Path, str]] = []
    return await list_sessions(target, settings.log, damaged=damaged), damaged


async def list_cmd(args: argparse.Namespace, settings: Settings) -> int:
    log_target(args.target)
    metas, damaged = await _sessions(args.target, settings)
    if args.json:
        for meta in metas:
            print(msgspec.json.encode(meta).decode())
        for run, error in damaged:
            print(msgspec.json.encode({"session_id": run.name, "status": "damaged", "log": str(run),
                                       "error": error}).decode())
        return 1 if damaged else 0
    if not metas and not damaged:
        print(f"no sessions under {args.target}")
        return 0
    print(f"{'session':<36} {'status':<8} {'mode':<7} {'records':>12}  created")
    for m in metas:
        print(f"{m.session_id:<36} {m.status:<8} {m.mode or '-':<7} {m.last_seq:>12,}  {_time(m.created_ns)}")
    for run, _ in damaged:
        print(f"{run.name:<36} {'damaged':<8} {'-':<7} {'-':>12}  -")
    for run, error in damaged:
        print(f"note: {run.name} is damaged: {error}")
    return 1 if damaged else 0


def _types(values: list[str]) -> set[str] | None:
    wanted = {t.strip() for v in values for t in v.split(",") if t.strip()}
    unknown = sorted(wanted - EVENT_TYPES.keys())
    if unknown:
        raise UsageError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}")
    return wanted or None


async def cat(args: argparse.Namespace, settings: Settings) -> int:
    if args.last is not None and args.last < args.first:
        raise UsageError(f"--to {args.last} is before --from {args.first}")
    wanted = _types(args.types)
    out = sys.stdout
    encode = msgspec.json.Encoder().encode
    async with await open_log_target(args.log, settings) as log:
        batches = log.follow(args.first) if args.follow else log.read(args.first, args.last)
        async for batch in batches:
            lines = []
            for record in batch:
                if args.last is not None and record.seq > args.last:
                    return 0
                if wanted is not None and event_type(record.event) not in wanted:
                    continue
                lines.append(encode(to_builtins(record)).decode() if args.json else render(record))
            if lines:
                out.write("\n".join(lines) + "\n")
        out.flush()
    return 0


async def verify(args: argparse.Namespace, settings: Settings) -> int:
    progress = Progress("verify")
    async with await open_log_target(args.log, settings) as log:
        report = await verify_log(log, progress)
    progress.done()
    if args.json:
        print(msgspec.json.encode({
            "log": report.location, "ok": report.ok, "records": report.records, "frames": report.frames,
            "segments": report.segments, "last_seq": report.last_seq,
            "problems": [str(p) for p in report.problems], "notes": report.notes}).decode())
    else:
        unit = f"{report.segments} segment(s), {report.frames:,} frame(s)" if report.segments else f"{report.frames:,} page(s)"
        print(f"{report.location}: {report.records:,} records in {unit}, seq 1..{report.last_seq}")
        for note in report.notes:
            print(f"note: {note}")
        for problem in report.problems:
            print(f"DAMAGE: {problem}")
        print("ok: every header, checksum and seq is sound" if report.ok else
              f"FAILED: run `tape log repair {args.log} --out NEW` to salvage the {report.last_seq:,} records before the damage")
    return 0 if report.ok else 1


async def repair(args: argparse.Namespace, settings: Settings) -> int:
    out = args.out
    if not is_postgres(out):
        if Path(out).exists():
            raise UsageError(f"--out {out} already exists; name a new run directory")
        new_directory(out, "--out")

    async def create(meta: SessionMeta) -> EventLog:
        if is_postgres(out):
            return await create_log(out, meta, settings.log)
        return FileLog.create(Path(out), meta, settings.log)

    progress = Progress("repair")
    async with await open_log_target(args.log, settings) as src:
        report = await repair_log(src, create, progress)
    progress.done()
    print(f"salvaged {report.salvaged:,} records (seq 1..{report.salvaged}) into {report.destination}")
    if report.damage is not None:
        print(f"stopped at the damage: {report.damage}")
    else:
        print("no damage found: the copy is complete")
    return 0


async def export(args: argparse.Namespace, settings: Settings) -> int:
    from replay.export import ExportError, export_parquet

    out = Path(args.parquet)
    if out.is_dir():
        raise UsageError(f"--parquet {out} is a directory; name the Parquet file to write, e.g. {out / 'session.parquet'}")
    if not out.parent.is_dir():
        raise UsageError(f"--parquet {out}: the directory {out.parent} does not exist; create it first")
    async with await open_log_target(args.log, settings) as log:
        total = (await log.meta()).last_seq
        progress = Progress("export", total)
        try:
            summary = await export_parquet(log, out, progress=progress)
        except ExportError as exc:
            progress.done()
            print(f"tape log export: {exc}; nothing was written to {out}", file=sys.stderr)
            return 1
    progress.done()
    print(f"wrote {summary.rows:,} rows in {summary.row_groups} row group(s), {summary.bytes:,} bytes, to {args.parquet} "
          f"({summary.rows / max(summary.seconds, 1e-9):,.0f} rows/s)")
    return 0
