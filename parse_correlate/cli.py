"""`duisgw pc`: Parse and Correlate on files, for Users (issue 7).

    duisgw pc parse FILE --version V [--user-key PEM --device-cert PEM]
    duisgw pc correlate REQUEST PRECOMMAND [--sign-with KEY_PEM]
                        [--command-variant 5|6|7] [--out FILE]

`parse` turns a GBCS response or alert into the MMC output XML (`ra:GBCSResponse`) of
DUIS version V, on stdout. `correlate` is the User's half of a critical command: it checks
the Pre-Command the DCC returned for a CV 4 request against that request and, with
--sign-with, signs it and writes the CV 5/6/7 SignedPreCommand request, unsigned as XML,
for `duisgw send --keep-counter` to sign and post under the same RequestID.

A GBCS file is hex text (the RTDS .HEX form, whitespace allowed), base64 or raw binary,
or a DUIS XML document (first byte '<') whose one GBCSPayload element carries it.

Exit codes, so that scripts can tell whose problem a failure is:
    0  parsed; or every correlation check passed (a skipped check does not fail)
    1  a message or document is malformed, or a correlation check failed
    2  the invocation is wrong: unreadable file, unusable key, DUIS version not served
"""

from __future__ import annotations

import argparse
import base64
import binascii
import sys
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from mmc.identifiers import IdentifierError, parse_request_id
from parse_correlate.correlate import CorrelationError, sign_pre_command
from parse_correlate.gbcs import GbcsError, KeyAgreement, parse_message
from parse_correlate.handlers import handlers_for
from parse_correlate.mmc_output import UnsupportedVersionError
from parse_correlate.precommand_report import DS_NS as DS_NS  # re-exported for callers
from parse_correlate.precommand_report import (
    SR_NS,
    DuisRequest,
    Verdict,
    check_pre_command,
    format_report,
    signed_pre_command_request,
)

# Hex doubles the largest GBCS message parse_message accepts (1 MiB); room for whitespace.
MAX_INPUT_BYTES = 4 << 20
SIGNED_PRE_COMMAND_VARIANTS = (5, 6, 7)
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# Files come from anywhere: no DTD, no entity expansion, no network.
_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
)


class _BadInvocation(Exception):
    """The command line names something unusable (exit 2)."""


class _BadInput(Exception):
    """A file's content is malformed (exit 1)."""


class GbcsInput(NamedTuple):
    gbcs: bytes
    form: str  # "hex", "base64", "binary" or "xml"
    document: etree._Element | None  # the DUIS document that carried it, if any


# ---- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `parse` and `correlate` under the `pc` command."""
    actions = parser.add_subparsers(dest="pc_command", required=True, metavar="{parse,correlate}")
    # fmt: off
    parse = actions.add_parser("parse", help="GBCS response/alert -> MMC output XML")
    parse.add_argument("file", type=Path, metavar="FILE",
                       help="GBCS as hex, base64 or binary, or DUIS XML carrying it")
    # Not argparse choices: an unserved version is answered with the served list, exit 2.
    parse.add_argument("--version", dest="duis_version", required=True, metavar="V",
                       help="DUIS version of the MMC output (5.0, 5.1, 5.3, 5.4)")
    parse.add_argument("--user-key", type=Path, metavar="PEM",
                       help="the User's key agreement private key (PEM), to decrypt")
    parse.add_argument("--device-cert", type=Path, metavar="PEM",
                       help="the device's key agreement certificate or public key (PEM)")

    correlate = actions.add_parser("correlate", help="check a Pre-Command against its request")
    correlate.add_argument("request", type=Path, metavar="REQUEST",
                           help="the User's CV 4 DUIS request XML")
    correlate.add_argument("pre_command", type=Path, metavar="PRECOMMAND",
                           help="the DCC's response XML (PreCommand) or the raw GBCS")
    correlate.add_argument("--sign-with", type=Path, metavar="KEY_PEM",
                           help="the User's role digital-signing private key (PEM)")
    correlate.add_argument("--command-variant", type=int, choices=SIGNED_PRE_COMMAND_VARIANTS,
                           default=5, help="CV of the SignedPreCommand request (default 5)")
    correlate.add_argument("--out", type=Path, metavar="FILE",
                           help="write the SignedPreCommand request here (default stdout)")
    # fmt: on


def run(args: argparse.Namespace) -> int:
    command = args.pc_command
    try:
        return _run_parse(args) if command == "parse" else _run_correlate(args)
    except _BadInvocation as exc:
        _fail(command, exc)
        return 2
    except _BadInput as exc:
        _fail(command, exc)
        return 1


def _fail(command: str, exc: Exception) -> None:
    # One line, whatever the library put in its message.
    print(f"duisgw pc {command}: {' '.join(str(exc).split())}", file=sys.stderr)


# ---- parse ---------------------------------------------------------------------------------


def _run_parse(args: argparse.Namespace) -> int:
    try:
        handlers = handlers_for(args.duis_version)
    except UnsupportedVersionError as exc:
        raise _BadInvocation(str(exc)) from None
    keys = _key_agreement(args.user_key, args.device_cert)
    source = read_gbcs(_read(args.file, "FILE"), str(args.file))
    try:
        output = handlers.parse_response(source.gbcs, keys)
    except GbcsError as exc:
        raise _BadInput(f"{args.file}: cannot parse the GBCS message: {exc}") from None
    sys.stdout.write(output.decode("utf-8") + "\n")
    return 0


def _key_agreement(user_key: Path | None, device_cert: Path | None) -> KeyAgreement | None:
    if user_key is None and device_cert is None:
        return None
    if user_key is None or device_cert is None:
        raise _BadInvocation("--user-key and --device-cert are needed together")
    return KeyAgreement(
        own_private_key=_load_private_key(user_key, "--user-key"),
        peer_public_key=_load_public_key(device_cert, "--device-cert"),
    )


