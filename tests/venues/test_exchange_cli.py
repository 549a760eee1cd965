"""``tape exchange serve`` as a user runs it: the installed console script in a subprocess, a raw WebSocket
client against the URLs it prints, and Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import connect

from runtime.venues.kalshi.auth import Signer

TAPE = shutil.which("tape", path=str(Path(sys.executable).parent)) or "tape"
ENV = {**os.environ, "TAPE__LOGGING__FORMAT": "json"}

pytestmark = pytest.mark.timeout(60)


def tape(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TAPE, *args], capture_output=True, text=True, timeout=60, env=ENV)


def test_help_explains_every_option_with_examples():
    done = tape("exchange", "serve", "--help")
    assert done.returncode == 0, done.stderr
    for text in ("--host", "--port", "--markets", "--seed", "--speed", "--session-s", "--public-key", "--trust",
                 "--faults", "--start-ms", "--balance", "examples:", "tape exchange serve --port 0", "gap=N",
                 "dup_fills=1", "slow_ms=X", "/trade-api/ws/v2"):
        assert text in done.stdout, text
    assert "exchange" in tape("--help").stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "70000"], "--port must be from 0 to 65535, got 70000"),
    (["--markets", "0"], "--markets must be from 1 to 1000, got 0"),
    (["--speed", "0"], "--speed must be positive and at most 1e7, got 0.0"),
    (["--session-s", "-1"], "--session-s must be positive, got -1.0"),
    (["--seed", "-3"], "--seed must be >= 0, got -3"),
    (["--faults", "gap=x"], "--faults: gap='x' is not a whole number from 0 to 1000000000000"),
    (["--faults", "jitter=5"], "--faults: unknown fault 'jitter'"),
    (["--public-key", "/nonexistent/key.pem"], "--public-key: public key file '/nonexistent/key.pem': cannot read it"),
])
def test_bad_arguments_exit_2_naming_the_argument(args, message):
    done = tape("exchange", "serve", *args)
    assert done.returncode == 2 and f"tape exchange: {message}" in done.stderr, done.stderr


def test_a_public_key_that_is_not_one_is_refused(tmp_path):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a key")
    done = tape("exchange", "serve", "--public-key", str(bogus))
    assert done.returncode == 2 and "tape exchange: --public-key: not a PEM RSA public key" in done.stderr


async def start(*args: str) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """Start ``tape exchange serve --port 0 ARGS``; return the process and what it printed (label -> value)."""
    proc = await asyncio.create_subprocess_exec(TAPE, "exchange", "serve", "--port", "0", *args, env=ENV,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    printed: dict[str, str] = {}
    async with asyncio.timeout(30):
        while "markets" not in printed:
            line = (await proc.stdout.readline()).decode()
            assert line, "the server exited before printing its URLs"
            label, _, value = line.strip().partition(" ")
            printed[label] = value.strip()
    return proc, printed


async def stop(proc: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Ctrl-C ``proc``; its exit status, the rest of its stdout, and its stderr."""
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode, out.decode(), err.decode()  # type: ignore[return-value]


async def test_serve_prints_its_urls_serves_a_snapshot_and_stops_cleanly_on_ctrl_c():
    proc, printed = await start("--markets", "2", "--seed", "3", "--speed", "5")
    try:
        tickers = printed["markets"].split()
        assert tickers == ["KXSIM-000", "KXSIM-001"]
        assert printed["REST"].startswith("http://127.0.0.1:") and printed["REST"].endswith("/trade-api/v2")
        async with connect(printed["WebSocket"]) as ws:
            await ws.send(json.dumps({"id": 1, "cmd": "subscribe",
                                      "params": {"channels": ["orderbook_delta"], "market_tickers": tickers[:1]}}))
            replies = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(2)]
        assert replies[0] == {"type": "subscribed", "id": 1, "msg": {"channel": "orderbook_delta", "sid": 1}}
        assert replies[1]["type"] == "orderbook_snapshot" and replies[1]["msg"]["market_ticker"] == "KXSIM-000"
        assert replies[1]["msg"]["yes_dollars_fp"]
    finally:
        code, out, err = await stop(proc)
    assert code == 0, err
    assert out.endswith("tape exchange: stopped\n"), out
    (warning,) = [json.loads(line) for line in err.splitlines()]  # the diagnostics: JSON off a terminal
    assert warning["level"] == "warning" and warning["event"].startswith("trust mode: requests are not authenticated")


async def test_with_a_public_key_unsigned_requests_are_refused(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "pub.pem"
    pem.write_bytes(Signer("k", key).public_key_pem())
    proc, printed = await start("--markets", "1", "--public-key", str(pem))
    try:
        async with aiohttp.ClientSession() as http:
            reply = await http.get(printed["REST"] + "/portfolio/balance")  # market data is public, as at Kalshi
            assert reply.status == 401 and (await reply.json())["code"] == "unauthorized"
    finally:
        code, _, err = await stop(proc)
    assert code == 0 and "trust mode" not in err, err
