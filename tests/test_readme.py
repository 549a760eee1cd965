"""The README's two set-up commands stay true: the first is run here (its session short, off a terminal, as a new
user's first hour would show it), the second is what CI runs, with exactly the versions in constraints.txt."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = [
    "python3 -m venv .venv",
    ". .venv/bin/activate",
    "pip install -c constraints.txt --no-deps torch --index-url https://download.pytorch.org/whl/cpu",
    "pip install -c constraints.txt -e .",
]
# the promise is an order within the first 20 seconds (seconds, on a quiet machine); the test allows a busy one more
FIRST_RUN_S = 30


def setup_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README must open with a bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_opens_with_exactly_the_two_commands():
    install_and_run, run_tests = setup_commands()
    assert install_and_run.split(" && ")[: len(INSTALL)] == INSTALL
    assert run_tests == ".ci/run"


def test_ci_installs_exactly_the_constraints_and_runs_the_suite():
    script = (ROOT / ".ci" / "run").read_text()
    installs = [line for line in script.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert script.index("--no-deps -c constraints.txt torch") < script.index("-e '.[dev]'")
    assert script.index("-e '.[dev]'") < script.index("python .ci/check-constraints") < script.index("python -m pytest")
    assert "set -euo pipefail" in script


def test_the_constraints_pin_every_installed_package():
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", line) for line in pins), pins
    names = {line.split("==")[0].lower().replace("_", "-") for line in pins}
    assert {"msgspec", "ray", "torch", "pytest", "gymnasium", "pip", "setuptools"} <= names
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "check-constraints")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # the suite runs in the environment CI made from them


def test_a_version_other_than_the_pinned_one_fails_the_check_and_says_how_to_refresh(tmp_path):
    text = (ROOT / "constraints.txt").read_text()
    text = re.sub(r"(?m)^msgspec==.*$", "msgspec==0.1.0", text)
    text = re.sub(r"(?m)^structlog==.*\n", "", text) + "not-a-real-package==1.0\n"
    (tmp_path / "constraints.txt").write_text(text)
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "check-constraints"), str(tmp_path / "constraints.txt")],
                          capture_output=True, text=True)
    assert done.returncode == 1
    err = done.stderr
    assert "(3 difference(s))" in err
    assert re.search(r"\n  msgspec \S+ is installed, constraints.txt pins 0.1.0\n", err), err
    assert re.search(r"\n  structlog \S+ is installed but not in constraints.txt\n", err), err
    assert "\n  not-a-real-package is pinned to 1.0 in constraints.txt but not installed\n" in err
    assert err.endswith("to test newer versions: .ci/refresh-constraints, then .ci/run (the suite decides whether "
                        "they stay)\n")


def test_the_main_job_command_runs_on_embedded_defaults_and_tells_the_truth(tmp_path):
    """Every step after the install runs from a fresh directory, with no services and no network, off a terminal;
    the session is shortened to its first seconds. Its stdout is for people (no JSON line), its stderr holds the
    diagnostics in one format (JSON lines, nothing else: no Ray banner), it trades, and the latency it reports
    counts every order it sent."""
    steps = setup_commands()[0].split(" && ")[len(INSTALL) :]
    assert steps and steps[-1] == "tape paper", "the first command must end by running the main job"
    steps[-1] += f" --duration {FIRST_RUN_S}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPE__")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for step in steps:
        done = subprocess.run(shlex.split(step), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{step!r} failed:\n{done.stdout}\n{done.stderr}"
    assert list((tmp_path / "runs").iterdir()), "the main job should leave its run under ./runs"
    out, err = done.stdout, done.stderr
    for line in out.splitlines():
        assert not line.lstrip().startswith("{"), f"a JSON line in the human output: {line!r}\n{out}"
    for line in err.splitlines():
        assert isinstance(json.loads(line), dict), f"not a diagnostics record on stderr: {line!r}"
    assert re.search(r"^local exchange on ws://127\.0\.0\.1:\d+/trade-api/ws/v2: 16 markets KXSIM-000 … KXSIM-015 "
                     r"\(seed 0, speed 30x\)$", out, re.M), out
    intents = int(re.search(r"order intents (\d+)", out).group(1))
    assert intents >= 1, f"no order in the first {FIRST_RUN_S} s:\n{out}"
    latency = re.search(r"input-to-order latency \(the input that caused the decision received -> its order durable "
                        r"in the log\): p50 [\d.]+ ms, p99 [\d.]+ ms over (\d+) order\(s\): (.*)$", out, re.M)
    assert latency, out
    assert int(latency.group(1)) == intents, out
    causes = dict(reversed(part.split(" after ")) for part in latency.group(2).split(", "))
    assert sum(map(int, causes.values())) == intents and set(causes) <= {"book_delta", "book_snapshot",
                                                                           "public_trade", "timer_fired"}, out
    assert "replay verify: ok" in out
