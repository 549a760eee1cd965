"""The `tape` command line, run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


def tape(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "TAPE__LOGGING__FORMAT": "json", **(env or {})})


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    done = tape("demo", "--runs", str(runs), "--events", "5000", "--markets", "3", "--seed", "11")
    assert done.returncode == 0, done.stderr
    assert "verified: ok" in done.stdout and "exported:" in done.stdout
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


@pytest.mark.parametrize("command", [
    [], ["demo"], ["log"], ["log", "info"], ["log", "list"], ["log", "cat"], ["log", "verify"], ["log", "repair"],
    ["log", "export"], ["bench"], ["bench", "log"], ["bench", "book"], ["bench", "venue"], ["bench", "env"], ["synth"],
    ["train"], ["eval"],
])
def test_every_command_has_complete_help(command):
    done = tape(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: tape" in done.stdout
    if command and command[-1] not in ("log", "bench"):
        assert "example" in done.stdout, f"tape {' '.join(command)} --help shows no example"


def test_demo_records_a_session_that_info_describes(demo_run):
    done = tape("log", "info", str(demo_run), "--json", "--types")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["status"] == "ended" and info["mode"] == "demo" and info["seed"] == 11
    assert info["last_seq"] == 5002 and len(info["config_hash"]) == 64
    assert info["types"]["session_started"] == 1 and info["types"]["session_ended"] == 1
    human = tape("log", "info", str(demo_run))
    assert f"session        {info['session_id']}" in human.stdout and "records        5,002" in human.stdout


def test_list_shows_the_sessions_of_a_runs_directory(demo_run):
    done = tape("log", "list", str(demo_run.parent))
    assert done.returncode == 0 and demo_run.name in done.stdout and "ended" in done.stdout


def test_cat_filters_by_range_and_type(demo_run):
    done = tape("log", "cat", str(demo_run), "--from", "2", "--to", "6", "--json")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["seq"] for r in rows] == [2, 3, 4, 5, 6] and rows[0]["type"] == "book_snapshot"
    trades = tape("log", "cat", str(demo_run), "--type", "public_trade", "--json").stdout.splitlines()
    assert trades and all(json.loads(t)["type"] == "public_trade" for t in trades)
    human = tape("log", "cat", str(demo_run), "--to", "1").stdout
    assert "session_started" in human and "seed=11" in human


def test_cat_refuses_an_unknown_type_and_lists_the_known_ones(demo_run):
    done = tape("log", "cat", str(demo_run), "--type", "book_exploded")
    assert done.returncode == 2
    assert "unknown event type(s) book_exploded; known: book_delta," in done.stderr


def test_cat_into_a_closed_pipe_is_quiet(demo_run):
    done = subprocess.run(f"'{TAPE}' log cat '{demo_run}' | head -1", shell=True, capture_output=True, text=True)
    assert done.stdout.count("\n") == 1 and "Traceback" not in done.stderr


def test_verify_passes_a_sound_log_and_fails_a_damaged_one_naming_where(demo_run, tmp_path):
    assert tape("log", "verify", str(demo_run)).returncode == 0
    broken = tmp_path / "broken"
    shutil.copytree(demo_run, broken)
    seg = sorted(broken.glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    done = tape("log", "verify", str(broken))
    assert done.returncode == 1
    assert f"DAMAGE: {seg} at byte offset" in done.stdout and "checksum mismatch" in done.stdout
    assert "tape log repair" in done.stdout

    fixed = tmp_path / "fixed"
    done = tape("log", "repair", str(broken), "--out", str(fixed))
    assert done.returncode == 0, done.stderr
    assert "salvaged" in done.stdout and "stopped at the damage" in done.stdout
    assert tape("log", "verify", str(fixed)).returncode == 0


def test_export_writes_parquet(demo_run, tmp_path):
    out = tmp_path / "s.parquet"
    done = tape("log", "export", str(demo_run), "--parquet", str(out))
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and "5,002 rows" in done.stdout


def test_bench_log_prints_the_figures_as_json(tmp_path):
    keep = tmp_path / "kept"
    done = tape("bench", "log", "--events", "20000", "--repeat", "1", "--json", "--log", str(keep))
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    for key in ("file_append_eps", "file_read_eps", "msgspec_encode_eps", "msgspec_decode_eps", "read_vs_decode"):
        assert figures[key] > 0, key
    assert figures["machine"]["cores"] >= 1
    assert (keep / "session.json").exists()


def test_a_bad_setting_names_the_key_and_the_value(demo_run):
    done = tape("log", "info", str(demo_run), env={"TAPE__LOG__SYNC": "sometimes"})
    assert done.returncode == 2
    assert "log.sync = 'sometimes': Invalid enum value 'sometimes'" in done.stderr


def test_a_directory_that_is_not_a_log_is_a_clear_error(tmp_path):
    done = tape("log", "verify", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == f"tape log: {tmp_path}: not a tape log (no session.json)"


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "0"], "argument --from: 0 is not a seq (seqs start at 1)"),
    (["--from", "-3"], "argument --from: -3 is not a seq (seqs start at 1)"),
    (["--to", "0"], "argument --to: 0 is not a seq (seqs start at 1)"),
    (["--from", "x"], "argument --from: 'x' is not a seq (a whole number from 1)"),
])
def test_cat_refuses_a_seq_below_one_as_a_usage_error(demo_run, args, message):
    done = tape("log", "cat", str(demo_run), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert message in done.stderr and "usage: tape log cat" in done.stderr


def test_cat_refuses_a_range_that_ends_before_it_starts(demo_run):
    done = tape("log", "cat", str(demo_run), "--from", "5", "--to", "3")
    assert done.returncode == 2
    assert done.stderr.strip() == "tape log: --to 3 is before --from 5"


def test_export_refuses_a_directory_or_a_missing_directory_before_any_work(demo_run, tmp_path):
    done = tape("log", "export", str(demo_run), "--parquet", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"tape log: --parquet {tmp_path} is a directory; name the Parquet file to "
                                   f"write, e.g. {tmp_path / 'session.parquet'}")
    out = tmp_path / "missing" / "s.parquet"
    done = tape("log", "export", str(demo_run), "--parquet", str(out))
    assert done.returncode == 2
    assert done.stderr.strip() == f"tape log: --parquet {out}: the directory {out.parent} does not exist; create it first"
    assert not out.parent.exists()


def test_a_file_that_cannot_be_written_is_one_line_naming_it(demo_run, tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory")
    out = tmp_path / "plain" / "new"
    done = tape("log", "repair", str(demo_run), "--out", str(out))
    assert done.returncode == 1
    assert done.stderr.strip() == f"tape log: {out}: Not a directory"


def test_list_and_info_show_a_damaged_session_beside_the_others(demo_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(demo_run, runs / demo_run.name)
    shutil.copytree(demo_run, runs / "zz-damaged")
    (runs / "zz-damaged" / "session.json").write_text("{not json")
    for command in ("list", "info"):
        done = tape("log", command, str(runs))
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        good, bad = done.stdout.splitlines()[1:3]
        assert good.startswith(demo_run.name) and " ended " in good
        assert bad.split() == ["zz-damaged", "damaged", "-", "-", "-"]
        assert f"note: zz-damaged is damaged: corrupt log: {runs / 'zz-damaged' / 'session.json'}: unreadable session metadata" in done.stdout
    done = tape("log", "list", str(runs), "--json")
    assert done.returncode == 1
    good, bad = (json.loads(line) for line in done.stdout.splitlines())
    assert good["session_id"] == demo_run.name and good["status"] == "ended"
    assert {k: bad[k] for k in ("session_id", "status", "log")} == {
        "session_id": "zz-damaged", "status": "damaged", "log": str(runs / "zz-damaged")}
    assert "unreadable session metadata" in bad["error"]


def test_verify_counts_the_sound_records_before_damage_in_the_second_frame(tmp_path):
    import asyncio

    from config import LogSettings
    from runtime.log import FileLog, SessionMeta
    from tests.log.contract import entries

    run = tmp_path / "run"

    async def write() -> list[int]:
        log = FileLog.create(run, SessionMeta(session_id="frames"), LogSettings(sync="batch"))
        ends = []
        for lo in (0, 30, 60):
            await log.append(entries(30, lo))  # one frame each, durable when append returns
            ends.append(sorted(run.glob("*.seg"))[0].stat().st_size)
        await log.close()
        return ends

    first_end, second_end, _ = asyncio.run(write())
    seg = sorted(run.glob("*.seg"))[0]
    data = bytearray(seg.read_bytes())
    data[(first_end + second_end) // 2] ^= 0xFF  # inside the second frame's payload
    seg.write_bytes(bytes(data))
    done = tape("log", "verify", str(run))
    assert done.returncode == 1
    assert f"{run}: 30 records in 1 segment(s), 1 frame(s), seq 1..30" in done.stdout
    assert f"DAMAGE: {seg} at byte offset {first_end}" in done.stdout
    assert "to salvage the 30 records before the damage" in done.stdout
    report = json.loads(tape("log", "verify", str(run), "--json").stdout)
    assert (report["ok"], report["records"], report["frames"], report["last_seq"]) == (False, 30, 1, 30)
