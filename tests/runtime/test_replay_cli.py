"""``tape replay``, run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec
import pytest

from runtime.events import OrderFilled, Record
from tests.replay.test_verify import copy_with
from tests.runtime.test_cli import tape
from tests.runtime.test_sequencer import paper_inputs, read_all, write_session


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("replay-cli")
    spec, inputs = paper_inputs()
    asyncio.run(write_session(root, spec, inputs))
    return root / "run"


@pytest.mark.parametrize("command", [["replay"], ["replay", "verify"], ["replay", "run"]])
def test_replay_commands_have_complete_help(command):
    done = tape(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: tape replay" in done.stdout
    if command[-1] != "replay":
        assert "examples:" in done.stdout


def test_verify_prints_the_counts_and_exits_0(run):
    done = tape("replay", "verify", str(run))
    assert done.returncode == 0, done.stderr
    assert "records replayed (" in done.stdout and "records/s)" in done.stdout
    assert "order_intent" in done.stdout and done.stdout.rstrip().endswith("ok: every derived event replays exactly")
    report = json.loads(tape("replay", "verify", str(run), "--json").stdout)
    assert report["ok"] and report["divergence"] is None and report["derived"]["order_filled"] >= 1
    assert report["records"] == report["inputs"] + sum(report["derived"].values())


def test_verify_replays_the_segments_between_checkpoints_on_several_processes(tmp_path):
    """A session with checkpoints: --jobs 2 replays it in segments (said in the output), --jobs 1 serially, and a
    --jobs that is no whole number >= 1 is refused."""
    spec, inputs = paper_inputs()
    asyncio.run(write_session(tmp_path, spec, inputs, checkpoint_every=300))
    done = tape("replay", "verify", str(tmp_path / "run"), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert "segments on 2 processes)" in done.stdout and "ok: every derived event replays exactly" in done.stdout
    serial = json.loads(tape("replay", "verify", str(tmp_path / "run"), "--jobs", "1", "--json").stdout)
    parallel = json.loads(tape("replay", "verify", str(tmp_path / "run"), "--jobs", "2", "--json").stdout)
    assert (serial["segments"], serial["jobs"], parallel["jobs"]) == (1, 1, 2) and parallel["segments"] > 2
    assert {k: parallel[k] for k in ("ok", "records", "inputs", "derived")} == {
        k: serial[k] for k in ("ok", "records", "inputs", "derived")}
    info = tape("log", "info", str(tmp_path / "run"))
    assert info.returncode == 0 and "tape replay verify --jobs N uses them" in info.stdout
    assert json.loads(tape("log", "info", str(tmp_path / "run"), "--json").stdout)["checkpoints"][0] >= 300
    refused = tape("replay", "verify", str(tmp_path / "run"), "--jobs", "0")
    assert refused.returncode == 2 and "--jobs must be a whole number >= 1" in refused.stderr


def test_verify_names_the_first_divergence_and_exits_1(run, tmp_path):
    records = asyncio.run(read_all(run))
    i = next(n for n, r in enumerate(records) if type(r.event) is OrderFilled)

    def alter(rs: list[Record]) -> list[Record]:
        rs[i] = Record(rs[i].seq, rs[i].ts_ns, msgspec.structs.replace(rs[i].event, price=rs[i].event.price + 100))
        return rs

    copy = asyncio.run(copy_with(records, tmp_path, alter))
    done = tape("replay", "verify", str(copy))
    assert done.returncode == 1
    assert f"DIVERGED at seq {i + 1} (differs)" in done.stdout
    assert "expected: OrderFilled(" in done.stdout and "got:      OrderFilled(" in done.stdout
    report = json.loads(tape("replay", "verify", str(copy), "--json").stdout)
    assert report["divergence"]["seq"] == i + 1 and report["divergence"]["got"][0] == "order_filled"


def test_a_session_not_written_by_the_sequencer_is_a_clear_error(tmp_path):
    done = tape("synth", "--sessions", "1", "--markets", "1", "--seed", "3", "--duration", "30", "--log", str(tmp_path))
    assert done.returncode == 0, done.stderr
    done = tape("replay", "verify", str(tmp_path / "synth-3-0000"))
    assert done.returncode == 1
    assert "seq 2 is not the 'session_spec' operator command" in done.stderr


def test_run_prints_the_rebuilt_state(run):
    done = tape("replay", "run", str(run))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith("through seq " + f"{len(asyncio.run(read_all(run))):,}")
    assert lines[1].startswith("cash $") and "reserved $" in lines[1]
    assert any(line.startswith("KXSIM-002") for line in lines) and "open orders:" in done.stdout
    state = json.loads(tape("replay", "run", str(run), "--json", "--to", "500").stdout)
    assert state["through_seq"] == 500 and len(state["markets"]) == 3
    assert {"cash", "reserved", "rounding_paid"} <= set(state["cash"])
