"""Human-readable rendering of records: exact units shown in dollars and contracts."""

from __future__ import annotations

import datetime as dt
import types
import typing
from functools import cache
from typing import Any

import msgspec

from ..events import EVENT_TYPES, Record, event_type
from ..units import format_count, format_money, format_price

_FORMATTERS = {"1/10,000 dollar": format_price, "1/100 contract": format_count,
               "1/100 contract, signed": format_count, "micro-dollars, signed": format_money}


def _unit_of(hint: Any) -> Any:
    """The formatter for a field annotated with a unit (through Optional and tuples), else None."""
    if typing.get_origin(hint) is typing.Annotated:
        for meta in hint.__metadata__:
            if isinstance(meta, msgspec.Meta) and meta.description in _FORMATTERS:
                return _FORMATTERS[meta.description]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if (fmt := _unit_of(arg)) is not None:
                return fmt
    return None


@cache
def _field_units(tag: str) -> dict[str, Any]:
    hints = typing.get_type_hints(EVENT_TYPES[tag], include_extras=True)
    units: dict[str, Any] = {}
    for name, hint in hints.items():
        if (fmt := _unit_of(hint)) is not None:
            units[name] = fmt
        elif name in ("yes_bids", "no_bids"):
            units[name] = "levels"
        elif name == "price_ranges":
            units[name] = "ranges"
    return units


def _show(value: Any, unit: Any) -> str:
    if value is None:
        return "-"
    if unit == "levels":
        return "[" + " ".join(f"{format_price(p)}x{format_count(c)}" for p, c in value) + "]"
    if unit == "ranges":  # MarketInfo's price grid: start..end by step
        return "[" + " ".join(f"{format_price(a)}..{format_price(b)}/{format_price(s)}" for a, b, s in value) + "]"
    if unit is not None:
        return unit(value)
    if isinstance(value, bytes):
        return repr(value)
    if isinstance(value, tuple):
        return ",".join(k if isinstance(k, str) else "=".join(k) for k in value) or "-"
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    return str(value)


def render(record: Record) -> str:
    """``seq  time  type  field=value …`` with prices in dollars, counts in contracts, money in dollars."""
    event = record.event
    tag = event_type(event)
    units = _field_units(tag)
    secs, nanos = divmod(record.ts_ns, 1_000_000_000)
    when = dt.datetime.fromtimestamp(secs, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"
    fields = " ".join(
        f"{name}={_show(getattr(event, name), units.get(name))}"
        for name in event.__struct_fields__
        if getattr(event, name) is not None
    )
    return f"{record.seq:>10}  {when}  {tag:<18} {fields}"
