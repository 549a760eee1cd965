"""Conformance: Kalshi's own SDK (``kalshi-python-sync``, generated from Kalshi's OpenAPI spec) drives the local
exchange over every REST endpoint the runtime uses, signed with RSA-PSS as Kalshi signs, and every reply parses
into the SDK's models with the values the exchange holds. The SDK needs Python >= 3.13: it runs in its own
virtual environment (``.ci/sdk-venv`` builds it; ``$TAPE_SDK_PYTHON`` is its python), driven by
``tests/venues/sdk_driver.py`` in a subprocess, against the exchange served here on loopback.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from runtime.units import PRICE_MAX, format_count, format_money, format_price
from runtime.venues.kalshi.auth import Verifier
from runtime.venues.sim.exchange import Exchange, MarketInfo
from runtime.venues.sim.server import ExchangeServer
from runtime.venues.sim.session import EPOCH_NS

pytestmark = pytest.mark.timeout(180)

DRIVER = Path(__file__).with_name("sdk_driver.py")
KEY_ID = "sdk-conformance-key"
AMEND_KEY_ID = "sdk-amend-key"  # a second account for amends and order groups (the first one's reads stay as they were)
HOW_TO = ("Kalshi's SDK runs in its own Python 3.13 environment: build it with `.ci/sdk-venv` and set "
          "TAPE_SDK_PYTHON=$PWD/.venv-sdk/bin/python")


def sdk_python() -> str:
    """The SDK environment's python: a failure under CI (the test must run there), a skip elsewhere."""
    path = os.environ.get("TAPE_SDK_PYTHON", "")
    if path and Path(path).is_file():
        return path
    why = f"TAPE_SDK_PYTHON is {'unset' if not path else repr(path) + ', which is not a file'}. {HOW_TO}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(why)
    pytest.skip(why)


class Run:
    """One drive of the exchange through the SDK: what each call gave, and the exchange's state around it."""

    def __init__(self, results: dict[str, Any], exchange: Exchange, markets: list[MarketInfo], book: Any,
                 balance_before: int, ticker: str, cross_price: int) -> None:
        self.results, self.exchange, self.markets, self.book = results, exchange, markets, book
        self.balance_before, self.ticker, self.cross_price = balance_before, ticker, cross_price

    def ok(self, name: str) -> Any:
        """The parsed reply of a call that must have succeeded."""
        result = self.results[name]
        assert result["ok"], f"{name}: {result}"
        return result.get("value", result)

    def refused(self, name: str, status: int) -> dict[str, Any]:
        """The SDK's ``ErrorResponse`` of a call that must have been refused with ``status``."""
        result = self.results[name]
        assert not result["ok"] and result["status"] == status and result["error_model"] == "ErrorResponse", result
        return result["error"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    python = sdk_python()
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path_factory.mktemp("sdk") / "key.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    exchange = Exchange(3, 17, start_ns=EPOCH_NS, session_s=3_600.0)
    return asyncio.run(_drive(python, exchange, Verifier(key.public_key()), key_path))


async def _drive(python: str, exchange: Exchange, verifier: Verifier, key_path: Path) -> Run:
    async with ExchangeServer(exchange, verifier=verifier, speed=20.0) as server:
        await asyncio.sleep(0.5)  # some trading first: volume, open interest, a last price
        server.pause()  # the market stands still: only the SDK's orders change it
        ticker = exchange.tickers[0]
        markets, book, balance_before = exchange.markets(), exchange.book(ticker), exchange.balance(KEY_ID)
        info = exchange.market(ticker)
        assert info is not None and info.yes_ask is not None and info.yes_ask_size >= 100, info
        args = {"host": server.rest_url, "key_id": KEY_ID, "key_path": str(key_path), "ticker": ticker,
                "rest_price": format_price(100), "cross_price": format_price(info.yes_ask),
                "expiration_time": exchange.now_ns // 10**9 + 600, "amend_key_id": AMEND_KEY_ID,
                "amend_price": format_price(200)}
        proc = await asyncio.create_subprocess_exec(python, str(DRIVER), stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(args).encode()), 150)
    assert proc.returncode == 0, f"the SDK driver failed ({proc.returncode}):\n{err.decode()[-4000:]}"
    sys.stderr.write(err.decode()[-2000:])
    return Run(json.loads(out), exchange, markets, book, balance_before, ticker, info.yes_ask)


def _ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def _price(units: int | None) -> str:
    return format_price(0 if units is None else units)


