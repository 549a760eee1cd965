"""Drives the local exchange through Kalshi's official Python SDK (``kalshi-python-sync``): run by
``test_kalshi_sdk_conformance.py`` with the SDK's own Python (3.13, ``$TAPE_SDK_PYTHON``), never imported by
tape. Reads one JSON object on stdin (``host``, ``key_id``, ``key_path``, ``ticker``, ``rest_price``,
``cross_price``, ``expiration_time``, and ``amend_key_id``, ``amend_price`` for the amends and order groups, made
on a second account so the first one's reads stay as they were), makes every call the runtime makes, and prints
one JSON object: per call, the model the
reply was parsed into and its fields (``model_dump(mode="json")``), or the error the SDK raised (its
status, and the error body as the SDK's ``ErrorResponse``, read by the SDK where the spec lists that status for
the call, else by ``ErrorResponse.from_json``).
"""

import json
import sys
import traceback

import kalshi_python_sync as k
from kalshi_python_sync.models import BatchCancelOrdersV2RequestOrdersInner, CreateOrderV2Request, ErrorResponse

args = json.load(sys.stdin)
results: dict[str, dict] = {}


def client(signed: bool, key_id: str | None = None) -> k.KalshiClient:
    config = k.Configuration(host=args["host"])
    if signed:
        config.api_key_id = key_id or args["key_id"]
        with open(args["key_path"]) as f:
            config.private_key_pem = f.read()
    return k.KalshiClient(config)


def record(name: str, call) -> object:
    """One SDK call: what its reply parsed into, or what it raised."""
    try:
        reply = call()
    except k.ApiException as exc:
        data = exc.data  # the SDK's ErrorResponse, where the spec lists the status for the call
        if data is None and exc.body:  # else the body read as the spec's ErrorResponse
            data = ErrorResponse.from_json(exc.body)
        results[name] = {"ok": False, "status": exc.status, "error_model": type(data).__name__ if data else None,
                         "error": data.model_dump(mode="json") if data is not None else exc.body}
        return None
    except Exception as exc:  # a reply that does not parse into the SDK's model: the conformance failure
        results[name] = {"ok": False, "status": None, "exception": type(exc).__name__,
                         "error": "".join(traceback.format_exception_only(exc)).strip()[:2000]}
        return None
    value = reply.model_dump(mode="json") if hasattr(reply, "model_dump") else reply  # some replies are plain objects
    results[name] = {"ok": True, "model": type(reply).__name__, "value": value}
    return reply


def pages(name: str, fetch, key: str) -> None:
    """Every page of a list, two items a page, following ``cursor`` until it is empty."""
    items, cursor, count = [], None, 0
    while True:
        reply = record(f"{name}[{count}]", lambda cursor=cursor: fetch(limit=2, cursor=cursor))
        if reply is None:
            break
        count += 1
        items += results[f"{name}[{count - 1}]"]["value"][key]
        cursor = reply.cursor
        if not cursor or count > 50:
            break
    results[name] = {"ok": reply is not None, "pages": count, "items": items}


signed, public = client(True), client(False)
ticker = args["ticker"]

# market data: signed, and without a signature (Kalshi serves it publicly)
pages("get_markets", signed.get_markets, "markets")
record("get_market", lambda: signed.get_market(ticker))
record("get_market_orderbook", lambda: signed.get_market_orderbook(ticker))
record("public_get_markets", lambda: public.get_markets(limit=100))
record("public_get_market", lambda: public.get_market(ticker))
record("public_get_market_orderbook", lambda: public.get_market_orderbook(ticker))

# orders: one that rests, one that fills at once, a repeated client_order_id, a cancel
record("get_balance_before", signed.get_balance)
order = {"ticker": ticker, "side": "bid", "count": "2.00", "price": args["rest_price"],
         "time_in_force": "good_till_canceled", "self_trade_prevention_type": "taker_at_cross",
         "expiration_time": args["expiration_time"]}
rests = record("create_order_v2_rests", lambda: signed.create_order_v2(**order, client_order_id="sdk-rests"))
record("create_order_v2_fills", lambda: signed.create_order_v2(
    ticker=ticker, side="bid", count="1.00", price=args["cross_price"], client_order_id="sdk-fills",
    time_in_force="immediate_or_cancel", self_trade_prevention_type="taker_at_cross"))
