"""Helpers the DLMS/COSEM layouts share: typed access to an access-response's values
and the COSEM value forms GBCS uses (sans-IO)."""

from __future__ import annotations

import datetime as dt

from parse_correlate.decode import dlms
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.decode.readers import Reading, Source, dlms_outcome, dlms_value
from parse_correlate.gbcs import decode_dlms_datetime

# DLMS unit enumeration (IEC 62056-62) -> the unit names the MMC schema uses.
UNIT_NAMES = {27: "W", 29: "varh", 30: "Wh", 32: "varh", 33: "A", 35: "V", 13: "m3", 255: ""}
UNIT_W = 27
UNIT_WH = 30
UNIT_VARH = 32
DLMS_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # GBCS log timestamps count from here


class Values:
    """An access-response's data by position; a failed or absent item reads as None."""

    __slots__ = ("_access", "source")

    def __init__(self, source: Source, access: dlms.AccessResponse) -> None:
        self.source = source
        self._access = access

    def __len__(self) -> int:
        return len(self._access.data)

    def get(self, index: int) -> dlms.DlmsData:
        if index >= len(self._access.data) or not self._access.results[index].success:
            return None
        return self._access.data[index]

    def plain(self, index: int) -> dlms.DlmsData:
        """The value, decrypted first when it is protected data."""
        value = self.get(index)
        return None if value is None else dlms_value(self.source, value)


def read(source: Source) -> tuple[Values, Reading]:
    access, reading = dlms_outcome(source)
    return Values(source, access), reading


def integer(value: dlms.DlmsData, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what} is not an integer: {value!r:.80}")
    return value


def octets(value: dlms.DlmsData, what: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise DecodeError(f"{what} is not an octet string: {value!r:.80}")
    return value


def text(value: dlms.DlmsData, what: str) -> str | None:
    """Visible strings and octet strings of printable characters, as text."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    raw = octets(value, what)
    assert raw is not None
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not printable text") from exc


def date_time(value: dlms.DlmsData, what: str) -> dt.datetime | None:
    raw = octets(value, what)
    if raw is None:
        return None
    if len(raw) != 12:
        raise DecodeError(f"{what} is not a 12-byte DLMS date-time")
    return decode_dlms_datetime(raw)


def log_time(seconds: int) -> dt.datetime:
    """A log entry's UTC time: double-long-unsigned seconds since 2000-01-01."""
    return DLMS_EPOCH + dt.timedelta(seconds=seconds)


def time_of_day(value: dlms.DlmsData, what: str) -> str | None:
    """A 4-byte DLMS time (hour, minute, second, hundredths) as xs:time."""
    raw = octets(value, what)
    if raw is None:
        return None
    if len(raw) != 4 or raw[0] > 23 or raw[1] > 59 or raw[2] > 59:
        raise DecodeError(f"{what} is not a DLMS time: {raw.hex()}")
    return f"{raw[0]:02d}:{raw[1]:02d}:{raw[2]:02d}"


def scaled(value: int, scaler_unit: dlms.DlmsData, units: tuple[int, ...], what: str) -> int:
    """A register value in base units: its scaler applied, its unit one of `units`."""
    match scaler_unit:
        case (int() as scaler, int() as unit) if unit in units:
            pass
        case _:
            raise DecodeError(f"{what} scaler/unit {scaler_unit!r} is not one of units {units}")
    factor: int = pow(10, abs(scaler))
    if scaler >= 0:
        return value * factor
    if value % factor:
        raise DecodeError(f"{what} {value} with scaler {scaler} is not a whole number")
    return value // factor


def register(
    name: str, unit_element: str, value: dlms.DlmsData, scaler_unit: dlms.DlmsData, unit: int
) -> Node | None:
    """A register element: Value in base units and its unit name."""
    number = integer(value, name)
    if number is None:
        return None
    if scaler_unit is not None:
        number = scaled(number, scaler_unit, (unit,), name)
    return branch(name, leaf("Value", number), leaf(unit_element, UNIT_NAMES[unit]))


def optional_leaf(name: str, value: object) -> Node | None:
    if value is None:
        return None
    if not isinstance(value, str | int | bool | dt.datetime | bytes):
        raise DecodeError(f"{name} has an unexpected value {value!r:.80}")
    return leaf(name, value)


def done(reading: Reading, *content: Node | None) -> Reading:
    """The reading's outcome with the content that was found, in order."""
    return Reading(reading.success, tuple(c for c in content if c is not None), reading.debug)


def electricity(*children: Node | None) -> Node | None:
    present = [child for child in children if child is not None]
    return branch("Electricity", *present) if present else None


def eui(raw: object) -> str:
    if not isinstance(raw, bytes) or len(raw) != 8:
        raise DecodeError("a device id is 8 bytes")
    return "-".join(f"{b:02X}" for b in raw)


def log_pairs(entries: object, what: str) -> list[tuple[int, tuple[int, ...]]]:
    """A log buffer of (UTC seconds, value...) entries, each value an integer."""
    if not isinstance(entries, list):
        raise DecodeError(f"{what} is not a list of entries")
    rows = []
    for entry in entries:
        match entry:
            case (int() as seconds, *numbers) if numbers and all(
                isinstance(n, int) and not isinstance(n, bool) for n in numbers
            ):
                rows.append((seconds, tuple(n for n in numbers if isinstance(n, int))))
            case _:
                raise DecodeError(f"{what} entry {entry!r:.80} is not (time, values)")
    return rows
