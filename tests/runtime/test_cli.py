"""The `tape` command line, run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import argparse
import json
import os
import re
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
    from runtime.events import EVENT_TYPES

    done = tape("log", "cat", str(demo_run), "--type", "book_exploded")
    assert done.returncode == 2
    known = done.stderr.partition("unknown event type(s) book_exploded; known: ")[2].strip().split(", ")
    assert known == sorted(EVENT_TYPES) and "book_delta" in known, done.stderr


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


def test_a_file_where_the_new_log_goes_is_one_line_naming_it(demo_run, tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory")
    out = tmp_path / "plain" / "new"
    done = tape("log", "repair", str(demo_run), "--out", str(out))
    assert done.returncode == 2
    assert done.stderr.strip() == f"tape log: --out {out}: {tmp_path / 'plain'} is not a directory"


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


# --- the same conventions in every command: exit statuses, paths, valid values, examples, global options ---

ID_SHAPE = r"(?:(?:paper|record|demo|fidelity)-)?\d{8}T\d{6}Z-[0-9a-f]{6}"  # runtime.ids.new_session_id


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    """``tape ARGV`` in this process: (exit status, stdout, stderr)."""
    from runtime.cli import main

    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse: --help (0), a malformed command line (2)
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def plain_file(tmp_path) -> Path:
    path = tmp_path / "plain.txt"
    path.write_text("a file, not a directory")
    return path


def test_tape_help_documents_the_exit_statuses(capsys):
    from runtime.cli import EXIT_STATUSES

    status, out, _ = run_main(capsys, "--help")
    assert status == 0 and out.endswith(EXIT_STATUSES)
    assert EXIT_STATUSES == (
        "exit status:\n"
        "  0    done (and what was checked is sound)\n"
        "  1    the data is bad or does not verify: a damaged log, a replay that diverges, a directory that\n"
        "       holds no tape log, data a command cannot use; or a file could not be read or written\n"
        "  2    the command was used wrongly: an unknown option, a bad value or setting, a path that does not\n"
        "       exist, or a file where a directory is expected\n"
        "  130  interrupted (Ctrl-C)\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["log", "info", "{missing}"], "tape log: {missing}: no such directory"),
    (["log", "info", "{file}"], "tape log: {file}: not a directory"),
    (["log", "list", "{missing}"], "tape log: {missing}: no such directory"),
    (["log", "list", "{file}"], "tape log: {file}: not a directory"),
    (["log", "cat", "{file}"], "tape log: {file}: not a directory"),
    (["log", "verify", "{missing}"], "tape log: {missing}: no such directory"),
    (["log", "verify", "{file}"], "tape log: {file}: not a directory"),
    (["log", "repair", "{file}", "--out", "{tmp}/new"], "tape log: {file}: not a directory"),
    (["log", "export", "{file}", "--parquet", "{tmp}/s.parquet"], "tape log: {file}: not a directory"),
    (["replay", "verify", "{file}"], "tape replay: {file}: not a directory"),
    (["replay", "verify", "{missing}"], "tape replay: {missing}: no such directory"),
    (["replay", "run", "{file}"], "tape replay: {file}: not a directory"),
    (["demo", "--runs", "{file}"], "tape demo: --runs {file}: not a directory"),
    (["demo", "--runs", "{file}/runs"], "tape demo: --runs {file}/runs: {file} is not a directory"),
    (["synth", "--log", "{file}"], "tape synth: --log {file}: not a directory"),
    (["record", "--log", "{file}"], "tape record: --log {file}: not a directory"),
    (["bench", "log", "--events", "10000", "--log", "{file}/run"], "tape bench: --log {file}/run: {file} is not a directory"),
    (["bench", "book", "--repeat", "0"], "tape bench: --repeat must be at least 1, got 0"),
    (["bench", "venue", "--repeat", "0"], "tape bench: --repeat must be at least 1, got 0"),
    (["eval", "--data", "{file}"], "tape eval: --data {file}: not a directory (a run directory or a directory of runs), "
     "nor a .parquet export"),
    (["eval", "--data", "{missing}"], "tape eval: --data {missing}: no such log, directory of runs, Parquet file or "
     "postgresql:// URL"),
    (["eval", "--data", "{tmp}", "--cash", "0"], "tape eval: --cash must be a positive number of dollars, got 0"),
])
def test_a_command_used_wrongly_exits_2_naming_the_mistake(capsys, tmp_path, plain_file, argv, message):
    """A path that does not exist, or a file where a directory goes, is a usage mistake in every command: exit 2, one
    line naming the path (and the option), found before any work starts."""
    where = {"missing": tmp_path / "missing", "file": plain_file, "tmp": tmp_path}
    status, out, err = run_main(capsys, *(a.format(**where) for a in argv))
    assert (status, err) == (2, message.format(**where) + "\n")
    assert out == "" and not (tmp_path / "missing").exists()


def test_a_file_in_the_way_that_a_command_did_not_check_is_still_a_usage_mistake(capsys, monkeypatch, plain_file):
    """The last line of defence in main(): a NotADirectoryError names the file in the way, exit 2."""
    from runtime.cli import demo

    async def writes_under_the_file(args, settings):
        (plain_file / "run" / "segment").mkdir(parents=True)

    monkeypatch.setattr(demo, "run", writes_under_the_file)
    assert run_main(capsys, "demo")[::2] == (2, f"tape demo: {plain_file}: not a directory\n")


def test_train_refuses_an_out_that_is_a_file_before_training(capsys, plain_file, demo_run):
    status, _, err = run_main(capsys, "train", "--data", str(demo_run), "--out", str(plain_file))
    assert (status, err) == (2, f"tape train: --out {plain_file}: not a directory\n")


def test_data_that_cannot_be_used_exits_1(capsys, tmp_path, demo_run):
    """The path is right, what it holds is not: exit 1."""
    (tmp_path / "empty").mkdir()
    status, _, err = run_main(capsys, "eval", "--data", str(tmp_path / "empty"))
    assert (status, err) == (1, f"tape eval: --data: {tmp_path / 'empty'}: no session logs (run directories) or "
                                "Parquet exports in it\n")
    status, _, err = run_main(capsys, "log", "verify", str(tmp_path / "empty"))
    assert (status, err) == (1, f"tape log: {tmp_path / 'empty'}: not a tape log (no session.json)\n")


def test_the_demo_log_is_refused_by_replay_as_market_data_only(capsys, demo_run):
    for command in ("verify", "run"):
        status, out, err = run_main(capsys, "replay", command, str(demo_run))
        assert (status, out) == (1, "")
        assert err == (f"tape replay: {demo_run}: a demo session holds market data only, no decisions to replay (tape "
                       f"replay replays sessions of tape paper; `tape log verify {demo_run}` checks this one): seq 2 is "
                       "not the 'session_spec' operator command: this session was not written by the sequencer (its "
                       "topology cannot be rebuilt)\n")


@pytest.mark.parametrize(("argv", "message"), [
    (["--log-level", "loud", "demo"], "argument --log-level: invalid choice: 'loud' (choose from 'debug', 'info', "
     "'warning', 'error')"),
    (["demo", "--log-format", "xml"], "argument --log-format: invalid choice: 'xml' (choose from 'auto', 'console', "
     "'json')"),
    (["train", "--data", ".", "--env", "multi"], "argument --env: invalid choice: 'multi' (choose from 'roles', "
     "'single')"),
    (["record", "--venue", "nyse"], "argument --venue: invalid choice: 'nyse' (choose from 'sim', 'kalshi-demo', "
     "'kalshi')"),
])
def test_a_value_outside_a_fixed_set_is_refused_listing_the_valid_ones(capsys, argv, message):
    status, _, err = run_main(capsys, *argv)
    assert status == 2 and err.rstrip().endswith(message)


@pytest.mark.parametrize(("name", "value", "key", "valid"), [
    ("TAPE__PAPER__QUEUE_MODEL", "fifo", "paper.queue_model", "'conservative', 'proportional', 'share', 'orders'"),
    ("TAPE__LOG__SYNC", "sometimes", "log.sync", "'batch', 'interval', 'none'"),
    ("TAPE__LOGGING__LEVEL", "loud", "logging.level", "'debug', 'info', 'warning', 'error'"),
    ("TAPE__LOGGING__FORMAT", "xml", "logging.format", "'auto', 'console', 'json'"),
    ("TAPE__SESSION__VENUE", "nyse", "session.venue", "'sim', 'kalshi-demo', 'kalshi'"),
])
def test_a_bad_setting_is_refused_listing_the_valid_values(capsys, monkeypatch, name, value, key, valid):
    """Our words around msgspec's (which change with its versions): the key, the value, then the valid values."""
    monkeypatch.setenv(name, value)
    status, _, err = run_main(capsys, "log", "list", ".")
    assert status == 2
    assert err.startswith(f"tape: settings: shipped defaults + environment: {key} = {value!r}: ")
    assert err.endswith(f" (valid values: {valid})\n")


