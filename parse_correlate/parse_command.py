"""`duisgw pc parse`: a device response or alert -> MMC output XML, checked first.

    duisgw pc parse FILE --version V [--keystore DIR]
                    [--user-key PEM --device-cert PEM] [--device-signing-cert PEM]
                    [--request FILE] [--srv V]

Order: read, frame, correlate with the request (--request: the User's DUIS request or
the GBCS command), check the MAC or signature with whatever keys are given, then decode.
A MAC or signature that fails, or a response that does not answer the request, is exit 1
with one line on stderr and nothing on stdout. Without a key for the check, the output
says it was not authenticated (an XML comment, and a note on stderr).

Keys: --keystore DIR looks keys up by EUI-64 as the DCC's test keystore names them
(`<eui>-ka.key`, `<eui>-ka.pem`, `<eui>-ds.pem`, EUI in lower-case hex without
hyphens): the User's key agreement key, the device's key agreement and signing
certificates. --user-key/--device-cert and --device-signing-cert give them directly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from mmc.identifiers import Eui64, eui64_compact
from parse_correlate.gbcs import GbcsMessage, parse_message
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_mac import KeyAgreement
from parse_correlate.handlers import handlers_for
from parse_correlate.inputs import (
    SR_NS,
    BadInput,
    BadInvocation,
    GbcsInput,
    load_private_key,
    load_public_key,
    read_file,
    read_gbcs,
    read_request,
)
from parse_correlate.integrity import Authentication, Credentials, IntegrityError
from parse_correlate.mmc_output import UnsupportedVersionError
from parse_correlate.response_correlation import (
    RequestFacts,
    ResponseMismatchError,
    correlate_response,
    facts_from_command,
    facts_from_request_id,
)


def add_parse_arguments(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # fmt: off
    parse = actions.add_parser("parse", help="GBCS response/alert -> MMC output XML")
    parse.add_argument("file", type=Path, metavar="FILE",
                       help="GBCS as hex, base64 or binary, or DUIS XML carrying it")
    # Not argparse choices: an unserved version is answered with the served list, exit 2.
    parse.add_argument("--version", dest="duis_version", required=True, metavar="V",
                       help="DUIS version of the MMC output (5.0, 5.1, 5.3, 5.4)")
    parse.add_argument("--keystore", type=Path, metavar="DIR",
                       help="directory of keys named by EUI-64 (<eui>-ka.key, -ka.pem, -ds.pem)")
    parse.add_argument("--user-key", type=Path, metavar="PEM",
                       help="the User's key agreement private key (PEM): MACs, decryption")
    parse.add_argument("--device-cert", type=Path, metavar="PEM",
                       help="the device's key agreement certificate or public key (PEM)")
    parse.add_argument("--device-signing-cert", type=Path, metavar="PEM",
                       help="the device's digital signing certificate or public key (PEM)")
    parse.add_argument("--request", type=Path, metavar="FILE",
                       help="the request this answers: DUIS request XML or the GBCS command")
    parse.add_argument("--srv", metavar="V",
                       help="the Service Reference Variant answered (when no --request)")
    # fmt: on


def run_parse(args: argparse.Namespace) -> int:
    try:
        handlers = handlers_for(args.duis_version)
    except UnsupportedVersionError as exc:
        raise BadInvocation(str(exc)) from None
    source = read_gbcs(read_file(args.file, "FILE"), str(args.file))
    try:
        message = parse_message(source.gbcs)
    except GbcsError as exc:
        raise BadInput(f"{args.file}: cannot parse the GBCS message: {exc}") from None
    srv = args.srv or _envelope_srv(source)
    if args.request is not None:
        facts = _request_facts(args.request)
        try:
            correlate_response(message, facts)
        except ResponseMismatchError as exc:
            raise BadInput(f"{args.file}: {exc}") from None
        srv = facts.srv or srv
    credentials = _credentials(args, message)
    try:
        output = handlers.render(message, source.gbcs, credentials, srv_hint=srv)
    except IntegrityError as exc:
        raise BadInput(f"{args.file}: refused: {exc}") from None
    except GbcsError as exc:
        raise BadInput(f"{args.file}: cannot parse the GBCS message: {exc}") from None
    sys.stdout.write(output.xml.decode("utf-8") + "\n")
    if output.authentication is Authentication.NOT_AUTHENTICATED:
        _note("not authenticated: no key to check its MAC or signature")
    if output.note is not None:
        _note(output.note)
    return 0


def _note(text: str) -> None:
    print(f"duisgw pc parse: note: {text}", file=sys.stderr)


def _envelope_srv(source: GbcsInput) -> str | None:
    """A DUIS response names the SRV it answers in its header."""
    if source.document is None:
        return None
    text = source.document.findtext(f"{{{SR_NS}}}Header/{{{SR_NS}}}ServiceReferenceVariant")
    return text.strip() if text else None


def _request_facts(path: Path) -> RequestFacts:
    data = read_file(path, "--request")
    if data.lstrip().startswith(b"<"):
        request = read_request(data, str(path))
        return facts_from_request_id(request.request_id, request.srv_variant or None)
    command = read_gbcs(data, str(path))
    try:
        return facts_from_command(parse_message(command.gbcs))
    except GbcsError as exc:
        raise BadInput(f"--request {path}: not a GBCS command: {exc}") from None


def keystore_credentials(directory: Path, message: GbcsMessage) -> Credentials:
    """The keys a keystore directory holds for this message: the User's (the
    supplementary remote party, else the recipient) and the device's; for a message
    MACed for the DCC on the User's behalf, the DCC's pair as well."""
    header = message.header
    user = header.supplementary_remote_party or header.recipient
    mac_keys = None
    if header.supplementary_remote_party is not None:
        mac_keys = _keystore_pair(directory, header.recipient, header.originator)
    return Credentials(
        user_keys=_keystore_pair(directory, user, header.originator),
        device_signing_key=_keystore_key(directory, header.originator, "ds.pem"),
        mac_keys=mac_keys,
    )


def _credentials(args: argparse.Namespace, message: GbcsMessage) -> Credentials:
    user_keys = mac_keys = None
    signing = None
    if args.keystore is not None:
        user_keys, signing, mac_keys = keystore_credentials(args.keystore, message)
    if args.user_key is not None or args.device_cert is not None:
        if args.user_key is None or args.device_cert is None:
            raise BadInvocation("--user-key and --device-cert are needed together")
        user_keys = KeyAgreement(
            own_private_key=load_private_key(args.user_key, "--user-key"),
            peer_public_key=load_public_key(args.device_cert, "--device-cert"),
        )
    if args.device_signing_cert is not None:
        signing = load_public_key(args.device_signing_cert, "--device-signing-cert")
    return Credentials(user_keys=user_keys, device_signing_key=signing, mac_keys=mac_keys)


def _keystore_pair(directory: Path, own: Eui64, peer: Eui64) -> KeyAgreement | None:
    own_path = directory / f"{eui64_compact(own).lower()}-ka.key"
    peer_key = _keystore_key(directory, peer, "ka.pem")
    if peer_key is None or not own_path.is_file():
        return None
    return KeyAgreement(load_private_key(own_path, "--keystore"), peer_key)


def _keystore_key(directory: Path, eui: Eui64, suffix: str) -> ec.EllipticCurvePublicKey | None:
    if not directory.is_dir():
        raise BadInvocation(f"--keystore {directory}: not a directory")
    path = directory / f"{eui64_compact(eui).lower()}-{suffix}"
    return load_public_key(path, "--keystore") if path.is_file() else None
