"""``tape paper --dashboard``: the dashboard in a process of its own beside the session. The page's halt (its token
checked there) stops the session, which logs the operator's halt, and the token is written nowhere; a dashboard
that dies changes nothing for the session; and the dashboard's process ends with the session's, however it ends.

Real parts: ``tape paper`` on the local exchange, paper sessions in process, the dashboard's own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from runtime.dashboard import LiveDashboard
from runtime.events import OperatorCommand
from runtime.log import open_log

from .client import Watcher
from .sessions import paper_session
from .test_stream import ENV, TAPE, finished  # noqa: F401  (the module's finished session)

TOKEN = "live-s3cret-token-0123456789"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def test_the_pages_halt_stops_the_paper_session_and_the_token_is_written_nowhere(tmp_path):
    env = {**ENV, "TAPE_DASHBOARD_TOKEN": TOKEN, "TAPE__LOGGING__LEVEL": "debug"}
    runs, out_path, err_path = tmp_path / "runs", tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "w") as out, open(err_path, "w") as err:  # files, not pipes: nothing here blocks the session
        child = subprocess.Popen([TAPE, "paper", "--runner", "inprocess", "--duration", "120", "--speed", "50",
                                  "--seed", "5", "--markets", "3", "--dashboard", "127.0.0.1:0", "--log", str(runs)],
                                 stdout=out, stderr=err, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (match := re.search(r"dashboard: http://127\.0\.0\.1:(\d+)/", out_path.read_text())):
            assert child.poll() is None and time.monotonic() < deadline, err_path.read_text()
            time.sleep(0.1)
        children = [int(p) for p in Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split()]
        board = [p for p in children if b"runtime.dashboard.live" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(board) == 1, "the dashboard runs in a child process of the session"
        for pid in board:  # its command line and its environment carry no token
            assert TOKEN.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert TOKEN.encode() not in Path(f"/proc/{pid}/environ").read_bytes()

        async def talk(port: int) -> None:
            async with Watcher(f"http://127.0.0.1:{port}/ws") as w:
                await w.send({"op": "hello", "token": TOKEN})
                await w.until(lambda m: m["type"] == "delta" and w.through > 100, timeout=60)
                await w.send({"op": "halt", "token": TOKEN[::-1], "confirm": "halt"})
                await w.until(lambda m: m["type"] == "error" and m["message"] == "halt refused: wrong or missing token")
                await w.send({"op": "halt", "token": TOKEN, "confirm": "halt"})
                await w.until(lambda m: m["type"] == "halted")
                # the page sees the halt in the log, unless the session (and the dashboard with it) ends first:
                # the log itself is checked below
                with contextlib.suppress(ConnectionError):
                    await w.until(lambda m: m["type"] == "head" and m["halted_seq"] is not None, timeout=60)
        asyncio.run(talk(int(match.group(1))))
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out, err = out_path.read_text(), err_path.read_text()
    assert child.returncode == 0, err
    assert "paper session interrupted after" in out and "replay verify: ok" in out
    assert "the operator's halt, from the page" in err
    (run,) = runs.iterdir()

    async def halts() -> list[int]:
        async with await open_log(run) as log:
            return [r.seq async for batch in log.read() for r in batch
                    if type(r.event) is OperatorCommand and r.event.command == "halt"]
    assert asyncio.run(halts()), "the operator's halt is logged"
    for text in (out, err, *(p.read_bytes().decode("latin-1") for p in run.iterdir())):
        assert TOKEN not in text and TOKEN[::-1] not in text
    for pid in board:
        assert not _alive(pid), "the dashboard's process ended with the session"


async def test_a_dashboard_that_dies_changes_nothing_for_the_session(tmp_path):
    boards: list[LiveDashboard] = []
    halted: list[int] = []

    async def on_log(run: Path) -> None:
        board = LiveDashboard.start(str(run), host="127.0.0.1", port=0, token=TOKEN)
        board.halt_with(lambda: halted.append(1))
        boards.append(board)
        asyncio.get_running_loop().call_later(1.0, board.proc.kill)

    try:
        _run, summary = await paper_session(tmp_path, 4.0, on_log=on_log)
        (board,) = boards
        assert board.gone and board.proc.wait(timeout=5) == -signal.SIGKILL
        assert summary.reason == "completed" and summary.records > 1_000 and halted == []
    finally:
        for board in boards:
            board.close()


def test_the_dashboards_process_ends_with_the_session_however_it_ends(finished):  # noqa: F811
    """The session's process killed outright (no chance to stop anything): its dashboard exits too."""
    script = ("import asyncio, sys\nfrom runtime.dashboard import LiveDashboard\n"
              "async def main():\n"
              "    board = LiveDashboard.start(sys.argv[1], host='127.0.0.1', port=0, token=None)\n"
              "    print(board.proc.pid, board.port, flush=True)\n"
              "    await asyncio.sleep(3600)\n"
              "asyncio.run(main())\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(finished)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        pid, port = map(int, parent.stdout.readline().split())

        async def served() -> None:  # the dashboard serves the session (so it is up, not just started)
            async with Watcher(f"http://127.0.0.1:{port}/ws") as w:
                await w.send({"op": "hello"})
                await w.until(lambda m: m["type"] == "snapshot")
        asyncio.run(served())
        assert _alive(pid)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 15
        while _alive(pid):
            assert time.monotonic() < deadline, "the dashboard outlived the session's process"
            time.sleep(0.1)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