def test_a_policy_that_is_neither_built_in_nor_a_model_is_refused_listing_the_choices(capsys, demo_run):
    status, _, err = run_main(capsys, "eval", "--data", str(demo_run), "--policies", "rule,greedy")
    assert status == 2
    assert err.startswith("tape eval: --policies greedy: greedy: not a model")
    assert err.endswith("; --policies takes rule, flow, random[:SEED] or a model directory saved by tape train\n")


def test_markets_the_data_does_not_hold_are_refused_listing_those_it_holds(capsys, demo_run):
    status, _, err = run_main(capsys, "eval", "--data", str(demo_run), "--markets", "KXNOPE")
    assert (status, err) == (2, "tape eval: --markets KXNOPE: no such market in --data; its markets are KXDEMO-000, "
                                "KXDEMO-001, KXDEMO-002\n")


def test_demo_names_event_types_as_log_cat_does_and_points_to_paper(capsys, tmp_path):
    from runtime.events import EVENT_TYPES

    status, out, err = run_main(capsys, "demo", "--runs", str(tmp_path), "--events", "3000", "--markets", "2",
                                "--seed", "5", "--no-export")
    assert status == 0, err
    (read_back,) = [line for line in out.splitlines() if line.startswith("read back: ")]
    names = [part.rsplit(" ", 1)[0] for part in read_back.removeprefix("read back: ").split(", ")]
    assert names == ["book_delta", "book_snapshot", "public_trade", "session_ended", "session_started"]
    assert set(names) <= set(EVENT_TYPES)
    assert out.endswith("then the main job, trading on market data like this and proving the run by replay:\n"
                        "  tape paper\n")
    assert "replay" not in out.split("\nlook further:")[0]  # the demo claims no replay of its log


