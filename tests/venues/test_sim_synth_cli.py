"""``tape synth`` as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.log import open_log
from runtime.venues.sim import derive_seed

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"


def tape(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TAPE__LOGGING__FORMAT": "json"})


def synth(out: Path, seed: int = 5, *more: str) -> subprocess.CompletedProcess[str]:
    done = tape("synth", "--sessions", "2", "--markets", "3", "--seed", str(seed), "--log", str(out),
                "--duration", "600", *more)
    assert done.returncode == 0, done.stderr
    return done


def segments(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.seg"))}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("synth") / "a"
    return out, synth(out)


def test_help_is_complete_with_an_example():
    done = tape("synth", "--help")
    assert done.returncode == 0, done.stderr
    for flag in ("--sessions", "--markets", "--seed", "--log", "--duration", "--jobs", "example"):
        assert flag in done.stdout


def test_synth_writes_one_ended_session_per_run_directory(first_run):
    """Two sessions, named from the seed; each says synth/sim, its derived seed, and ended cleanly."""
    out, done = first_run
    assert sorted(p.name for p in out.iterdir()) == ["synth-5-0000", "synth-5-0001"]
    assert "wrote 2 session(s) of 3 market(s)" in done.stdout
    assert "synth: session 2/2 synth-5-0001" in done.stderr  # the progress line
    for k, run in enumerate(sorted(out.iterdir())):
        info = tape("log", "info", str(run), "--json", "--types")
        assert info.returncode == 0, info.stderr
        meta = json.loads(info.stdout)
        assert (meta["status"], meta["mode"], meta["venue"]) == ("ended", "synth", "sim")
        assert meta["seed"] == derive_seed(5, "session", k) and len(meta["config_hash"]) == 64
        types = meta["types"]
        assert types["session_started"] == types["session_ended"] == 1
        assert types["book_snapshot"] == 3 and types["market_lifecycle"] == 12
        assert types["book_delta"] > 100 and types["public_trade"] > 0


async def test_the_session_starts_with_its_metadata_and_ends_after_every_settlement(first_run):
    out, _ = first_run
    async with await open_log(out / "synth-5-0000") as log:
        records = [r for batch in log.read_sync() for r in batch]
    first, last = records[0].event, records[-1].event
    assert type(first).__name__ == "SessionStarted"
    assert (first.session_id, first.mode, first.venue, first.markets) == (
        "synth-5-0000", "synth", "sim", ("KXSIM-000", "KXSIM-001", "KXSIM-002"))
    assert type(last).__name__ == "SessionEnded"
    settled = [r.event.market for r in records if getattr(r.event, "kind", None) == "settled"]
    assert sorted(settled) == ["KXSIM-000", "KXSIM-001", "KXSIM-002"]
    assert [r.seq for r in records] == list(range(1, len(records) + 1))


def test_the_same_seed_writes_byte_identical_segments(first_run, tmp_path):
    """Nothing wall-clock reaches the events: a second run with the same seed writes the same bytes."""
    out, _ = first_run
    again = tmp_path / "b"
    synth(again)
    assert segments(again) == segments(out)
    assert len(segments(out)) == 2


def test_sessions_written_in_parallel_are_the_same_bytes(first_run, tmp_path):
    """--jobs writes each session in its own process, exactly as one process would."""
    out, _ = first_run
    parallel = tmp_path / "p"
    synth(parallel, 5, "--jobs", "2")
    assert segments(parallel) == segments(out)


def test_another_seed_writes_other_sessions(first_run, tmp_path):
    out, _ = first_run
    other = tmp_path / "c"
    synth(other, 6)
    assert sorted(p.name for p in other.iterdir()) == ["synth-6-0000", "synth-6-0001"]
    assert list(segments(other).values()) != list(segments(out).values())


def test_synth_refuses_to_write_over_existing_sessions(first_run):
    out, _ = first_run
    done = tape("synth", "--sessions", "1", "--markets", "1", "--seed", "5", "--log", str(out), "--duration", "60")
    assert done.returncode == 2
    assert f"tape synth: {out / 'synth-5-0000'} already exists: the same --seed names the same sessions" in done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--sessions", "0"], "--sessions, --markets and --jobs must be at least 1"),
    (["--markets", "0"], "--sessions, --markets and --jobs must be at least 1"),
    (["--jobs", "0"], "--sessions, --markets and --jobs must be at least 1"),
    (["--duration", "0"], "--duration must be positive"),
    (["--log", "postgresql://localhost/test"], "tape synth writes file logs; pass --log DIR"),
])
def test_synth_explains_bad_arguments(args, message, tmp_path):
    done = tape("synth", "--log", str(tmp_path), *args)
    assert done.returncode == 2 and message in done.stderr


async def test_the_synth_settings_reach_the_model(tmp_path):
    """With [synth] tick = 500 (from the environment), every order, level and trade lies on the 5-cent grid."""
    out = tmp_path / "tick"
    done = subprocess.run([TAPE, "synth", "--sessions", "1", "--markets", "3", "--seed", "3", "--log", str(out),
                           "--duration", "600"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__SYNTH__TICK": "500"})
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    prices = []
    async with await open_log(run) as log:
        async for batch in log.read():
            for record in batch:
                event = record.event
                prices += [getattr(event, f) for f in ("price", "yes_price") if hasattr(event, f)]
                prices += [p for levels in (getattr(event, "yes_bids", ()), getattr(event, "no_bids", ())) for p, _ in levels]
    assert prices and all(p % 500 == 0 for p in prices)


# --- the fair-value sidecar ------------------------------------------------------------------------------------
def test_each_session_gets_its_fair_value_paths_beside_the_log(first_run):
    """fair.msgpack in each run directory: one path per market, starting at the session's start, times ascending,
    probabilities in (0, 1); it is not a segment of the log."""
    from runtime.venues.sim.session import EPOCH_NS, FAIR_FILE, read_fair

    out, _ = first_run
    for k, run in enumerate(sorted(out.iterdir())):
        assert (run / FAIR_FILE).is_file()
        sidecar = read_fair(run)
        assert sidecar is not None
        assert (sidecar.session_id, sidecar.seed) == (run.name, derive_seed(5, "session", k))
        assert [m.market for m in sidecar.markets] == ["KXSIM-000", "KXSIM-001", "KXSIM-002"]
        for path in sidecar.markets:
            assert path.ts_ns[0] == EPOCH_NS and path.ts_ns == sorted(path.ts_ns) and len(path.ts_ns) > 10
            assert all(0 < f < 1 for f in path.fair) and len(set(path.fair)) > 10
    assert FAIR_FILE not in {Path(name).name for name in segments(out)}


async def test_the_log_is_byte_identical_with_and_without_the_sidecar(tmp_path):
    """The sidecar only records the model's latent path: the segment files are the same bytes when it is not kept."""
    from config import Settings
    from runtime.cli.synth import _Plan, _write
    from runtime.venues.sim.session import FAIR_FILE

    settings = Settings()
    for name, fair in (("with", True), ("without", False)):
        (tmp_path / name).mkdir()
        await _write(_Plan(tmp_path / name, "synth-9-0000", derive_seed(9, "session", 0), 3, 600.0, fair=fair), settings)
    assert (tmp_path / "with" / "synth-9-0000" / FAIR_FILE).is_file()
    assert not (tmp_path / "without" / "synth-9-0000" / FAIR_FILE).exists()
    assert segments(tmp_path / "with") == segments(tmp_path / "without") != {}


def test_the_fair_value_at_an_event_time_is_the_last_move_at_or_before_it():
    from runtime.venues.sim.session import FairPath

    path = FairPath(market="M", ts_ns=[10, 20, 20, 30], fair=[0.5, 0.6, 0.61, 0.4])
    assert [path.at(t) for t in (5, 10, 19, 20, 29, 30, 99)] == [0.5, 0.5, 0.5, 0.61, 0.61, 0.4, 0.4]


def test_the_fair_path_follows_the_model_and_changes_no_event():
    """A market recorded and one not recorded draw the same events; the recorded path ends at the model's fair value."""
    from runtime.venues.sim import FlowConfig, MarketFlow

    config = FlowConfig()
    plain = MarketFlow("M", config, 3, 0, 600 * 10**9)
    recorded = MarketFlow("M", config, 3, 0, 600 * 10**9, record_fair=True)
    assert list(plain.steps()) == list(recorded.steps())
    assert plain.fair_path is None and recorded.fair_path[-1][1] == recorded.fair
