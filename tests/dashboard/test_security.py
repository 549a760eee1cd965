"""The dashboard's security and its answers to bad input: loopback by default, a token anywhere else, same-origin
WebSockets, read-only but a confirmed halt with the token; a bad message is answered, never a crash; the token is
never written anywhere."""

from __future__ import annotations

import asyncio
import json
import subprocess

import aiohttp
import pytest

from runtime.dashboard import DashboardServer

from .client import Watcher
from .test_stream import ENV, TAPE, finished  # noqa: F401  (the module's finished session)

TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
async def served(finished):  # noqa: F811
    halts: list[int] = []
    server = DashboardServer(str(finished), port=0, token=TOKEN, halt=lambda: halts.append(1))
    await server.start()
    server.halts = halts  # type: ignore[attr-defined]
    yield server
    await server.close()


def ws_url(server: DashboardServer) -> str:
    return f"http://127.0.0.1:{server.port}/ws"


@pytest.mark.parametrize("command", [
    ["dashboard", "RUN", "--listen", "0.0.0.0:0"],
    ["paper", "--dashboard", "0.0.0.0:0", "--duration", "1"],
])
def test_a_non_loopback_address_without_a_token_is_refused_at_start(finished, tmp_path, command):  # noqa: F811
    args = [str(finished) if a == "RUN" else a for a in command]
    if args[0] == "paper":
        args += ["--log", str(tmp_path)]
    env = {k: v for k, v in ENV.items() if k != "TAPE_DASHBOARD_TOKEN"}
    done = subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    option = "--listen" if args[0] == "dashboard" else "--dashboard"
    token_option = "--token" if args[0] == "dashboard" else "--dashboard-token"
    assert (f"tape {args[0]}: {option} 0.0.0.0:0: a dashboard on an address other than loopback needs a token: pass "
            f"{token_option} TOKEN or set TAPE_DASHBOARD_TOKEN (or listen on 127.0.0.1)\n") in done.stderr
    assert not any(tmp_path.iterdir()), "nothing started"


def test_a_server_object_refuses_a_public_address_without_a_token(finished):  # noqa: F811
    with pytest.raises(ValueError, match="a dashboard on 0.0.0.0 \\(not loopback\\) needs a token"):
        DashboardServer(str(finished), host="0.0.0.0")


async def test_a_websocket_from_a_foreign_origin_is_refused(served):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with Watcher(ws_url(served), origin="http://evil.example"):
            pass
    assert refused.value.status == 403
    async with Watcher(ws_url(served), origin=f"http://127.0.0.1:{served.port}") as w:  # the page's own: accepted
        await w.send({"op": "hello", "token": TOKEN})
        assert (await w.receive())["type"] == "hello"


