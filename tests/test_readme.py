"""The README's two set-up commands stay true: the first is run here, the second is what CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ["python3 -m venv .venv", ". .venv/bin/activate", "pip install torch==2.13.0", "pip install -e ."]


def setup_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README must open with a bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_opens_with_exactly_the_two_commands():
    install_and_run, run_tests = setup_commands()
    assert install_and_run.split(" && ")[: len(INSTALL)] == INSTALL
    assert run_tests == ".ci/run"


def test_ci_runs_the_test_suite_and_installs_cpu_torch_first():
    script = (ROOT / ".ci" / "run").read_text()
    assert script.index("pip install --quiet torch==2.13.0") < script.index("pip install --quiet -e '.[dev]'")
    assert "python -m pytest" in script and "set -euo pipefail" in script


def test_the_main_job_command_runs_on_embedded_defaults(tmp_path):
    """Every step after the install runs from a fresh directory, with no services and no network."""
    steps = setup_commands()[0].split(" && ")[len(INSTALL) :]
    assert steps, "the first command must run the main job after installing"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for step in steps:
        done = subprocess.run(step, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{step!r} failed:\n{done.stdout}\n{done.stderr}"
    assert list((tmp_path / "runs").iterdir()), "the main job should leave its run under ./runs"