def _helps() -> dict[str, str]:
    """Every command's --help text (``tape paper`` aside: its owner checks it), by command."""
    from runtime.cli import _parser

    texts = {"tape": _parser().format_help()}

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    texts[f"{name} {sub}"] = child.format_help()
                    walk(child, f"{name} {sub}")

    walk(_parser(), "tape")
    del texts["tape paper"]
    return texts


def test_every_help_example_names_runs_as_tape_names_them():
    """Run directories in examples are shaped like new_session_id's (runs/paper-20261122T185900Z-3fa9c1), never a
    made-up runs/<id>; synth's are synth-SEED-NNNN; a DSN's session likewise."""
    from runtime.ids import new_session_id

    assert re.fullmatch(ID_SHAPE, new_session_id("paper")) and re.fullmatch(ID_SHAPE, new_session_id())
    allowed = re.compile(rf"runs/(?:{ID_SHAPE}(?:-repaired)?|synth(?:/synth-\d+-\d{{4}})?|fidelity-\*)?")  # (a glob of them)
    for command, text in _helps().items():
        assert "<id>" not in text, command
        for path in re.findall(r"runs/[^\s,')]*", text):
            assert allowed.fullmatch(path), f"{command}: {path}"
        for session in re.findall(r"session=([^\s,')\]]*)", text):
            assert session in ("", "ID") or re.fullmatch(ID_SHAPE, session), f"{command}: session={session}"