def _same_price(wire: str, units: int | None) -> bool:
    return round(float(wire) * 10_000) == (0 if units is None else units)


# --- market data ---------------------------------------------------------------------------------------------
def test_markets_page_through_every_market_and_parse_with_the_exchanges_values(run):
    """Two a page: every market once, the last page's cursor empty; each one's prices, sizes, volume, open
    interest, times and grid are the exchange's."""
    listed = run.results["get_markets"]
    assert listed["ok"] and listed["pages"] == 2 and [m["ticker"] for m in listed["items"]] == list(run.exchange.tickers)
    for wire, info in zip(listed["items"], run.markets, strict=True):
        assert (wire["status"], wire["market_type"], wire["result"], wire["event_ticker"]) == (
            "active", "binary", "", run.exchange.prefix)
        assert _same_price(wire["yes_bid_dollars"], info.yes_bid) and _same_price(wire["yes_ask_dollars"], info.yes_ask)
        assert _same_price(wire["no_bid_dollars"], PRICE_MAX - info.yes_ask if info.yes_ask is not None else None)
        assert _same_price(wire["last_price_dollars"], info.last_price)
        assert (wire["yes_bid_size_fp"], wire["yes_ask_size_fp"]) == (format_count(info.yes_bid_size),
                                                                      format_count(info.yes_ask_size))
        assert (wire["volume_fp"], wire["open_interest_fp"]) == (format_count(info.volume),
                                                                 format_count(info.open_interest))
        assert wire["volume_24h_fp"] == wire["volume_fp"]  # the session is younger than a day
        assert _ms(wire["open_time"]) == info.open_ns // 10**6 and _ms(wire["close_time"]) == info.close_ns // 10**6
        assert wire["price_ranges"] == [{"start": "0.0100", "end": "0.9900", "step": "0.0100"}]
        assert wire["title"] and wire["rules_primary"] and wire["yes_sub_title"] == "Yes"
    assert run.markets[0].volume > 0 and run.markets[0].open_interest > 0  # it traded before the SDK came


def test_a_market_and_its_order_book_parse_with_the_exchanges_values(run):
    market = run.ok("get_market")["market"]
    assert market == run.results["get_markets"]["items"][0]
    book = run.ok("get_market_orderbook")["orderbook_fp"]
    assert book == {"yes_dollars": [[format_price(p), format_count(c)] for p, c in run.book.yes_bids],
                    "no_dollars": [[format_price(p), format_count(c)] for p, c in run.book.no_bids]}


def test_market_data_needs_no_signature(run):
    """Kalshi serves markets and order books publicly."""
    assert [m["ticker"] for m in run.ok("public_get_markets")["markets"]] == list(run.exchange.tickers)
    assert run.ok("public_get_market")["market"]["ticker"] == run.ticker
    assert run.ok("public_get_market_orderbook")["orderbook_fp"]["yes_dollars"]


# --- orders ---------------------------------------------------------------------------------------------------
def _order(run: Run, client_order_id: str):
    return next(d for d in run.exchange.order_details(KEY_ID) if d.report.client_order_id == client_order_id)


def test_an_order_that_rests_and_one_that_fills_parse_as_created(run):
    rests, fills = run.ok("create_order_v2_rests"), run.ok("create_order_v2_fills")
    resting, filled = _order(run, "sdk-rests"), _order(run, "sdk-fills")
    assert (rests["order_id"], rests["client_order_id"], rests["fill_count"], rests["remaining_count"]) == (
        resting.report.order_id, "sdk-rests", "0.00", "2.00")
    assert (fills["order_id"], fills["fill_count"], fills["remaining_count"]) == (filled.report.order_id, "1.00", "0.00")
    assert rests["ts_ms"] == resting.created_ms and filled.report.status == "executed"
    assert resting.expiration_ms is not None and resting.expiration_ms // 1000 - resting.created_ms // 1000 in (599, 600)


def test_a_repeated_client_order_id_is_a_409_error_response(run):
    error = run.refused("create_order_v2_repeated", 409)
    assert error["code"] == "duplicate_client_order_id" and "sdk-rests" in error["message"]


def test_cancel_answers_reduced_by_and_a_second_cancel_is_a_404(run):
    canceled = run.ok("cancel_order_v2")
    resting = _order(run, "sdk-rests")
    assert canceled == {"order_id": resting.report.order_id, "client_order_id": "sdk-rests", "reduced_by": "2.00",
                        "ts_ms": resting.report.venue_ts_ms}
    assert run.refused("cancel_order_v2_again", 404)["code"] == "not_found"


