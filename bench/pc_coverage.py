"""How much of the DCC's reference test data `duisgw pc parse` turns into typed MMC output.

    python -m bench.pc_coverage [--shared DIR] [--json]

Every response and alert vector of RTDS 4.5.0 (`gbcs/rtds/RTDS-4.5.0/*/*_RESPONSE_*`,
`*_ALERT_*`) goes through the library call behind `duisgw pc parse`, for each served
DUIS version, and its output is validated against that version's MMC schema. Columns:

- typed, no keys: SMETSData or DeviceAlertContent written without any key (encrypted
  values then stay `GBCSData format="encrypted"`, as the schema foresees);
- typed, keys: the same with the keystore's keys (`gbcs/rtds/keystore`), which also
  authenticates every MAC and signature they cover;
- opaque: still only `GBCSData` with keys (the note in each output says why);
- refused: genuine vectors refused by an integrity check (should be 0);
- corrupted refused: the same vectors with one MAC or signature byte flipped, refused
  with keys (should be all whose MAC or signature the keystore's keys can check: the
  two PPMID-to-meter messages, PCS01 and PCS02, are MACed with keys it does not hold);
- values: values written in typed elements, with keys.

The SRV a response answers comes from its folder name (the User knows which request it
sent), as `duisgw pc parse --srv` or `--request` gives it; "typed, no SRV" counts what
the message alone decodes. Nothing is timed: this is a coverage count.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

from lxml import etree

from bench.corpus import find_shared
from parse_correlate.gbcs import Cra, GbcsMessage, parse_message
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.integrity import Authentication, Credentials, IntegrityError
from parse_correlate.mmc_output import SUPPORTED_VERSIONS, MmcOutput, render_mmc_output
from parse_correlate.parse_command import keystore_credentials

RTDS = "gbcs/rtds/RTDS-4.5.0"
KEYSTORE = "gbcs/rtds/keystore"
XSD = "duis/xsd"
_MAC_LAST_BYTE = -1  # the MAC is the message's last 12 bytes


class Row(NamedTuple):
    kind: str
    vectors: int
    typed_no_keys: int
    typed_no_srv: int
    typed_keys: int
    opaque: int
    refused: int
    protected: int
    corrupted_refused: int
    values: int
    invalid: int


def vectors(shared: Path) -> list[Path]:
    root = shared / RTDS
    return sorted(
        path for path in root.glob("*/*.HEX") if "_RESPONSE_" in path.name or "_ALERT_" in path.name
    )


def folder_srv(path: Path) -> str | None:
    """'4.1.1_ECS17b' -> '4.1.1'; 'NA_...' (no SRV) -> None."""
    srv = path.parent.name.split("_", 1)[0]
    return None if srv == "NA" else srv


def corrupted(message: GbcsMessage, raw: bytes) -> bytes | None:
    """The vector with one byte of its MAC or signature flipped (None if it has none)."""
    data = bytearray(raw)
    if message.mac is not None:
        data[_MAC_LAST_BYTE] ^= 0x01
        return bytes(data)
    if message.signature:
        data[-1] ^= 0x01  # the signature is the block's (and the message's) last field
        return bytes(data)
    return None


def measure(shared: Path) -> list[Row]:
    schemas = {
        version: etree.XMLSchema(etree.parse(str(shared / XSD / f"MMC_Schema_V{version}.xsd")))
        for version in SUPPORTED_VERSIONS
    }
    keystore = shared / KEYSTORE
    counts: dict[str, list[int]] = {"responses": [0] * 10, "alerts": [0] * 10}
    for path in vectors(shared):
        raw = bytes.fromhex(path.read_text())
        message = parse_message(raw)
        row = counts["alerts" if message.header.cra is Cra.ALERT else "responses"]
        srv = folder_srv(path)
        credentials = keystore_credentials(keystore, message)
        row[0] += 1
        row[1] += render_mmc_output(message, raw, "5.4", srv_hint=srv).typed
        row[2] += render_mmc_output(message, raw, "5.4").typed
        try:
            outputs = [
                render_mmc_output(message, raw, version, credentials, srv_hint=srv)
                for version in SUPPORTED_VERSIONS
            ]
        except IntegrityError:
            row[5] += 1
            continue
        row[3] += outputs[-1].typed
        row[4] += not outputs[-1].typed
        row[8] += outputs[-1].values
        row[9] += sum(not _valid(schemas[o.xml_version], o) for o in _versioned(outputs))
        bad = corrupted(message, raw)
        checked = outputs[-1].authentication is not Authentication.NOT_AUTHENTICATED
        if bad is not None and checked:
            row[6] += 1
            row[7] += _refused(bad, credentials, srv)
    return [Row(kind, *numbers) for kind, numbers in counts.items()]


class _Versioned(NamedTuple):
    xml_version: str
    output: MmcOutput


def _versioned(outputs: list[MmcOutput]) -> list[_Versioned]:
    return [_Versioned(v, o) for v, o in zip(SUPPORTED_VERSIONS, outputs, strict=True)]


def _valid(schema: etree.XMLSchema, versioned: _Versioned) -> bool:
    return bool(schema.validate(etree.fromstring(versioned.output.xml)))


def _refused(bad: bytes, credentials: Credentials, srv: str | None) -> bool:
    try:
        message = parse_message(bad)
        render_mmc_output(message, bad, "5.4", credentials, srv_hint=srv)
    except IntegrityError:
        return True
    except GbcsError:
        return True  # framing refused it before any value was read
    return False


def _table(rows: list[Row]) -> str:
    header = (
        "| | vectors | typed, no keys | typed, no SRV | typed, keys | opaque | refused"
        " | corrupted refused | values | XSD-invalid |"
    )
    lines = [header, "|" + "---|" * 10]
    total = Row("total", *(sum(column) for column in list(zip(*rows, strict=True))[1:]))
    for row in [*rows, total]:
        lines.append(
            f"| {row.kind} | {row.vectors} | {row.typed_no_keys} | {row.typed_no_srv}"
            f" | {row.typed_keys} ({100 * row.typed_keys / max(row.vectors, 1):.1f}%)"
            f" | {row.opaque} | {row.refused} | {row.corrupted_refused} of {row.protected}"
            f" | {row.values} | {row.invalid} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pc_coverage", description=__doc__)
    parser.add_argument("--shared", type=Path, help="the DCC's test data (default ../shared)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = measure(find_shared(args.shared))
    if args.json:
        print(json.dumps([row._asdict() for row in rows]))
    else:
        print(_table(rows))


if __name__ == "__main__":
    main()
