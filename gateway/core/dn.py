"""Distinguished names as comparison keys: RFC 4514 text in, one canonical string out.

A signature names its certificate by issuer DN as text, written by whatever tool
signed it; certificates and CRLs give the same DN as cryptography renders it. Both
go through `normalise_dn` so that equal names (X.520 caseIgnoreMatch) compare equal.
"""

from __future__ import annotations

import functools
from typing import Final

_OID_SHORT_NAMES: Final = {
    "2.5.4.3": "cn",
    "2.5.4.6": "c",
    "2.5.4.7": "l",
    "2.5.4.8": "st",
    "2.5.4.10": "o",
    "2.5.4.11": "ou",
    "2.5.4.45": "x500uniqueidentifier",
    "0.9.2342.19200300.100.1.25": "dc",
    "0.9.2342.19200300.100.1.1": "uid",
}
_KEY_SPECIALS: Final = ",+;\\"  # what would make a key ambiguous


@functools.lru_cache(maxsize=512)
def normalise_dn(text: str) -> str:
    """A comparison key for an RFC 4514 DN: ``"CN=U1, OU=07"`` -> ``"cn=u1,ou=07"``.

    Types and values are case-folded, spaces around separators stripped and inner
    runs of spaces collapsed (X.520 caseIgnoreMatch); RDN order is kept, the
    attributes inside a multi-valued RDN are sorted. Raises ValueError.
    Cached: on the request path the same few issuer names recur.
    """
    rdns = []
    for rdn in _split_unescaped(text, ",;"):
        avas = sorted(_normalise_ava(ava) for ava in _split_unescaped(rdn, "+"))
        rdns.append("+".join(avas))
    return ",".join(rdns)


def _split_unescaped(text: str, separators: str) -> list[str]:
    parts: list[str] = []
    start = 0
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in separators:
            parts.append(text[start:index])
            start = index + 1
    if escaped:
        raise ValueError("DN ends in a lone backslash")
    parts.append(text[start:])
    return parts


def _normalise_ava(ava: str) -> str:
    name, sep, value = ava.partition("=")
    if not sep:
        raise ValueError(f"not type=value: {ava[:60]!r}")
    kind = name.strip().casefold()
    kind = kind.removeprefix("oid.")
    kind = _OID_SHORT_NAMES.get(kind, kind)
    if not kind:
        raise ValueError("empty attribute type")
    plain = " ".join(_unescape_value(value.strip()).split()).casefold()
    return f"{kind}={_escape_value(plain)}"


def _unescape_value(value: str) -> str:
    if "\\" not in value:
        return value
    out = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char != "\\":
            out += char.encode()
            index += 1
            continue
        pair = value[index + 1 : index + 3]
        if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
            out.append(int(pair, 16))
            index += 3
        else:
            out += value[index + 1].encode()
            index += 2
    return out.decode("utf-8", errors="strict")


def _escape_value(value: str) -> str:
    return "".join("\\" + c if c in _KEY_SPECIALS else c for c in value)