def test_batch_create_items_are_flat_and_an_off_grid_price_is_that_items_error(run):
    first, second, third = run.ok("batch_create_orders_v2")["orders"]
    for item, coid in ((first, "sdk-batch-1"), (second, "sdk-batch-2")):
        assert (item["order_id"], item["client_order_id"], item["fill_count"], item["remaining_count"]) == (
            _order(run, coid).report.order_id, coid, "0.00", "2.00")
        assert item["error"] is None
    assert third["order_id"] is None and third["client_order_id"] == "sdk-batch-3"
    assert third["error"]["code"] == "invalid_price"


def test_batch_cancel_answers_reduced_by_per_order_and_an_unknown_ones_error(run):
    items = run.ok("batch_cancel_orders_v2")["orders"]
    assert [(i["order_id"], i["reduced_by"]) for i in items] == [
        (_order(run, "sdk-batch-1").report.order_id, "2.00"), (_order(run, "sdk-batch-2").report.order_id, "2.00"),
        ("no-such-order", "0.00")]
    assert items[0]["client_order_id"] == "sdk-batch-1" and items[2]["error"]["code"] == "not_found"


def test_orders_page_newest_first_with_sides_costs_and_fees(run):
    listed = run.results["get_orders"]
    details = list(reversed(run.exchange.order_details(KEY_ID)))
    assert listed["ok"] and listed["pages"] == 2 and [o["order_id"] for o in listed["items"]] == [
        d.report.order_id for d in details]
    for wire, d in zip(listed["items"], details, strict=True):
        assert (wire["user_id"], wire["ticker"], wire["client_order_id"], wire["status"]) == (
            KEY_ID, run.ticker, d.report.client_order_id, d.report.status)
        assert (wire["side"], wire["outcome_side"], wire["book_side"], wire["type"]) == ("yes", "yes", "bid", "limit")
        assert _same_price(wire["yes_price_dollars"], d.report.price)
        assert _same_price(wire["no_price_dollars"], PRICE_MAX - d.report.price)
        assert (wire["fill_count_fp"], wire["remaining_count_fp"], wire["initial_count_fp"]) == (
            format_count(d.report.fill_count), format_count(d.report.remaining_count),
            format_count(d.report.initial_count or 0))
        assert (wire["taker_fill_cost_dollars"], wire["taker_fees_dollars"]) == (format_money(d.taker_cost),
                                                                                 format_money(d.taker_fees))
        assert (None if wire["expiration_time"] is None else _ms(wire["expiration_time"])) == d.expiration_ms
    filled = _order(run, "sdk-fills")
    assert filled.taker_cost == 100 * run.cross_price and filled.taker_fees > 0  # one contract at the ask, and its fee
    one = run.ok("get_order")["order"]
    assert one == next(o for o in listed["items"] if o["client_order_id"] == "sdk-rests")
    assert one["status"] == "canceled"


# --- fills, positions, balance ------------------------------------------------------------------------------------
def test_fills_parse_with_fill_id_both_prices_and_the_fee(run):
    listed = run.results["get_fills"]
    fills = list(reversed(run.exchange.fills(KEY_ID)))
    assert listed["ok"] and [f["trade_id"] for f in listed["items"]] == [f.trade_id for f in fills] and fills
    for wire, fill in zip(listed["items"], fills, strict=True):
        assert wire["fill_id"] == run.exchange.fill_id(fill)
        assert (wire["order_id"], wire["ticker"], wire["market_ticker"]) == (fill.order_id, run.ticker, run.ticker)
        assert (wire["outcome_side"], wire["book_side"], wire["is_taker"]) == ("yes", "bid", True)
        assert _same_price(wire["yes_price_dollars"], fill.price)
        assert _same_price(wire["no_price_dollars"], PRICE_MAX - fill.price)
        assert (wire["count_fp"], wire["fee_cost"]) == (format_count(fill.count), format_money(fill.fee))
        assert _ms(wire["created_time"]) == fill.venue_ts_ms


def test_positions_parse_as_market_and_event_positions(run):
    reply = run.ok("get_positions")
    (market,) = reply["market_positions"]
    (event,) = reply["event_positions"]
    (detail,) = run.exchange.position_details(KEY_ID)
    assert (market["ticker"], market["position_fp"]) == (run.ticker, "1.00")
    assert (market["market_exposure_dollars"], market["fees_paid_dollars"], market["total_traded_dollars"]) == (
        format_money(detail.report.cost or 0), format_money(detail.report.fees_paid or 0), format_money(detail.traded))
    assert event["event_ticker"] == run.exchange.prefix and event["total_cost_shares_fp"] == "1.00"


