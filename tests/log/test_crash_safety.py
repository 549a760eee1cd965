"""Crash safety: a writer killed with SIGKILL at random moments never loses an acknowledged batch."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from config import LogSettings
from runtime.log import FileLog
from runtime.log.tools import verify_log
from tests.log.crash_child import event_for

KILLS = 25
ROOT = Path(__file__).resolve().parents[2]


def run_until_killed(run: Path, seed: int, delay: float) -> tuple[int, list[tuple[int, int]]]:
    """Start the child, SIGKILL it after ``delay`` seconds of appending; return (opened at, acks)."""
    child = subprocess.Popen([sys.executable, "-m", "tests.log.crash_child", str(run), str(seed)],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not any(line.startswith("OPEN") for line in list(lines)):
        assert child.poll() is None, f"child exited early with {child.returncode}"
        assert time.monotonic() < deadline, "child did not open the log in 30 s"
        time.sleep(0.005)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join(timeout=10)
    opened = int(next(line for line in lines if line.startswith("OPEN")).split()[1])
    acks = [(int(a), int(b)) for tag, a, b in (line.split() for line in lines if line.startswith("ACK "))]
    return opened, acks


@pytest.mark.slow
async def test_sigkill_at_random_moments_loses_no_acknowledged_batch(tmp_path):
    """Given a child appending with sync per batch, when it is SIGKILLed at random moments (25 times),
    then after each kill the log opens, verifies, holds every acknowledged batch intact, and resumes."""
    run = tmp_path / "run"
    rng = random.Random(20261122)
    durable = 0  # the log's last seq after the previous recovery
    truncations = 0
    for kill in range(KILLS):
        opened, acks = run_until_killed(run, seed=kill, delay=rng.uniform(0.0, 0.2))
        assert opened == durable, f"kill {kill}: the writer reopened at {opened}, the log held {durable}"
        expect = opened + 1
        for first, last in acks:  # acknowledgements are contiguous from where the writer opened
            assert first == expect, f"kill {kill}: ack {first}..{last}, expected to start at {expect}"
            expect = last + 1
        acked_to = expect - 1

        log = FileLog.open(run, LogSettings(), writable=True)  # recovers a torn tail, if any
        truncations += bool(log.recovery and log.recovery.truncated_bytes)
        report = await verify_log(log)
        assert report.ok, f"kill {kill}: {report.problems}"
        assert not report.notes, f"kill {kill}: torn tail left after recovery: {report.notes}"
        assert log.last_seq >= acked_to, f"kill {kill}: acknowledged up to {acked_to}, log ends at {log.last_seq}"
        n = 0
        async for batch in log.read(max(1, durable - 100)):
            for record in batch:
                assert record.ts_ns == record.seq and record.event == event_for(record.seq), f"kill {kill}: seq {record.seq}"
                n = record.seq
        assert n == log.last_seq
        await log.close()
        durable = n  # unacknowledged batches that landed whole are kept; the next writer continues after them
    assert len(list(run.glob("*.seg"))) > 1, "the kills should span segment rotations"
    # the CLI agrees
    done = subprocess.run([sys.executable, "-m", "runtime.cli", "log", "verify", str(run)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"{KILLS} kills, {truncations} torn tails truncated, {durable:,} records")
