"""A device response correlates with the request it answers before it is decoded."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mmc.identifiers import parse_request_id
from parse_correlate import cli
from parse_correlate.device_response_check import (
    DeviceResponseRefusedError,
    RefusalReason,
    check_device_response,
)
from parse_correlate.gbcs import Cra, GroupingHeader, build_message, parse_message
from parse_correlate.response_correlation import (
    Mismatch,
    ResponseMismatchError,
    correlate_response,
    facts_from_command,
    facts_from_request_id,
)

USER = "90-B3-D5-1F-30-01-00-00"
ESME = "00-DB-12-34-56-78-90-A0"


@pytest.fixture(scope="module")
def rtds(shared_dir: Path) -> Path:
    return shared_dir / "gbcs/rtds/RTDS-4.5.0"


def _message(path: Path) -> bytes:
    return bytes.fromhex(path.read_text())


def test_every_rtds_response_correlates_with_its_command(rtds: Path) -> None:
    pairs = 0
    for response in sorted(rtds.glob("*/*_RESPONSE_GBCS.HEX")):
        command = response.with_name(response.name.replace("_RESPONSE_", "_COMMAND_"))
        if not command.exists():
            continue  # some responses answer a command the DCC sends (no RTDS file)
        facts = facts_from_command(parse_message(_message(command)))
        checks = correlate_response(parse_message(_message(response)), facts)
        assert all(check.ok for check in checks), response.name
        pairs += 1
    assert pairs > 300


def _response(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "cra": Cra.RESPONSE,
        "originator_counter": 1000,
        "originator": ESME,
        "recipient": USER,
        "message_code": 0x0059,  # ECS52, SRV 11.2
    }
    fields.update(changes)
    header = GroupingHeader(**fields)  # type: ignore[arg-type]
    return build_message(header, bytes.fromhex("DA2000000300000109040123ABCD010100"))


REQUEST = parse_request_id(f"{USER}:{ESME}:1000")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"originator_counter": 1001}, Mismatch.COUNTER),
        ({"originator": "00-DB-12-34-56-78-90-A1"}, Mismatch.ORIGINATOR),
        ({"recipient": "90-B3-D5-1F-30-02-00-00"}, Mismatch.RECIPIENT),
        ({"message_code": 0x0027}, Mismatch.MESSAGE_CODE),  # ECS17b answers 4.1.1
        ({"cra": Cra.ALERT}, Mismatch.NOT_A_RESPONSE),
    ],
)
def test_each_mismatch_is_named(changes: dict[str, object], reason: Mismatch) -> None:
    facts = facts_from_request_id(REQUEST, "11.2")
    assert all(c.ok for c in correlate_response(parse_message(_response()), facts))
    with pytest.raises(ResponseMismatchError) as refused:
        correlate_response(parse_message(_response(**changes)), facts)
    assert refused.value.reasons == [reason]


def test_a_response_via_the_dcc_names_the_user_as_supplementary_party() -> None:
    # GBCS 4.3.1.4: a command the DCC sent for the User is answered to the DCC, with
    # the User and the User's counter in the other-information.
    dcc = "90-B3-D5-1F-30-00-00-02"
    supplementary = bytes.fromhex("90B3D51F30010000") + (1000).to_bytes(8, "big")
    gbcs = _response(recipient=dcc, originator_counter=1301, supplementary=supplementary)
    facts = facts_from_request_id(REQUEST, "11.2")
    assert all(check.ok for check in correlate_response(parse_message(gbcs), facts))


def test_cli_correlates_with_the_request_before_parsing(
    shared_dir: Path, rtds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="duisgw pc")
    cli.add_arguments(parser)
    requests = shared_dir / "duis/samples/requests"
    response = rtds / "4.1.1_ECS17b/ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX"
    good = requests / "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"  # counter 1000
    argv = ["parse", str(response), "--version", "5.4", "--request", str(good)]
    assert cli.run(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "<ra:ServiceReferenceVariant>4.1.1</ra:ServiceReferenceVariant>" in out
    # The error response answers counter 1001: not this request.
    other = rtds / "4.1.1_ECS17b/ECS17b_4.1.1_ERROR_RESPONSE_GBCS.HEX"
    argv = ["parse", str(other), "--version", "5.4", "--request", str(good)]
    assert cli.run(parser.parse_args(argv)) == 1
    out, err = capsys.readouterr()
    assert out == "" and "counter: counter 1001, request 1000" in err
    # The GBCS command works as the request side too.
    command = rtds / "4.1.1_ECS17b/ECS17b_4.1.1_ERROR_COMMAND_GBCS.HEX"
    argv = ["parse", str(other), "--version", "5.4", "--request", str(command)]
    assert cli.run(parser.parse_args(argv)) == 0


def test_the_request_names_the_srv_a_shared_use_case_answers(
    rtds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ECS47 answers SRVs 7.5, 7.6 and 7.8: alone the response cannot say which element.
    parser = argparse.ArgumentParser(prog="duisgw pc")
    cli.add_arguments(parser)
    response = sorted((rtds / "7.6_ECS47Deactivate").glob("*SUCCESS_RESPONSE*"))[0]
    assert cli.run(parser.parse_args(["parse", str(response), "--version", "5.4"])) == 0
    out, err = capsys.readouterr()
    assert "GBCSData" in out and "give the request or SRV" in err
    argv = ["parse", str(response), "--version", "5.4", "--srv", "7.6"]
    assert cli.run(parser.parse_args(argv)) == 0
    assert '<ra:DeactivateAuxiliaryLoadRsp MessageSuccess="true"/>' in capsys.readouterr().out


def test_the_gateway_check_correlates_and_verifies_the_device_signature(
    rtds: Path, shared_dir: Path
) -> None:
    folder = rtds / "7.3_ECS44"  # ArmSupply: the ESME signs its response
    response = _message(folder / "ECS44_7.3_SUCCESS_RESPONSE_GBCS.HEX")
    command = _message(folder / "ECS44_7.3_SUCCESS_COMMAND_GBCS.HEX")
    certificate = (shared_dir / "gbcs/rtds/keystore/00db1234567890a0-ds.pem").read_bytes()
    key = x509.load_pem_x509_certificate(certificate).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    checked = check_device_response(response, command, key)
    assert checked.authentication == "signature verified"
    forged = bytearray(response)
    forged[-1] ^= 0x01
    with pytest.raises(DeviceResponseRefusedError) as refused:
        check_device_response(bytes(forged), command, key)
    assert refused.value.reason is RefusalReason.SIGNATURE_INVALID
    other = _message(rtds / "7.1_ECS42/ECS42_7.1_SUCCESS_COMMAND_GBCS.HEX")
    with pytest.raises(DeviceResponseRefusedError) as refused:
        check_device_response(response, other, key)
    assert refused.value.reason is RefusalReason.UNCORRELATED
    with pytest.raises(DeviceResponseRefusedError) as refused:
        check_device_response(b"\xdf\x09", command, key)
    assert refused.value.reason is RefusalReason.MALFORMED
