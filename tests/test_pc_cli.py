"""`duisgw pc parse|correlate`, run in-process on the DCC's reference data."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.signing import sign_document
from mmc import responses
from mmc.catalogue import load_catalogue
from mmc.identifiers import parse_request_id
from parse_correlate import cli
from parse_correlate.commands import CommandFacts, DeviceType, build_command
from parse_correlate.correlate import correlate, verify_pre_command_signature
from parse_correlate.gbcs import parse_message
from parse_correlate.mmc_output import RA_NAMESPACE, SUPPORTED_VERSIONS
from parse_correlate.precommand_report import DS_NS, SR_NS, Verdict

SR = {"sr": SR_NS}
RA = {"ra": RA_NAMESPACE}
RESPONSE_FOLDERS = ("4.1.1_ECS17b", "11.2_ECS52")
# The RTDS ArmSupply request; its RequestID is the one the RTDS 7.3 Pre-Commands answer.
ARM_SUPPLY = "duis/samples/requests/ECS44_7.3_SUCCESS_REQUEST_DUIS.XML"
ARM_SUPPLY_ID = parse_request_id("90-B3-D5-1F-30-01-00-00:00-DB-12-34-56-78-90-A0:1000")
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duisgw pc")
    cli.add_arguments(parser)
    return parser


def _run(parser: argparse.ArgumentParser, *argv: str | Path) -> int:
    return cli.run(parser.parse_args([str(arg) for arg in argv]))


@pytest.fixture(scope="module")
def rtds(shared_dir: Path) -> Path:
    return shared_dir / "gbcs/rtds/RTDS-4.5.0"


@pytest.fixture(scope="module")
def duis_schema(shared_dir: Path) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(shared_dir / "duis/xsd/DUIS_Schema_V5.4.xsd")))


def _key_file(tmp_path: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key


def _eui_file(eui: str) -> str:
    return eui.replace("-", "").lower()


# ---- parse ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_parse_every_rtds_response_valid_in_every_version(
    parser: argparse.ArgumentParser,
    rtds: Path,
    shared_dir: Path,
    mmc_schemas: dict[str, etree.XMLSchema],
    capsys: pytest.CaptureFixture[str],
    version: str,
) -> None:
    paths = [p for f in RESPONSE_FOLDERS for p in sorted((rtds / f).glob("*_RESPONSE_GBCS.HEX"))]
    assert len(paths) == 5
    keystore = shared_dir / "gbcs/rtds/keystore"
    for path in paths:
        header = parse_message(bytes.fromhex(path.read_text())).header
        keys = (  # the User's key agreement key and the device's certificate
            "--user-key", keystore / f"{_eui_file(header.recipient)}-ka.key",
            "--device-cert", keystore / f"{_eui_file(header.originator)}-ka.pem",
        )  # fmt: skip
        for extra in ((), keys):
            assert _run(parser, "parse", path, "--version", version, *extra) == 0, path.name
            out, err = capsys.readouterr()
            document = etree.fromstring(out.encode())
            schema = mmc_schemas[version]
            assert schema.validate(document), f"{path.name}: {schema.error_log}"
            assert document.get("schemaVersion") == version
            # Without keys the MAC cannot be checked, and the output says so.
            authenticated = "MAC verified" if extra else "not authenticated"
            assert f"duisgw pc: {authenticated}" in out
            assert ("not authenticated" in err) == (not extra)


def test_decrypted_registers_need_both_keys(
    parser: argparse.ArgumentParser,
    rtds: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = rtds / "4.1.1_ECS17b/ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX"
    keystore = shared_dir / "gbcs/rtds/keystore"
    user_key = keystore / "90b3d51f30010000-ka.key"
    device_cert = keystore / "00db1234567890a0-ka.pem"
    argv = ("parse", path, "--version", "5.4", "--user-key", user_key)
    assert _run(parser, *argv, "--device-cert", device_cert) == 0
    document = etree.fromstring(capsys.readouterr().out.encode())
    register = "ra:Body/ra:ResponseMessage/ra:SMETSData/ra:ReadInstantaneousImportRegistersRsp"
    assert document.find(register + "/ra:Electricity/ra:ActiveImportRegister", RA) is not None

    assert _run(parser, *argv) == 2
    assert "--user-key and --device-cert" in capsys.readouterr().err
    # Someone else's key: the MAC does not verify, which is the message's fault.
    wrong = keystore / "90b3d51f30020000-ka.key"
    assert _run(parser, "parse", path, "--version", "5.4", "--user-key", wrong,
                "--device-cert", device_cert) == 1  # fmt: skip
    out, err = capsys.readouterr()
    assert "refused: MAC does not verify" in err and out == ""


def test_parse_reads_hex_base64_binary_and_duis_xml(
    parser: argparse.ArgumentParser,
    rtds: Path,
    shared_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hex_path = rtds / "11.2_ECS52/ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX"
    gbcs = bytes.fromhex(hex_path.read_text())
    forms = {
        "spaced.hex": " ".join(f"{b:02x}" for b in gbcs).encode() + b"\r\n",
        "message.b64": base64.encodebytes(gbcs),  # line-wrapped, as base64 tools write it
        "message.bin": gbcs,
        "response.xml": responses.service_response(
            load_catalogue("5.4"), ARM_SUPPLY_ID, "I0", "11.2", "11.2", NOW,
            content=responses.gbcs_payload(gbcs),
        ),
    }  # fmt: skip
    assert _run(parser, "parse", hex_path, "--version", "5.4") == 0
    expected = capsys.readouterr().out
    for name, data in forms.items():
        (tmp_path / name).write_bytes(data)
        assert _run(parser, "parse", tmp_path / name, "--version", "5.4") == 0, name
        assert capsys.readouterr().out == expected, name

    # A Service Response the DCC signed, as a User receives it.
    sample = shared_dir / "duis/samples/responses/ECS52_11.2_SUCCESS_RESPONSE_DUIS.XML"
    assert _run(parser, "parse", sample, "--version", "5.1") == 0
    document = etree.fromstring(capsys.readouterr().out.encode())
    rsp = "ra:Body/ra:ResponseMessage/ra:SMETSData/ra:ReadFirmwareVersionRsp"
    assert document.findtext(rsp + "/ra:FirmwareVersion", namespaces=RA) == "00020000"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"DF0902000000", "truncated transaction-id"),
        (b"DF09020", "odd number of digits"),
        (b"   \n", "is empty"),
        (b"<sr:Response xmlns:sr='x'><sr:Header><sr:ResponseCode>E12</sr:ResponseCode>"
         b"</sr:Header></sr:Response>", "found 0 (ResponseCode E12)"),
        (b"<sr:Response><unclosed>", "not well-formed XML"),
        (b"<r><GBCSPayload>not base64!</GBCSPayload></r>", "GBCSPayload is not base64"),
    ],
)  # fmt: skip
def test_parse_malformed_file_exits_1_with_one_line(
    parser: argparse.ArgumentParser,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    reason: str,
) -> None:
    path = tmp_path / "bad.hex"
    path.write_bytes(content)
    assert _run(parser, "parse", path, "--version", "5.4") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert reason in err
    assert err.startswith("duisgw pc parse: ") and err.count("\n") == 1


def test_parse_refuses_a_command_and_hostile_xml(
    parser: argparse.ArgumentParser,
    rtds: Path,
    shared_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = rtds / "11.2_ECS52/ECS52_11.2_SUCCESS_COMMAND_GBCS.HEX"
    assert _run(parser, "parse", command, "--version", "5.4") == 1
    assert "a command has no MMC output" in capsys.readouterr().err
    # An external entity naming /etc/passwd: never resolved, so the payload is empty.
    xxe = shared_dir / "duis/samples/hostile/duis-xxe.xml"
    assert _run(parser, "parse", xxe, "--version", "5.1") == 1
    out, err = capsys.readouterr()
    assert "empty message" in err and "root:" not in out + err


def test_parse_unserved_version_or_missing_file_exits_2(
    parser: argparse.ArgumentParser,
    rtds: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = rtds / "11.2_ECS52/ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX"
    assert _run(parser, "parse", path, "--version", "5.2") == 2
    assert "served: 5.0, 5.1, 5.3, 5.4" in capsys.readouterr().err
    assert _run(parser, "parse", tmp_path / "absent.hex", "--version", "5.4") == 2
    assert "absent.hex" in capsys.readouterr().err


# ---- correlate -----------------------------------------------------------------------------


def _pre_command_response(tmp_path: Path, gbcs: bytes) -> Path:
    """What the gateway answers a CV 4 request with (gateway.edge.dispatch), unsigned here:
    the correlation reads the payload and RequestID, not the DCC's signature."""
    path = tmp_path / "pre-command-response.xml"
    content = responses.pre_command("4.3", gbcs)
    catalogue = load_catalogue("5.4")
    document = responses.service_response(
        catalogue, ARM_SUPPLY_ID, "I0", "7.3", "7.3", NOW, content=content
    )
    path.write_bytes(document)
    return path