def test_every_command_takes_the_global_options_before_or_after_it():
    from runtime.cli import _parser, _settings

    def settings(*argv):
        return _settings(_parser().parse_args(argv))

    for command in ([*argv] for argv in (["demo"], ["log", "cat", "x"], ["replay", "verify", "x"], ["paper"])):
        before = settings("--log-level", "error", "--log-format", "json", *command)
        after = settings(*command, "--log-level", "error", "--log-format", "json")
        assert (before.logging.level, before.logging.format) == (after.logging.level, after.logging.format) == (
            "error", "json")
        assert settings("--log-level", "debug", *command, "--log-level", "warning").logging.level == "warning"
        assert settings("--log-level", "debug", *command).logging.level == "debug"  # nothing after: before stands


def test_config_before_or_after_the_command_is_read_and_after_wins(capsys, tmp_path):
    seeds = {}
    for seed in (3, 4):
        seeds[seed] = tmp_path / f"seed{seed}.toml"
        seeds[seed].write_text(f"[session]\nseed = {seed}\n")
    demo = ["demo", "--events", "2000", "--markets", "1", "--no-export"]

    def recorded_seed(*argv: str) -> int:
        runs = tmp_path / f"runs{len(list(tmp_path.iterdir()))}"
        status, _, err = run_main(capsys, *argv, "--runs", str(runs))
        assert status == 0, err
        (run,) = runs.iterdir()
        return json.loads((run / "session.json").read_text())["seed"]

    assert recorded_seed("--config", str(seeds[3]), *demo) == 3
    assert recorded_seed(*demo, "--config", str(seeds[4])) == 4
    assert recorded_seed("--config", str(seeds[3]), *demo, "--config", str(seeds[4])) == 4
    status, _, err = run_main(capsys, "log", "list", str(tmp_path), "--config", str(tmp_path / "none.toml"))
    assert (status, err) == (2, f"tape: settings: {tmp_path / 'none.toml'}: cannot read the settings file (No such "
                                "file or directory)\n")


def test_python_m_runtime_cli_takes_config_after_the_command_and_exits_2_on_a_file_for_a_directory(tmp_path):
    """The entry point as a user runs it, in a subprocess."""
    config = tmp_path / "tape.toml"
    config.write_text("[session]\nseed = 9\n")
    run = [sys.executable, "-m", "runtime.cli"]
    env = {**os.environ, "TAPE__LOGGING__FORMAT": "json"}
    done = subprocess.run([*run, "demo", "--runs", str(tmp_path / "runs"), "--events", "2000", "--markets", "1",
                           "--no-export", "--config", str(config)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("  tape paper\n")
    (log,) = (tmp_path / "runs").iterdir()
    assert log.name.startswith("demo-") and re.fullmatch(ID_SHAPE, log.name)
    done = subprocess.run([*run, "log", "info", str(log), "--json"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["seed"] == 9
    done = subprocess.run([*run, "replay", "verify", str(config)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)
    assert (done.returncode, done.stderr) == (2, f"tape replay: {config}: not a directory\n")


@pytest.mark.postgres
def test_a_dsn_that_names_no_stored_session_is_a_usage_mistake(capsys, pg_schema_dsn):
    for argv in (["log", "verify", pg_schema_dsn], ["replay", "verify", pg_schema_dsn]):
        status, _, err = run_main(capsys, *argv)
        assert status == 2 and err.startswith(f"tape {argv[0]}: ") and "name a session with ?session=ID (latest: " in err
    for argv in (["log", "cat", f"{pg_schema_dsn}&session=nope"], ["replay", "run", f"{pg_schema_dsn}&session=nope"]):
        status, _, err = run_main(capsys, *argv)
        assert (status, err) == (2, f"tape {argv[0]}: ?session=nope: no such session in the database (tape log list "
                                    "DSN names those stored)\n")
