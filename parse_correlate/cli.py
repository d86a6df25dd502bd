"""`duisgw pc`: Parse and Correlate on files, for Users (issues 7 and 18).

    duisgw pc parse FILE --version V [--keystore DIR | --user-key PEM --device-cert PEM]
                    [--device-signing-cert PEM] [--request FILE] [--srv V]
    duisgw pc correlate REQUEST PRECOMMAND [--sign-with KEY_PEM]
                        [--command-variant 5|6|7] [--out FILE]

`parse` checks a GBCS response or alert (correlation with --request, then its MAC or
signature with the keys given) and turns it into the MMC output XML (`ra:GBCSResponse`)
of DUIS version V, on stdout (`parse_correlate.parse_command`). `correlate` is the User's
half of a critical command: it checks the Pre-Command the DCC returned for a CV 4
request against that request and, with --sign-with, signs it and writes the CV 5/6/7
SignedPreCommand request, unsigned as XML, for `duisgw send --keep-counter` to sign and
post under the same RequestID.

A GBCS file is hex text (the RTDS .HEX form, whitespace allowed), base64 or raw binary,
or a DUIS XML document (first byte '<') whose one GBCSPayload element carries it.

Exit codes, so that scripts can tell whose problem a failure is:
    0  parsed; or every correlation check passed (a skipped check does not fail)
    1  a message or document is malformed, a MAC or signature does not verify, or a
       correlation check failed
    2  the invocation is wrong: unreadable file, unusable key, DUIS version not served
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from mmc.catalogue import SIGNED_PRE_COMMAND_VARIANTS
from parse_correlate.correlate import CorrelationError, sign_pre_command
from parse_correlate.gbcs import parse_message
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.inputs import (
    BadInput,
    BadInvocation,
    DuisRequest,
    load_private_key,
    read_file,
    read_gbcs,
    read_request,
)
from parse_correlate.parse_command import add_parse_arguments, run_parse
from parse_correlate.precommand_report import (
    Verdict,
    check_pre_command,
    format_report,
    signed_pre_command_request,
)

__all__ = ["add_arguments", "run"]


# ---- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `parse` and `correlate` under the `pc` command."""
    actions = parser.add_subparsers(dest="pc_command", required=True, metavar="{parse,correlate}")
    add_parse_arguments(actions)
    # fmt: off
    correlate = actions.add_parser("correlate", help="check a Pre-Command against its request")
    correlate.add_argument("request", type=Path, metavar="REQUEST",
                           help="the User's CV 4 DUIS request XML")
    correlate.add_argument("pre_command", type=Path, metavar="PRECOMMAND",
                           help="the DCC's response XML (PreCommand) or the raw GBCS")
    correlate.add_argument("--sign-with", type=Path, metavar="KEY_PEM",
                           help="the User's role digital-signing private key (PEM)")
    correlate.add_argument("--command-variant", type=int, default=5,
                           choices=sorted(SIGNED_PRE_COMMAND_VARIANTS),
                           help="CV of the SignedPreCommand request (default 5)")
    correlate.add_argument("--out", type=Path, metavar="FILE",
                           help="write the SignedPreCommand request here (default stdout)")
    # fmt: on


def run(args: argparse.Namespace) -> int:
    command = args.pc_command
    try:
        return run_parse(args) if command == "parse" else _run_correlate(args)
    except BadInvocation as exc:
        _fail(command, exc)
        return 2
    except BadInput as exc:
        _fail(command, exc)
        return 1


def _fail(command: str, exc: Exception) -> None:
    # One line, whatever the library put in its message.
    print(f"duisgw pc {command}: {' '.join(str(exc).split())}", file=sys.stderr)


# ---- correlate -------------------------------------------------------------------------------


def _run_correlate(args: argparse.Namespace) -> int:
    signing_key = None
    if args.sign_with is not None:
        signing_key = load_private_key(args.sign_with, "--sign-with")
    if args.out is not None and signing_key is None:
        raise BadInvocation("--out needs --sign-with: only a signed Pre-Command is written")
    request = read_request(read_file(args.request, "REQUEST"), str(args.request))
    source = read_gbcs(read_file(args.pre_command, "PRECOMMAND"), str(args.pre_command))
    try:
        message = parse_message(source.gbcs)
    except GbcsError as exc:
        raise BadInput(f"{args.pre_command}: malformed GBCS message: {exc}") from None
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
        raise BadInput("not signed: the Pre-Command does not match the request")
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
        raise BadInput(f"not signed: {exc}") from None
    document = signed_pre_command_request(request, signed, args.command_variant)
    if args.out is None:
        sys.stdout.write(document.decode("utf-8") + "\n")
        return
    try:
        args.out.write_bytes(document)
    except OSError as exc:
        raise BadInvocation(f"--out {args.out}: {exc.strerror or exc}") from None
