"""The decoders' output: a small tree of MMC elements, written to XML in one place.

Decoders build `Node`s in the order the MMC schema defines; `parse_correlate.mmc_output`
turns them into `ra:` elements. Values are typed on the way in (integers, datetimes,
booleans) and formatted here once, as the schema's simple types want them.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

Value = str | int | bool | dt.datetime | bytes


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
    return str(value)


def format_datetime(moment: dt.datetime) -> str:
    text = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
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
