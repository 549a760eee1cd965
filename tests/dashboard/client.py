"""A WebSocket client of the dashboard for the tests: it keeps the three channels as the page does (snapshots, then
deltas applied in ``n`` order) and checks that no delta was skipped."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp


class Watcher:
    def __init__(self, url: str, *, origin: str | None = None) -> None:
        self.url = url
        self.origin = origin
        self.state: dict[str, Any] = {}
        self.n: dict[str, int] = {}
        self.head: dict[str, Any] = {}
        self.through = 0
        self.paused = False
        self.gaps = 0  # deltas whose n was not the next one (never, on a client that keeps up)
        self.snapshots = 0
        self.deltas = 0
        self.other: list[dict[str, Any]] = []  # hello, errors, replies
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> Watcher:
        self._http = aiohttp.ClientSession()
        headers = {"Origin": self.origin} if self.origin else {}
        self.ws = await self._http.ws_connect(self.url, headers=headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._http is not None:
            await self._http.close()

    async def send(self, message: Any) -> None:
        assert self.ws is not None
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """One message, applied; None when the connection closed."""
        assert self.ws is not None
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        m = json.loads(msg.data)
        kind = m["type"]
        if kind == "snapshot":
            self.snapshots += 1
            self.state[m["channel"]] = m["data"]
            self.n[m["channel"]] = m["n"]
            self.through, self.paused = m["through"], m["paused"]
        elif kind == "delta":
            self.deltas += 1
            channel = m["channel"]
            if m["n"] != self.n[channel] + 1:
                self.gaps += 1
            self.n[channel] = m["n"]
            self.through = m["through"]
            self._apply(channel, m["data"])
        elif kind == "head":
            self.head = m
        else:
            self.other.append(m)
        return m

    def _apply(self, channel: str, data: dict[str, Any]) -> None:
        state = self.state[channel]
        if channel == "market":
            state["markets"].update(data["markets"])
            state["health"] = data["health"]
        elif channel == "trader":
            state["positions"].update(data.pop("positions"))
            state["history"] += data.pop("history")
            state.update(data)
        else:
            fills = {f["trade_id"]: f for f in state["fills"]}
            fills.update({f["trade_id"]: f for f in data["fills"]})
            orders = {o["client_order_id"]: o for o in state["orders"]}
            orders.update({o["client_order_id"]: o for o in data["orders"]})
            state.update(fills=list(fills.values()), orders=list(orders.values()),
                         decisions=state["decisions"] + data["decisions"], models=state["models"] + data["models"])

    async def until(self, predicate, timeout: float = 30.0) -> dict[str, Any]:
        """Receive until ``predicate(message)`` holds; that message."""
        async with asyncio.timeout(timeout):
            while True:
                m = await self.receive(timeout)
                if m is None:
                    raise ConnectionError("the dashboard closed the connection")
                if predicate(m):
                    return m
