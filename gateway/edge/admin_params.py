"""Admin API input, checked before any store sees it.

Every value that arrives in an admin path or query is parsed here and refused
with a reason (InvalidInput, answered 400): known parameter names only, each at
most once; integers within SQLite's signed 64-bit range; finite numbers of
seconds in range; known enum values; User IDs as EUI-64s. Nothing past these
functions sees a raw string, so no OverflowError or NaN reaches a query.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Final
from urllib.parse import parse_qsl

from mmc.identifiers import IdentifierError, parse_eui64

SQLITE_INT64_MAX: Final = 2**63 - 1  # QuarantineEventRef is an SQLite INTEGER key
MAX_QUERY_FIELDS: Final = 16
MAX_SHOWN_CHARS: Final = 40  # of a refused value, echoed in the reason
MAX_MESSAGE_ID_CHARS: Final = 256
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}\Z")  # longer is out of range anyway
_SRV = re.compile(r"[0-9]{1,2}(?:\.[0-9]{1,2}){1,3}\Z")  # "4.1.1", "8.2"


class InvalidInput(ValueError):
    """The request's input is unusable; the message says which value and why."""


def parse_query(query: str, allowed: Collection[str]) -> dict[str, str]:
    """Name -> value; an unknown or repeated name is refused, naming it."""
    try:
        pairs = parse_qsl(
            query, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_QUERY_FIELDS
        )
    except ValueError:
        raise InvalidInput(f"more than {MAX_QUERY_FIELDS} query parameters") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidInput(f"unknown query parameter {_shown(name)} (known: {known})")
        if name in params:
            raise InvalidInput(f"query parameter {_shown(name)} given more than once")
        params[name] = value
    return params


def integer(text: str, name: str, low: int, high: int) -> int:
    if not _INTEGER.match(text):
        raise InvalidInput(f"{name} must be an integer, not {_shown(text)}")
    value = int(text)
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be from {low} to {high}, not {_shown(text)}")
    return value


def event_ref(text: str) -> int:
    """A QuarantineEventRef as the store keeps it: 1 to 2**63 - 1."""
    return integer(text, "QuarantineEventRef", 1, SQLITE_INT64_MAX)


def seconds(text: str, name: str, high: float) -> float:
    """A finite number of seconds from 0 to `high` (no nan, inf or 1e999)."""
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{name} must be a number of seconds, not {_shown(text)}") from None
    if not math.isfinite(value) or not 0 <= value <= high:
        raise InvalidInput(f"{name} must be from 0 to {high:g} seconds, not {_shown(text)}")
    return value


def user_id(text: str) -> str:
    return _eui64(text, "user_id")


def device_id(text: str) -> str:
    """A Device ID in the form the inventory keeps (upper case)."""
    return _eui64(text, "a Device ID")


def _eui64(text: str, name: str) -> str:
    try:
        return parse_eui64(text)
    except IdentifierError:
        raise InvalidInput(
            f"{name} must be an EUI-64 (8 hex pairs joined by '-'), not {_shown(text)}"
        ) from None


def srv(text: str) -> str:
    if not _SRV.match(text):
        raise InvalidInput(
            f"srv must be a Service Reference Variant like 4.1.1, not {_shown(text)}"
        )
    return text


def message_id(text: str) -> str:
    if not 0 < len(text) <= MAX_MESSAGE_ID_CHARS:
        raise InvalidInput(f"a message ID has 1 to {MAX_MESSAGE_ID_CHARS} characters")
    return text


def _shown(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "...")