def _arm_supply_pre_command(counter: int = ARM_SUPPLY_ID.counter) -> bytes:
    built = build_command("7.3", ARM_SUPPLY_ID, CommandFacts(device_type=DeviceType.ESME),
                          originator_counter=counter, now=NOW, critical=True)  # fmt: skip
    assert built.pre_command
    return built.gbcs


def _report(text: str) -> dict[str, str]:
    """check name -> verdict, from the report's check lines."""
    verdicts = {}
    for line in text.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in set(Verdict):
            verdicts[rest.strip()[:20].strip()] = verdict
    return verdicts


def test_gateway_pre_command_correlates(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pre = _pre_command_response(tmp_path, _arm_supply_pre_command())
    assert _run(parser, "correlate", shared_dir / ARM_SUPPLY, pre) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.splitlines()[-1] == "correlates"
    assert _report(out) == {
        "command variant": "OK",
        "response RequestID": "OK",
        "recipient": "OK",
        "originator": "OK",
        "originator counter": "OK",
        "message code": "OK",  # 0x0051 (ECS44): ArmSupply's use case, payload simulated
        "unsigned command": "OK",
    }


def test_rtds_pre_command_correlates_with_its_use_case_known(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    rtds: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pre = rtds / "7.3_ECS44/ECS44_7.3_SUCCESS_PRECOMMAND_GBCS.HEX"  # the DCC's own, hex
    assert _run(parser, "correlate", shared_dir / ARM_SUPPLY, pre) == 0
    out = capsys.readouterr().out
    verdicts = _report(out)
    assert verdicts["message code"] == "OK"  # the use-case table maps 7.3 on an ESME to ECS44
    assert verdicts["response RequestID"] == "SKIPPED"  # raw GBCS, no DUIS envelope
    assert "0x0051 (ECS44)" in out


def test_mismatching_counter_exits_1_and_is_never_signed(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pre = _pre_command_response(tmp_path, _arm_supply_pre_command(counter=1001))
    key_path, _ = _key_file(tmp_path, "user-ds.key")
    out_path = tmp_path / "signed.xml"
    assert _run(parser, "correlate", shared_dir / ARM_SUPPLY, pre) == 1
    out = capsys.readouterr().out
    assert _report(out)["originator counter"] == "MISMATCH"
    assert "1001, but request counter is 1000" in out
    assert out.splitlines()[-1] == "DOES NOT CORRELATE: 1 check(s) failed"

    argv = ("correlate", shared_dir / ARM_SUPPLY, pre, "--sign-with", key_path, "--out", out_path)
    assert _run(parser, *argv) == 1
    assert "not signed" in capsys.readouterr().err
    assert not out_path.exists()


def test_signed_command_is_not_a_pre_command(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    rtds: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    command = rtds / "7.3_ECS44/ECS44_7.3_SUCCESS_COMMAND_GBCS.HEX"  # MACed and signed
    assert _run(parser, "correlate", shared_dir / ARM_SUPPLY, command) == 1
    out = capsys.readouterr().out
    assert _report(out)["unsigned command"] == "MISMATCH"
    assert "already MACed" in out and "already signed" in out


def test_sign_with_writes_a_valid_signed_pre_command_request(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    tmp_path: Path,
    duis_schema: etree.XMLSchema,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pre_gbcs = _arm_supply_pre_command()
    pre = _pre_command_response(tmp_path, pre_gbcs)
    key_path, user_key = _key_file(tmp_path, "user-ds.key")
    out_path = tmp_path / "signed.xml"
    argv = ("correlate", shared_dir / ARM_SUPPLY, pre, "--sign-with", key_path, "--out", out_path)
    assert _run(parser, *argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "correlates"

    document = etree.fromstring(out_path.read_bytes())
    assert document.findtext("sr:Header/sr:RequestID", namespaces=SR) == str(ARM_SUPPLY_ID)
    assert document.findtext("sr:Header/sr:CommandVariant", namespaces=SR) == "5"
    assert document.find(f"{{{DS_NS}}}Signature") is None  # `duisgw send` signs it
    [payload] = document.findall("sr:Body/sr:SignedPreCommand/sr:GBCSPayload", SR)
    signed_gbcs = base64.b64decode(payload.text or "")

    # (a) Signed as `duisgw send` would, it is a valid DUIS 5.4 request.
    xml_key = ec.generate_private_key(ec.SECP256R1())
    signed_xml = sign_document(out_path.read_bytes(), xml_key, "CN=U1,OU=87", 4242)
    assert duis_schema.validate(etree.fromstring(signed_xml)), duis_schema.error_log
    # (b) Its GBCS is the Pre-Command plus the User's signature.
    result = correlate(pre_gbcs, signed_gbcs)
    assert result.originator_counter == ARM_SUPPLY_ID.counter
    verify_pre_command_signature(signed_gbcs, user_key.public_key())


def test_signed_request_to_stdout_moves_the_report_to_stderr(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    rtds: Path,
    tmp_path: Path,
    duis_schema: etree.XMLSchema,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The RTDS future-dated prepayment request and the DCC's Pre-Command for it.
    request = shared_dir / "duis/samples/requests/GCS05_2.1_FUTURE_DATED_SUCCESS_REQUEST_DUIS.XML"
    pre = rtds / "2.1_GCS05/GCS05_2.1_FUTURE_DATED_SUCCESS_PRECOMMAND_GBCS.HEX"
    key_path, _ = _key_file(tmp_path, "user-ds.key")
    argv = ("correlate", request, pre, "--sign-with", key_path, "--command-variant", "7")
    assert _run(parser, *argv) == 0
    out, err = capsys.readouterr()
    assert err.splitlines()[-1] == "correlates"
    document = etree.fromstring(out.encode())
    assert document.findtext("sr:Header/sr:CommandVariant", namespaces=SR) == "7"
    # 2.1 is future dated by the device: the date is inside the signed GBCS, so the
    # SignedPreCommand does not repeat it for the DCC to schedule.
    [signed] = document.findall("sr:Body/sr:SignedPreCommand", SR)
    assert [etree.QName(child).localname for child in signed] == ["GBCSPayload"]
    signed_xml = sign_document(out.encode(), ec.generate_private_key(ec.SECP256R1()), "CN=U1", 1)
    assert duis_schema.validate(etree.fromstring(signed_xml)), duis_schema.error_log


def test_correlate_invocation_errors_exit_2(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    rtds: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pre = rtds / "7.3_ECS44/ECS44_7.3_SUCCESS_PRECOMMAND_GBCS.HEX"
    request = shared_dir / ARM_SUPPLY
    assert _run(parser, "correlate", request, pre, "--out", tmp_path / "x.xml") == 2
    assert "--out needs --sign-with" in capsys.readouterr().err
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    assert _run(parser, "correlate", request, pre, "--sign-with", not_a_key) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err
    assert _run(parser, "correlate", pre, pre) == 1  # REQUEST must be a DUIS request
    assert "not well-formed XML" in capsys.readouterr().err


def test_known_use_case_is_checked_and_a_non_critical_request_flagged(
    parser: argparse.ArgumentParser,
    shared_dir: Path,
    rtds: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A non-critical read (CV 2) and the DCC's command for it: not a Pre-Command exchange.
    request = shared_dir / "duis/samples/requests/ECS17b_4.1.1_REQUEST_DUIS.XML"
    command = rtds / "4.1.1_ECS17b/ECS17b_4.1.1_SINGLE_SUCCESS_COMMAND_GBCS.HEX"
    assert _run(parser, "correlate", request, command) == 1
    out = capsys.readouterr().out
    verdicts = _report(out)
    assert verdicts["message code"] == "OK"
    assert "0x0027 (ECS17b), a use case of SRV 4.1.1" in out
    assert verdicts["command variant"] == "MISMATCH"
    assert verdicts["unsigned command"] == "MISMATCH"


def test_flipped_mac_with_keys_is_refused_not_decoded(
    parser: argparse.ArgumentParser,
    rtds: Path,
    shared_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 18: with keys, one flipped MAC byte used to print the decrypted registers
    with MessageSuccess="true" and exit 0."""
    gbcs = bytearray(bytes.fromhex(
        (rtds / "4.1.1_ECS17b/ECS17b_4.1.1_SINGLE_SUCCESS_RESPONSE_GBCS.HEX").read_text()
    ))  # fmt: skip
    gbcs[-1] ^= 0x01  # the last byte of the 12-byte MAC
    path = tmp_path / "flipped.hex"
    path.write_text(gbcs.hex())
    keystore = shared_dir / "gbcs/rtds/keystore"
    code = _run(parser, "parse", path, "--version", "5.4",
                "--user-key", keystore / "90b3d51f30010000-ka.key",
                "--device-cert", keystore / "00db1234567890a0-ka.pem")  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""  # no decoded registers
    assert "MAC does not verify" in err


def test_flipped_signature_with_the_device_certificate_is_refused(
    parser: argparse.ArgumentParser,
    rtds: Path,
    shared_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gbcs = bytearray(bytes.fromhex(
        (rtds / "7.3_ECS44/ECS44_7.3_SUCCESS_RESPONSE_GBCS.HEX").read_text()
    ))  # fmt: skip
    certificate = shared_dir / "gbcs/rtds/keystore/00db1234567890a0-ds.pem"
    path = tmp_path / "signed.hex"
    path.write_text(gbcs.hex())
    assert _run(parser, "parse", path, "--version", "5.4",
                "--device-signing-cert", certificate) == 0  # fmt: skip
    assert "signature verified" in capsys.readouterr().out
    gbcs[-1] ^= 0x01  # the signature is the message's last field
    path.write_text(gbcs.hex())
    assert _run(parser, "parse", path, "--version", "5.4",
                "--device-signing-cert", certificate) == 1  # fmt: skip
    out, err = capsys.readouterr()
    assert out == "" and "signature does not verify" in err