# ---- inputs ----------------------------------------------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise _BadInvocation(f"{what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise _BadInput(f"{what} {path} is larger than {MAX_INPUT_BYTES} bytes")
    return data


def read_gbcs(data: bytes, name: str) -> GbcsInput:
    """Find the GBCS message in a file's bytes, whichever of the four forms it takes.

    Order matters: hex before base64 (hex text is also base64 alphabet), both before raw.
    Raw GBCS starts with tag 0xDD or 0xDF, never '<' or a hex or base64 character, so
    no raw message is mistaken for another form."""
    if data.lstrip().removeprefix(b"\xef\xbb\xbf").startswith(b"<"):
        document = _parse_xml(data, name)
        return GbcsInput(_payload_of(document, name), "xml", document)
    compact = b"".join(data.split())
    if not compact:
        raise _BadInput(f"{name} is empty")
    if _HEX_DIGITS.issuperset(compact):
        if len(compact) % 2:
            raise _BadInput(f"{name}: hex text has an odd number of digits")
        return GbcsInput(bytes.fromhex(compact.decode("ascii")), "hex", None)
    try:
        return GbcsInput(base64.b64decode(compact, validate=True), "base64", None)
    except binascii.Error:
        pass  # not base64 either: the file is the message itself
    return GbcsInput(data, "binary", None)


def _parse_xml(data: bytes, name: str) -> etree._Element:
    try:
        return etree.fromstring(data, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise _BadInput(f"{name}: not well-formed XML: {exc}") from None


def _payload_of(document: etree._Element, name: str) -> bytes:
    payloads = document.findall(".//{*}GBCSPayload")
    if len(payloads) != 1:
        # A refusal carries no payload; its ResponseCode says why.
        code = document.findtext("{*}Header/{*}ResponseCode")
        because = f" (ResponseCode {code.strip()})" if code else ""
        raise _BadInput(f"{name}: expected one GBCSPayload, found {len(payloads)}{because}")
    text = "".join((payloads[0].text or "").split())
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _BadInput(f"{name}: GBCSPayload is not base64") from None


def _load_private_key(path: Path, what: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, what), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _BadInvocation(f"{what} {path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _BadInvocation(f"{what} {path}: GBCS keys are EC P-256")
    return key


def _load_public_key(path: Path, what: str) -> ec.EllipticCurvePublicKey:
    data = _read(path, what)
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise _BadInvocation(f"{what} {path}: no PEM certificate or public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _BadInvocation(f"{what} {path}: GBCS keys are EC P-256")
    return key


def read_request(data: bytes, name: str) -> DuisRequest:
    root = _parse_xml(data, name)
    if root.tag != f"{{{SR_NS}}}Request":
        raise _BadInput(f"{name}: the document is not an sr:Request")
    header = f"{{{SR_NS}}}Header/{{{SR_NS}}}"
    try:
        request_id = parse_request_id((root.findtext(header + "RequestID") or "").strip())
    except IdentifierError as exc:
        raise _BadInput(f"{name}: RequestID: {exc}") from None
    if root.find(header + "CommandVariant") is None or root.find(f"{{{SR_NS}}}Body") is None:
        raise _BadInput(f"{name}: the request has no sr:CommandVariant or no sr:Body")
    return DuisRequest(
        root=root,
        version=(root.get("schemaVersion") or "").strip(),
        request_id=request_id,
        command_variant=(root.findtext(header + "CommandVariant") or "").strip(),
        srv_variant=(root.findtext(header + "ServiceReferenceVariant") or "").strip(),
    )


# ---- correlate -------------------------------------------------------------------------------


def _run_correlate(args: argparse.Namespace) -> int:
    signing_key = None
    if args.sign_with is not None:
        signing_key = _load_private_key(args.sign_with, "--sign-with")
    if args.out is not None and signing_key is None:
        raise _BadInvocation("--out needs --sign-with: only a signed Pre-Command is written")
    request = read_request(_read(args.request, "REQUEST"), str(args.request))
    source = read_gbcs(_read(args.pre_command, "PRECOMMAND"), str(args.pre_command))
    try:
        message = parse_message(source.gbcs)
    except GbcsError as exc:
        raise _BadInput(f"{args.pre_command}: malformed GBCS message: {exc}") from None
    response_id = None
    if source.document is not None:
        response_id = source.document.findtext("{*}Header/{*}RequestID")
    checks = check_pre_command(request, message, response_id)
    report = format_report(request, source, message, checks)
    failed = any(check.verdict is Verdict.MISMATCH for check in checks)
    # The signed request may be the one thing on stdout; then the report moves aside.
    report_stream = sys.stderr if signing_key is not None and args.out is None else sys.stdout
    report_stream.write(report)
    if signing_key is None:
        return 1 if failed else 0
    if failed:
        # Signing is what hands the device a command: never for a mismatching one.
        raise _BadInput("not signed: the Pre-Command does not match the request")
    _write_signed_request(args, request, source.gbcs, signing_key)
    return 0


def _write_signed_request(
    args: argparse.Namespace,
    request: DuisRequest,
    pre_command: bytes,
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    try:
        signed = sign_pre_command(pre_command, signing_key)
    except CorrelationError as exc:
        raise _BadInput(f"not signed: {exc}") from None
    document = signed_pre_command_request(request, signed, args.command_variant)
    if args.out is None:
        sys.stdout.write(document.decode("utf-8") + "\n")
        return
    try:
        args.out.write_bytes(document)
    except OSError as exc:
        raise _BadInvocation(f"--out {args.out}: {exc.strerror or exc}") from None
