"""The decoders' output: a small tree of MMC elements, written to XML in one place.

Decoders build `Node`s in the order the MMC schema defines; `parse_correlate.mmc_output`
turns them into `ra:` elements. Values are typed on the way in (integers, datetimes,
booleans) and formatted here once, as the schema's simple types want them.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import NamedTuple

from parse_correlate.decode.errors import DecodeError

Value = str | int | bool | dt.datetime | bytes | Decimal
# Characters XML 1.0 cannot carry: a device's text holding one is refused, not mangled.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Node(NamedTuple):
    name: str
    text: str | None = None
    children: tuple[Node, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()


def format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, Decimal):
        return format(value, "f")  # never exponent notation, which xs:decimal refuses
    if isinstance(value, str) and _NOT_XML.search(value):
        raise DecodeError(f"text value {value[:40]!r} holds characters XML cannot carry")
    return str(value)


def format_datetime(moment: dt.datetime) -> str:
    moment = moment.astimezone(dt.UTC)
    # The year always in four digits: strftime leaves a device's year 991 as "991".
    text = f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 10_000:02d}"
    return text + "Z"


def leaf(name: str, value: Value, **attributes: str) -> Node:
    return Node(name, format_value(value), (), tuple(attributes.items()))


def branch(name: str, *children: Node | None, **attributes: str) -> Node:
    return Node(name, None, tuple(c for c in children if c is not None), tuple(attributes.items()))


def count_values(nodes: tuple[Node, ...] | list[Node]) -> int:
    """Leaf values and attributes: the 'values decoded' of the coverage figure."""
    total = 0
    for node in nodes:
        total += len(node.attributes) + (node.text is not None)
        total += count_values(node.children)
    return total
