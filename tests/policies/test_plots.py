"""The pictures: a model version's training curve and ``tape eval --plot``'s cumulative PnL — PNG files whose bytes
depend on what they draw only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from policies.plots import pnl_curves, training_curve

PNG = b"\x89PNG\r\n\x1a\n"
TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json", "TAPE__LOGGING__LEVEL": "warning"}


def history(n: int = 12, heldout_every: int = 4) -> list[dict]:
    """n iterations of a four-role run: sizing never ended an episode, signal missed iteration 3; held-out PnL
    every few iterations."""
    return [{"iteration": i,
             "returns": {"signal": None if i == 3 else 0.1 * i, "sizing": None, "entry": 0.2, "exit": -0.05 * i},
             "heldout_pnl": 2.0 * i - 5 if i % heldout_every == 0 else None} for i in range(1, n + 1)]


def results(*names: str, tapes: int = 6) -> list[SimpleNamespace]:
    return [SimpleNamespace(name=name, per_tape=[(k - 2) * 0.5 * (j + 1) for k in range(tapes)])
            for j, name in enumerate(names)]


def test_the_same_history_gives_the_same_png_bytes(tmp_path):
    """Fixed size and resolution, matplotlib's defaults, and no software name or date in the metadata."""
    training_curve(history(), tmp_path / "a.png")
    training_curve(history(), tmp_path / "b.png")
    a = (tmp_path / "a.png").read_bytes()
    assert a.startswith(PNG) and a == (tmp_path / "b.png").read_bytes()
    assert b"Software" not in a and b"atplotlib" not in a
    training_curve(history(heldout_every=3), tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes() != a


def test_a_user_matplotlibrc_does_not_change_the_picture(tmp_path):
    training_curve(history(), tmp_path / "a.png")
    (tmp_path / "rc").mkdir()
    (tmp_path / "rc" / "matplotlibrc").write_text("lines.linewidth: 7\naxes.facecolor: red\nfont.size: 20\n")
    code = ("import sys; from pathlib import Path; from policies.plots import training_curve; "
            "from tests.policies.test_plots import history; training_curve(history(), Path(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.png")], capture_output=True, text=True,
                          env={**os.environ, "MPLCONFIGDIR": str(tmp_path / "rc")}, cwd=Path(__file__).parents[2],
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b.png").read_bytes() == (tmp_path / "a.png").read_bytes()


@pytest.mark.parametrize("items", [
    [],  # nothing trained yet
    [{"iteration": 1, "returns": {"signal": None}, "heldout_pnl": None}],  # no episode ended, nothing held out
    [{"iteration": i, "returns": {}, "heldout_pnl": float(i)} for i in (5, 10)],  # held-out PnL only
    [{"iteration": i, "returns": {"default_policy": -1.0 + i}, "heldout_pnl": None} for i in range(1, 4)],  # single
])
def test_a_curve_is_drawn_whatever_is_missing(tmp_path, items):
    training_curve(items, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)


def test_cumulative_pnl_curves_are_deterministic(tmp_path):
    pnl_curves(results("rule", "flow", "oracle"), tmp_path / "a.png")
    pnl_curves(results("rule", "flow", "oracle"), tmp_path / "b.png")
    a = (tmp_path / "a.png").read_bytes()
    assert a.startswith(PNG) and a == (tmp_path / "b.png").read_bytes()
    pnl_curves(results("rule", "flow"), tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes() != a
    pnl_curves([], tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes().startswith(PNG)


def tape(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


@pytest.fixture(scope="module")
def heldout(tmp_path_factory) -> Path:
    """One synthetic session of 2 markets x 300 s, with its fair-value sidecar."""
    where = tmp_path_factory.mktemp("plots")
    done = subprocess.run([TAPE, "synth", "--sessions", "1", "--markets", "2", "--duration", "300", "--seed", "2",
                           "--log", str(where / "heldout")], capture_output=True, text=True,
                          env={**ENV, "TAPE__SYNTH__TIGHT_SHARE": "1.0"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return where


def test_tape_eval_plot_writes_a_png_of_every_policy_set(heldout):
    (heldout / "out").mkdir()
    done = tape("eval", "--data", "heldout", "--policies", "rule,random", "--oracle", "--plot", "out/pnl.png",
                "--json", cwd=heldout)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plot"] == "out/pnl.png"
    png = (heldout / "out" / "pnl.png").read_bytes()
    assert png.startswith(PNG) and len(png) > 10_000
    done = tape("eval", "--data", "heldout", "--policies", "rule", "--plot", "rule.png", cwd=heldout)
    assert done.returncode == 0, done.stderr
    assert "cumulative PnL per policy set drawn in rule.png" in done.stdout
    assert (heldout / "rule.png").read_bytes().startswith(PNG)


@pytest.mark.parametrize(("plot", "needle"), [
    ("missing/pnl.png", "--plot missing/pnl.png: no such directory missing"),
    ("afile/pnl.png", "--plot afile/pnl.png: afile is not a directory"),
    ("adir.png", "--plot adir.png: is a directory; name a .png file"),
    ("pnl.pdf", "--plot pnl.pdf: the picture is a PNG; name the file *.png"),
])
def test_a_plot_path_that_cannot_be_written_is_a_usage_error_before_any_work(tmp_path, heldout, plot, needle):
    shutil.copytree(heldout / "heldout", tmp_path / "heldout")
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir.png").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    done = tape("eval", "--data", "heldout", "--policies", "rule", "--plot", plot, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"tape eval: {needle}" in done.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