async def test_a_host_that_is_not_loopback_is_refused_on_loopback(served):
    """DNS rebinding: a foreign name resolving to 127.0.0.1 does not get the page or the stream."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{served.port}/", headers={"Host": f"evil.example:{served.port}"}) as r:
            assert r.status == 403
        async with http.get(f"http://127.0.0.1:{served.port}/") as r:
            assert r.status == 200 and "tape dashboard" in await r.text()
        async with http.get(f"http://127.0.0.1:{served.port}/static/plotly.min.js") as r:
            assert r.status == 200 and len(await r.read()) > 1_000_000


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token-0000"])
async def test_a_websocket_with_a_wrong_or_no_token_is_refused(served, token):
    async with Watcher(ws_url(served)) as w:
        await w.send({"op": "hello", "token": token})
        m = await w.receive()
        assert m == {"type": "error", "message": "wrong or missing token: this dashboard needs its token (the page "
                     "takes it as #token=… in its address)"}
        assert await w.receive() is None
        assert w.ws.close_code == 4401
        assert not w.state, "no data was sent"


@pytest.mark.parametrize("message, reply", [
    ({"op": "halt"}, "halt refused: wrong or missing token"),
    ({"op": "halt", "token": "nope-nope-nope-nope"}, "halt refused: wrong or missing token"),
    ({"op": "halt", "token": TOKEN}, "halt refused: not confirmed (send \"confirm\": \"halt\")"),
])
async def test_halt_without_the_token_and_a_confirmation_is_refused(served, message, reply):
    async with Watcher(ws_url(served)) as w:
        await w.send({"op": "hello", "token": TOKEN})
        await w.send(message)
        m = await w.until(lambda m: m["type"] == "error")
        assert m["message"] == reply
    assert served.halts == []


async def test_halt_with_the_token_and_a_confirmation_calls_the_sessions_stop(served):
    async with Watcher(ws_url(served)) as w:
        await w.send({"op": "hello", "token": TOKEN})
        await w.send({"op": "halt", "token": TOKEN, "confirm": "halt"})
        m = await w.until(lambda m: m["type"] == "halted")
        assert m["message"].startswith("halt requested")
    assert served.halts == [1]


async def test_a_dashboard_without_a_token_cannot_halt_and_a_recorded_one_has_nothing_to_halt(finished):  # noqa: F811
    for halt, reply in ((lambda: None, "halt refused: this dashboard was started without a token (start it with "
                                       "--token, or TAPE_DASHBOARD_TOKEN, to allow halting)"),
                        (None, "halt refused: this dashboard watches a log; only the process running the session "
                               "(tape paper --dashboard) can halt it")):
        server = DashboardServer(str(finished), port=0, halt=halt)
        await server.start()
        try:
            async with Watcher(ws_url(server)) as w:
                await w.send({"op": "hello"})
                await w.send({"op": "halt", "token": "x", "confirm": "halt"})
                assert (await w.until(lambda m: m["type"] == "error"))["message"] == reply
        finally:
            await server.close()


@pytest.mark.parametrize("message, reply", [
    ("{not json", "not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1)): every "
                  "message is a JSON object such as {\"op\": \"hello\"}"),
    ("[1, 2]", "a message is a JSON object with an \"op\": hello, seek, live, resync, sessions, models or halt"),
    (json.dumps({"op": "drop_tables"}), "unknown op 'drop_tables': hello, seek, live, resync, sessions, models or halt"),
    (json.dumps({"op": "seek", "seq": "ten"}), "seek takes {\"seq\": N} (a whole number >= 1), {\"ts_ns\": T} or "
                                               "{\"ts_ms\": T} (event time, Unix ns or ms)"),
    (json.dumps({"op": "hello", "pad": "x" * 5_000}), "a message of 5,026 bytes was refused: the limit is 4,096 bytes"),
])
async def test_a_bad_message_is_answered_and_the_connection_goes_on(served, message, reply):
    async with Watcher(ws_url(served)) as w:
        await w.send({"op": "hello", "token": TOKEN})
        await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades")
        await w.send(message)
        assert (await w.until(lambda m: m["type"] == "error"))["message"] == reply
        await w.send({"op": "sessions"})
        assert (await w.until(lambda m: m["type"] == "sessions"))["single"] is True


async def test_an_oversized_frame_closes_that_connection_only(served):
    async with Watcher(ws_url(served)) as w, Watcher(ws_url(served)) as other:
        await other.send({"op": "hello", "token": TOKEN})
        await w.send({"op": "hello", "token": TOKEN})
        await w.send("x" * 100_000)
        while await w.receive() is not None:
            pass
        assert w.ws.close_code == 1009
        await other.send({"op": "sessions"})
        assert (await other.until(lambda m: m["type"] == "sessions"))["single"] is True


async def test_an_unknown_session_in_a_list_is_answered_with_the_list(finished):  # noqa: F811
    server = DashboardServer(str(finished.parent), port=0)
    await server.start()
    try:
        assert not server.single
        async with Watcher(ws_url(server)) as w:
            await w.send({"op": "hello", "session": "../../etc"})
            assert (await w.until(lambda m: m["type"] == "error"))["message"] == (
                "unknown session '../../etc': pick one from the list")
            listed = await w.until(lambda m: m["type"] == "sessions")
            assert [s["session_id"] for s in listed["sessions"]] == [finished.name]
        async with Watcher(ws_url(server)) as w:
            await w.send({"op": "hello", "session": finished.name})
            await w.until(lambda m: m["type"] == "snapshot" and m["channel"] == "trades")
            assert w.head["session"]["session_id"] == finished.name
    finally:
        await server.close()


@pytest.mark.parametrize("target, status, needle", [
    ("{tmp}/nope", 2, "tape dashboard: {tmp}/nope: no such directory"),
    ("{tmp}", 1, "tape dashboard: {tmp}: not a tape log, nor a directory of runs"),
])
def test_an_unknown_session_on_the_command_line_is_a_clear_error(tmp_path, target, status, needle):
    target, needle = target.format(tmp=tmp_path), needle.format(tmp=tmp_path)
    done = subprocess.run([TAPE, "dashboard", target, "--listen", "127.0.0.1:0"], capture_output=True, text=True,
                          timeout=60, env=ENV)
    assert done.returncode == status and needle in done.stderr and "Traceback" not in done.stderr


def test_the_token_never_appears_in_the_output_or_the_diagnostics(finished):  # noqa: F811
    """A dashboard with a token, asked with the wrong one, the right one and a halt: the token is in no line it
    writes (stdout, or its diagnostics at debug level)."""
    env = {**ENV, "TAPE_DASHBOARD_TOKEN": TOKEN, "TAPE__LOGGING__LEVEL": "debug"}
    child = subprocess.Popen([TAPE, "dashboard", str(finished), "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = child.stdout.readline()
        port = int(line.split(":")[3].split("/")[0])

        async def talk() -> None:
            async with Watcher(f"http://127.0.0.1:{port}/ws", origin="http://evil.example:1"):
                pass
        with pytest.raises(aiohttp.WSServerHandshakeError):
            asyncio.run(talk())

        async def talk2() -> None:
            for token in (TOKEN[::-1], TOKEN):
                async with Watcher(f"http://127.0.0.1:{port}/ws") as w:
                    await w.send({"op": "hello", "token": token})
                    await w.send({"op": "halt", "token": token, "confirm": "halt"})
                    await w.receive()
        asyncio.run(talk2())
    finally:
        child.terminate()
        out, err = child.communicate(timeout=30)
    assert line.startswith("dashboard: http://127.0.0.1:") and "needs the token" in line
    assert TOKEN not in line + out + err and TOKEN[::-1] not in out + err