def test_the_balance_parses_with_portfolio_value_and_updated_ts(run):
    before, after = run.ok("get_balance_before"), run.ok("get_balance")
    assert (before["balance"], before["balance_dollars"]) == (run.balance_before // 10_000,
                                                              format_money(run.balance_before))
    portfolio = run.exchange.portfolio(KEY_ID)
    assert (after["balance"], after["balance_dollars"]) == (portfolio.balance // 10_000, format_money(portfolio.balance))
    assert after["portfolio_value"] == portfolio.positions_value // 10_000 > 0
    assert after["updated_ts"] == portfolio.updated_ms // 1000 > 0


# --- errors ---------------------------------------------------------------------------------------------------
def test_an_unknown_market_is_a_404_error_response(run):
    assert run.refused("get_market_unknown", 404)["code"] == "not_found"


def test_portfolio_calls_without_a_signature_are_a_401_error_response(run):
    assert run.refused("public_get_balance", 401)["code"] == "unauthorized"
    assert run.refused("public_create_order_v2", 401)["code"] == "unauthorized"
    assert not [d for d in run.exchange.order_details(KEY_ID) if d.report.client_order_id == "sdk-unsigned"]


# --- amend, decrease, order groups (a second account) ---------------------------------------------------------
def _amended(run: Run):
    return next(d for d in run.exchange.order_details(AMEND_KEY_ID) if d.report.client_order_id == "sdk-amended")


def test_an_amend_parses_with_the_new_total_and_the_new_client_order_id(run):
    """Moved from 0.01 to 0.02 and from 2 to 3 contracts, renamed: the reply is the SDK's AmendOrderV2Response."""
    reply = run.ok("amend_order_v2")
    assert run.results["amend_order_v2"]["model"] == "AmendOrderV2Response"
    order = _amended(run)
    assert (reply["order_id"], reply["client_order_id"], reply["fill_count"], reply["remaining_count"]) == (
        order.report.order_id, "sdk-amended", "0.00", "3.00")
    assert isinstance(reply["ts_ms"], int) and reply["ts_ms"] > 0
    assert run.refused("amend_order_v2_side", 400)["code"] == "bad_request"


def test_a_decrease_parses_with_what_remains_and_the_order_shows_the_new_terms(run):
    reply = run.ok("decrease_order_v2")
    assert run.results["decrease_order_v2"]["model"] == "DecreaseOrderV2Response"
    assert (reply["client_order_id"], reply["remaining_count"]) == ("sdk-amended", "2.00")
    read = run.ok("amend_get_order")["order"]
    assert (read["yes_price_dollars"], read["remaining_count_fp"], read["initial_count_fp"], read["status"]) == (
        "0.0200", "2.00", "2.00", "resting")
    assert run.ok("decrease_order_v2_to_zero")["remaining_count"] == "0.00"
    assert _amended(run).report.status == "canceled"
    assert run.refused("amend_order_v2_gone", 404)["code"] == "not_found"
    assert run.refused("decrease_order_v2_unknown", 404)["code"] == "not_found"


def test_order_groups_parse_and_a_triggered_group_refuses_orders_until_reset(run):
    created = run.ok("create_order_group")
    assert run.results["create_order_group"]["model"] == "CreateOrderGroupResponse" and created["subaccount"] == 0
    grouped = run.ok("create_order_v2_grouped")
    one = run.ok("get_order_group")
    assert (one["orders"], one["contracts_limit_fp"], one["is_auto_cancel_enabled"]) == ([grouped["order_id"]],
                                                                                          "5.00", True)
    assert run.ok("update_order_group_limit") == {}
    (listed,) = run.ok("get_order_groups")["order_groups"]
    assert (listed["id"], listed["contracts_limit_fp"]) == (created["order_group_id"], "7.00")
    assert run.ok("trigger_order_group") == {}
    assert run.refused("create_order_v2_grouped_triggered", 400)["code"] == "order_group_triggered"
    assert run.ok("reset_order_group") == {} and run.ok("delete_order_group") == {}
    assert run.refused("get_order_group_deleted", 404)["code"] == "not_found"
    grouped_order = next(d for d in run.exchange.order_details(AMEND_KEY_ID)
                         if d.report.client_order_id == "sdk-grouped")
    assert grouped_order.report.status == "canceled" and grouped_order.order_group_id == created["order_group_id"]