record("create_order_v2_repeated", lambda: signed.create_order_v2(**order, client_order_id="sdk-rests"))
if rests is not None:
    record("cancel_order_v2", lambda: signed.cancel_order_v2(rests.order_id))
    record("cancel_order_v2_again", lambda: signed.cancel_order_v2(rests.order_id))

# batches: two that rest and one off the price grid; then cancel the two and an unknown id
batch = record("batch_create_orders_v2", lambda: signed.batch_create_orders_v2(orders=[
    CreateOrderV2Request(**order, client_order_id="sdk-batch-1"),
    CreateOrderV2Request(**order, client_order_id="sdk-batch-2"),
    CreateOrderV2Request(**{**order, "price": "0.0050"}, client_order_id="sdk-batch-3")]))
if batch is not None:
    ids = [item.order_id for item in batch.orders if item.order_id] + ["no-such-order"]
    record("batch_cancel_orders_v2", lambda: signed.batch_cancel_orders_v2(
        orders=[BatchCancelOrdersV2RequestOrdersInner(order_id=i) for i in ids]))

# reads of the portfolio
pages("get_orders", signed.get_orders, "orders")
if rests is not None:
    record("get_order", lambda: signed.get_order(rests.order_id))
pages("get_fills", signed.get_fills, "fills")
record("get_positions", signed.get_positions)
record("get_balance", signed.get_balance)

# errors
record("get_market_unknown", lambda: signed.get_market("KXNOPE-404"))
record("public_get_balance", public.get_balance)
record("public_create_order_v2", lambda: public.create_order_v2(**order, client_order_id="sdk-unsigned"))

# amend and decrease (V2), on a second account: an order that rests, moved and grown, renamed, decreased by one,
# refused a side change, decreased to nothing (canceled), then amended too late and decreased unknown (404)
amender = client(True, args["amend_key_id"])
mine = record("amend_create", lambda: amender.create_order_v2(**order, client_order_id="sdk-amend"))
if mine is not None:
    record("amend_order_v2", lambda: amender.amend_order_v2(
        mine.order_id, ticker=ticker, side="bid", price=args["amend_price"], count="3.00",
        client_order_id="sdk-amend", updated_client_order_id="sdk-amended"))
    record("amend_order_v2_side", lambda: amender.amend_order_v2(
        mine.order_id, ticker=ticker, side="ask", price=args["amend_price"], count="3.00"))
    record("decrease_order_v2", lambda: amender.decrease_order_v2(mine.order_id, reduce_by="1.00"))
    record("amend_get_order", lambda: amender.get_order(mine.order_id))
    record("decrease_order_v2_to_zero", lambda: amender.decrease_order_v2(mine.order_id, reduce_to="0"))
    record("amend_order_v2_gone", lambda: amender.amend_order_v2(
        mine.order_id, ticker=ticker, side="bid", price=args["amend_price"], count="3.00"))
record("decrease_order_v2_unknown", lambda: amender.decrease_order_v2("no-such-order", reduce_to="0"))

# order groups: V2 create takes order_group_id
group = record("create_order_group", lambda: amender.create_order_group(contracts_limit=5))
if group is not None:
    gid = group.order_group_id
    record("create_order_v2_grouped", lambda: amender.create_order_v2(**order, client_order_id="sdk-grouped",
                                                                      order_group_id=gid))
    record("get_order_group", lambda: amender.get_order_group(gid))
    record("update_order_group_limit", lambda: amender.update_order_group_limit(gid, contracts_limit_fp="7.00"))
    record("get_order_groups", amender.get_order_groups)
    record("trigger_order_group", lambda: amender.trigger_order_group(gid))
    record("create_order_v2_grouped_triggered", lambda: amender.create_order_v2(
        **order, client_order_id="sdk-grouped-2", order_group_id=gid))
    record("reset_order_group", lambda: amender.reset_order_group(gid))
    record("delete_order_group", lambda: amender.delete_order_group(gid))
    record("get_order_group_deleted", lambda: amender.get_order_group(gid))

json.dump(results, sys.stdout)
