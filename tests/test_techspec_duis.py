"""The DUIS side: 12.1, 12.2, 8.1.1, 8.14.2 and 8.2 answers, valid under every version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from gateway.core.ingest import SchemaSet
from gateway.core.registry import Inventory, decode_inventory
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signing import sign_canonical_document
from gateway.core.techspec.alerts import AlertCodeError, WanAlertCodes, wan_available_alert
from gateway.core.techspec.answers import (
    RefusalCodes,
    commissioning_answer,
    inventory_versions,
    no_wan_install_answer,
    pre_notification_answer,
    premises_key,
)
from gateway.core.techspec.bodies import (
    BodyFactError,
    PreNotification,
    read_no_wan_install,
    read_pre_notification,
    read_wan_query,
)
from gateway.core.techspec.coverage import AddressKey, UprnKey, decode_coverage
from gateway.core.techspec.install_leave import InstallLeavePolicy, WanAvailableAlert
from gateway.core.techspec.wan_matrix import wan_matrix_answer
from gateway.stores.operator_files import load_schemas
from mmc import responses
from mmc.catalogue import load_catalogue
from mmc.identifiers import parse_request_id
from tests.techspec_data import consultation, day, extended

VERSIONS = ("5.0", "5.1", "5.3", "5.4")
RID = parse_request_id("90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:7")
NOW = dt.datetime(2018, 3, 1, 12, 0, tzinfo=dt.UTC)
CODES = RefusalCodes()
SR = "http://www.dccinterface.co.uk/ServiceUserGateway"
KEY = ec.generate_private_key(ec.SECP256R1())

COVERAGE = decode_coverage(
    b"""
[[premises]]
uprn = 123456789012
[[premises.regions]]
csp_region = "North"
available = true
wan_technology = "Long Range Radio"
likelihood = "High"
auxiliary_equipment = "Aerial <external> & mast"

[[premises]]
postcode = "M22 0RR"
[[premises.regions]]
csp_region = "4G Central"
available = false
anticipated_date = 2026-06-30
wan_technology = "4G"
likelihood = "Medium"
additional_information = "New mast planned"
[[premises.regions]]
csp_region = "Central"
available = true
wan_technology = "2G/3G"
likelihood = "Low"
""",
    fmt="toml",
)


@pytest.fixture(scope="module")
def schemas(shared_dir: Path) -> SchemaSet:
    return load_schemas(
        shared_dir / "duis" / "xsd", {v: load_catalogue(v).xsd_file for v in VERSIONS}
    )


def valid_and_signed(schemas: SchemaSet, version: str, document: bytes) -> etree._Element:
    """The document validates under its version's XSD, is canonical as built, and signs."""
    root = etree.fromstring(document)
    assert schemas.error(version, root) is None, document
    assert etree.tostring(root, method="c14n") == document
    signed = etree.fromstring(sign_canonical_document(document, KEY, "CN=Z1,OU=07", 5))
    verify_signature(signed, parse_signature(signed), KEY.public_key())
    return root


def body(xml: str) -> etree._Element:
    return etree.fromstring(f'<sr:Body xmlns:sr="{SR}">{xml}</sr:Body>')


# ---------------------------------------------------------------- 12.1 Request WAN Matrix


@pytest.mark.parametrize("version", VERSIONS)
def test_wan_matrix_answers_in_each_versions_shape(version: str, schemas: SchemaSet) -> None:
    catalogue = load_catalogue(version)
    query = read_wan_query(
        body(
            "<sr:RequestWANMatrix><sr:PartialAddress><sr:PostCode>M22 0RR</sr:PostCode>"
            "<sr:AddressIdentifier>Threapwood Road</sr:AddressIdentifier></sr:PartialAddress>"
            "</sr:RequestWANMatrix>"
        )
    )
    assert query == AddressKey("M22 0RR", "Threapwood Road")
    answer = wan_matrix_answer(
        catalogue, query, COVERAGE.lookup(query), unknown_premises_code=CODES.unknown_premises
    )
    assert answer.code == "I0"
    document = responses.service_response(
        catalogue, RID, answer.code, "12.1", "12.1", NOW, content=answer.content
    )
    root = valid_and_signed(schemas, version, document)
    assert root.findtext(".//{*}Request/{*}PartialAddress/{*}PostCode") == "M22 0RR"
    regions = [e.text for e in root.iter(f"{{{SR}}}CSPRegion")]
    if version in ("5.0", "5.1"):
        assert regions == ["Central"]  # the one available now
        assert root.findtext(".//{*}CoverageAvailability") == "true"
        assert root.find(".//{*}DSPWANMatrixResponse") is None
    else:
        assert regions == ["4G Central", "Central"]
        assert [e.text for e in root.iter(f"{{{SR}}}CSPRegionResponseCode")] == ["I0", "I0"]
        assert root.findtext(".//{*}AnticipatedCoverageDate") == "2026-06-30"


@pytest.mark.parametrize("version", VERSIONS)
def test_wan_matrix_by_uprn_and_for_unknown_premises(version: str, schemas: SchemaSet) -> None:
    catalogue = load_catalogue(version)
    query = read_wan_query(
        body("<sr:RequestWANMatrix><sr:UPRN>123456789012</sr:UPRN></sr:RequestWANMatrix>")
    )
    assert query == UprnKey(123456789012)
    answer = wan_matrix_answer(
        catalogue, query, COVERAGE.lookup(query), unknown_premises_code="E19"
    )
    root = valid_and_signed(
        schemas,
        version,
        responses.service_response(
            catalogue, RID, answer.code, "12.1", "12.1", NOW, content=answer.content
        ),
    )
    assert root.findtext(".//{*}AuxiliaryEquipmentRequired") == "Aerial <external> & mast"
    unknown = UprnKey(999)
    missing = wan_matrix_answer(
        catalogue, unknown, COVERAGE.lookup(unknown), unknown_premises_code="E19"
    )
    assert (missing.code, missing.content) == ("E19", "")
    valid_and_signed(
        schemas,
        version,
        responses.service_response(catalogue, RID, missing.code, "12.1", "12.1", NOW),
    )


def test_a_4g_region_is_named_geographically_where_the_version_lacks_4g() -> None:
    only_4g = decode_coverage(
        b"[[premises]]\nuprn = 5\n[[premises.regions]]\ncsp_region = '4G South'\n"
        b"available = true\nwan_technology = '4G'\nlikelihood = 'High'\n",
        fmt="toml",
    )
    for version, expected in (("5.1", "South"), ("5.4", "4G South")):
        answer = wan_matrix_answer(
            load_catalogue(version),
            UprnKey(5),
            only_4g.lookup(UprnKey(5)),
            unknown_premises_code="E19",
        )
        assert f"<sr:CSPRegion>{expected}</sr:CSPRegion>" in answer.content


@pytest.mark.parametrize(
    "xml",
    [
        "<sr:RequestWANMatrix><sr:UPRN>1234567890123</sr:UPRN></sr:RequestWANMatrix>",
        "<sr:RequestWANMatrix><sr:UPRN>0</sr:UPRN></sr:RequestWANMatrix>",
        "<sr:RequestWANMatrix><sr:PartialAddress/></sr:RequestWANMatrix>",
        "<sr:Other/>",
    ],
)
def test_a_malformed_wan_query_is_refused_clearly(xml: str) -> None:
    with pytest.raises(BodyFactError):
        read_wan_query(body(xml))


# ---------------------------------------------------------------- 12.2 Device Pre-notification


def notice(
    version: str | None, *, device_type: str = "ESME", firmware: str | None = None
) -> PreNotification:
    return PreNotification(
        device_id="00-DB-12-34-56-78-90-A0",
        manufacturer="AB01",
        model="ESME-1",
        device_type=device_type,
        smets_chts_version=version,
        firmware_version=firmware,
    )


def test_the_rtds_pre_notification_names_a_version_the_tables_lack(shared_dir: Path) -> None:
    raw = (
        shared_dir / "duis/samples/requests/12.2_DEVICE_PRE_NOTIFICATION_REQUEST_DUIS.XML"
    ).read_bytes()
    found = etree.fromstring(raw).find("{*}Body")
    assert found is not None
    facts = read_pre_notification(found)
    assert (facts.device_type, facts.smets_chts_version) == ("ESME", "SMETS V1.58")
    answer = pre_notification_answer(consultation(), facts, day("01/01/18"), CODES)
    assert answer.code == "E11"
    assert [r.reason for r in answer.refusals] == ["unknown_version"]


def test_pre_notification_validity_on_the_consultations_dates() -> None:
    tables = consultation()
    assert pre_notification_answer(tables, notice("SMETS V2.0"), day("30/09/16"), CODES).allowed
    early = pre_notification_answer(tables, notice("SMETS V2.0"), day("29/09/16"), CODES)
    assert (early.code, [r.reason for r in early.refusals]) == ("E11", ["no_validity"])
    # After 12/12/17 a SMETS v1.1 meter may still come, as a replacement part (MVP, ¶31).
    assert pre_notification_answer(tables, notice("SMETS V1.1"), day("13/12/17"), CODES).allowed
    wrong = pre_notification_answer(tables, notice("CHTS V1.0"), day("01/01/18"), CODES)
    assert [r.reason for r in wrong.refusals] == ["wrong_specification"]
    assert pre_notification_answer(
        tables, notice("garbage", device_type="CAD"), day("01/01/18"), CODES
    ).allowed
    custom = RefusalCodes(installation_not_valid="E120203")
    assert (
        pre_notification_answer(tables, notice("SMETS V2.0"), day("29/09/16"), custom).code
        == "E120203"
    )


def test_pre_notification_against_the_product_tables() -> None:
    tables = extended()
    by_product = pre_notification_answer(
        tables, notice(None, firmware="00020100"), day("01/08/18"), CODES
    )
    assert by_product.allowed
    mismatch = pre_notification_answer(
        tables, notice("SMETS V2.0", firmware="00020100"), day("01/08/18"), CODES
    )
    assert [r.reason for r in mismatch.refusals] == ["product_mismatch"]
    unknown = pre_notification_answer(
        tables, notice(None, firmware="FFFFFFFF"), day("01/08/18"), CODES
    )
    assert [r.reason for r in unknown.refusals] == ["unknown_version"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_refusal_is_a_valid_signed_response(version: str, schemas: SchemaSet) -> None:
    answer = pre_notification_answer(consultation(), notice("SMETS V2.0"), day("29/09/16"), CODES)
    catalogue = load_catalogue(version)
    root = valid_and_signed(
        schemas,
        version,
        responses.service_response(catalogue, RID, answer.code, "12.2", "12.2", NOW),
    )
    assert root.findtext(".//{*}ResponseCode") == "E11"


# ---------------------------------------------------------------- 8.1.1 Commission Device


def inventory(*devices: tuple[str, str, str, str]) -> Inventory:
    """(suffix, type, status, version) devices on hub ...-A2 (suffix A2 is the hub)."""
    text = ""
    for suffix, device_type, status, version in devices:
        text += (
            f'[[devices]]\ndevice_id = "00-DB-12-34-56-78-90-{suffix}"\n'
            f'device_type = "{device_type}"\nstatus = "{status}"\n'
            f'technical_specification = "{version}"\n'
        )
        if version.replace("v", "").split()[-1] in ("2.0", "2.1") or version.startswith("CHTS 1"):
            text += 'gbcs_version = "1.0"\n'
        if suffix != "A2":
            text += 'chf_id = "00-DB-12-34-56-78-90-A2"\n'
    return decode_inventory(text.encode(), fmt="toml")


def commission(tables: object, estate: Inventory, suffix: str, on: dt.date) -> list[str]:
    answer = commissioning_answer(tables, estate, f"00-DB-12-34-56-78-90-{suffix}", on, CODES)  # type: ignore[arg-type]
    assert answer.code == ("I0" if answer.allowed else "E11")
    return [r.reason for r in answer.refusals]


def test_commissioning_a_new_system_needs_a_current_ivp() -> None:
    """¶114, ¶123 for a new Smart Metering System."""
    estate = inventory(
        ("A2", "CHF", "commissioned", "CHTS 1.0"),
        ("A0", "ESME", "installed_not_commissioned", "SMETS 2.0"),
        ("B0", "ESME", "whitelisted", "SMETS 1.1"),  # not in the premises yet
    )
    tables = consultation()
    assert commission(tables, estate, "A0", day("30/09/16")) == []
    assert commission(tables, estate, "A0", day("29/09/16")) == [
        "no_installation_validity",
        "gbcs_not_applicable",
    ]
    # A SMETS1 meter cannot join a CHTS hub at all (¶126), and after 12/12/17 not even
    # its own installation counts (¶114).
    assert commission(tables, estate, "B0", day("13/12/17")) == [
        "no_installation_validity",
        "incompatible",
        "incompatible",
    ]


def test_commissioning_a_replacement_is_maintenance() -> None:
    """¶31: after SMETS 2.0's IVP ends a SMETS 2.0 meter may still replace one (MVP), but
    not start a new system; never a step back from the meter it replaces (¶127)."""
    tables = extended()  # SMETS 2.0: IVP to 30/06/18, MVP to 30/06/19
    on = day("01/01/19")
    replacing = inventory(
        ("A2", "CHF", "commissioned", "CHTS 1.0"),
        ("A1", "ESME", "decommissioned", "SMETS 2.0"),
        ("A0", "ESME", "installed_not_commissioned", "SMETS 2.0"),
    )
    assert commission(tables, replacing, "A0", on) == []
    fresh = inventory(
        ("A2", "CHF", "commissioned", "CHTS 1.0"),
        ("A0", "ESME", "installed_not_commissioned", "SMETS 2.0"),
    )
    assert commission(tables, fresh, "A0", on) == ["no_installation_validity"]
    downgrade = inventory(
        ("A2", "CHF", "commissioned", "CHTS 1.0"),
        ("A1", "ESME", "decommissioned", "SMETS 2.1"),
        ("A0", "ESME", "installed_not_commissioned", "SMETS 2.0"),
    )
    assert commission(tables, downgrade, "A0", on) == ["backwards_step"]


def test_commissioning_an_auxiliary_device_needs_only_an_mvp() -> None:
    """¶125: a PPMID after SMETS 2.0's IVP ended."""
    estate = inventory(
        ("A2", "CHF", "commissioned", "CHTS 1.0"),
        ("A0", "ESME", "commissioned", "SMETS 2.0"),
        ("A4", "PPMID", "installed_not_commissioned", "SMETS 2.0"),
    )
    assert commission(extended(), estate, "A4", day("01/01/19")) == []
    assert commission(extended(), estate, "A4", day("01/07/19")) == ["no_maintenance_validity"]


def test_commissioning_a_device_of_unknown_version_is_refused() -> None:
    estate = decode_inventory(
        b'[[devices]]\ndevice_id = "00-DB-12-34-56-78-90-A2"\ndevice_type = "CHF"\n'
        b'status = "commissioned"\n',
        fmt="toml",
    )
    answer = commissioning_answer(
        consultation(), estate, "00-DB-12-34-56-78-90-A2", day("01/01/18"), CODES
    )
    assert (answer.code, [r.reason for r in answer.refusals]) == ("E11", ["unknown_version"])


# ---------------------------------------------------------------- 8.14.2 Install No SM WAN

NO_WAN_BODY = (
    "<sr:CHFInstallSuccessNoSMWAN><sr:DeviceID>00-DB-12-34-56-78-90-A2</sr:DeviceID>"
    "<sr:CHFInstallType>CHF Install - no SM WAN</sr:CHFInstallType>"
    "<sr:InstallDateTime>2018-02-27T09:00:00Z</sr:InstallDateTime>"
    "<sr:MPxN>1000999888</sr:MPxN><sr:AerialInstall>true</sr:AerialInstall>"
    "<sr:CHFLocation>Basement or Cellar</sr:CHFLocation>"
    "<sr:PremiseType>Bungalow</sr:PremiseType><sr:MetalObstructionCheck>false</sr:MetalObstructionCheck>"
    "<sr:ConnectivityObstructionCheck>false</sr:ConnectivityObstructionCheck>"
    "<sr:SharedObstructionCheck>false</sr:SharedObstructionCheck></sr:CHFInstallSuccessNoSMWAN>"
)


def test_install_no_sm_wan_opens_a_case_or_is_refused() -> None:
    install = read_no_wan_install(body(NO_WAN_BODY))
    assert install.installed_at == dt.datetime(2018, 2, 27, 9, tzinfo=dt.UTC)
    estate = decode_inventory(
        b'[[devices]]\ndevice_id = "00-DB-12-34-56-78-90-A2"\ndevice_type = "CHF"\n'
        b'status = "installed_not_commissioned"\n'
        b'postcode = "M22 0RR"\naddress_identifier = "Threapwood Road"\n',
        fmt="toml",
    )
    key = premises_key(estate, install.hub_id, install.mpxn)
    assert key == AddressKey("M22 0RR", "Threapwood Road")
    user = "90-B3-D5-1F-30-01-00-00"
    accepted = no_wan_install_answer(user, install, key, COVERAGE, NOW, InstallLeavePolicy(), CODES)
    assert accepted.code == "I0" and accepted.event is not None
    assert (accepted.event.kind, accepted.event.at, accepted.event.user_id) == (
        "reactive",
        NOW,
        user,
    )
    # Where the database forecasts SM WAN only in 2026, proactive Install and Leave is refused.
    refused = no_wan_install_answer(
        user,
        install,
        key,
        decode_coverage(
            b"[[premises]]\npostcode = 'M22 0RR'\n[[premises.regions]]\ncsp_region = 'North'\n"
            b"available = false\nanticipated_date = 2026-01-01\nwan_technology = 'x'\n"
            b"likelihood = 'Low'\n",
            fmt="toml",
        ),
        NOW,
        InstallLeavePolicy(),
        CODES,
    )
    assert (refused.code, refused.event) == ("E11", None)
    assert refused.refusal is not None and "¶25" in refused.refusal


# ---------------------------------------------------------------- 8.2 and the alert


@pytest.mark.parametrize("version", VERSIONS)
def test_read_inventory_shows_each_devices_versions(version: str, schemas: SchemaSet) -> None:
    estate = inventory(
        ("A2", "CHF", "commissioned", "CHTS 1.0"), ("A0", "ESME", "commissioned", "SMETS v2.0")
    )
    entries = []
    for device in estate:
        spec, gbcs = inventory_versions(consultation(), device)
        entries.append(
            responses.InventoryDevice(
                device_id=device.device_id,
                device_type=device.device_type,
                device_status="Commissioned",
                manufacturer="0000",
                model="0000",
                smets_chts_version=spec,
                gbcs_version=gbcs,
            )
        )
    assert [(e.smets_chts_version, e.gbcs_version) for e in entries] == [
        ("CHTS V1.0", "1.0"),
        ("SMETS V2.0", "1.0"),
    ]
    catalogue = load_catalogue(version)
    root = valid_and_signed(
        schemas,
        version,
        responses.service_response(
            catalogue, RID, "I0", "8.2", "8.2", NOW, content=responses.inventory(entries)
        ),
    )
    assert [e.text for e in root.iter(f"{{{SR}}}SMETSCHTSVersion")] == ["CHTS V1.0", "SMETS V2.0"]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_wan_available_alert_is_valid_when_configured(version: str, schemas: SchemaSet) -> None:
    catalogue = load_catalogue(version)
    alert = WanAvailableAlert(
        user_id="90-B3-D5-1F-30-01-00-00",
        hub_id="00-DB-12-34-56-78-90-A2",
        mpxn="1",
        available_at=NOW,
    )
    codes = WanAlertCodes(dcc_alert_code="N999", hub_alert_code="8f3e")
    root = valid_and_signed(schemas, version, wan_available_alert(catalogue, alert, codes, NOW))
    assert root.findtext(".//{*}CommsHubDeviceID") == alert.hub_id
    assert root.findtext(".//{*}AlertCode") == "8F3E"
    with pytest.raises(AlertCodeError):
        wan_available_alert(catalogue, alert, WanAlertCodes(), NOW)
    with pytest.raises(AlertCodeError, match="not defined"):
        wan_available_alert(
            catalogue, alert, WanAlertCodes(dcc_alert_code="Z9", hub_alert_code="00"), NOW
        )


def test_the_premises_of_a_hub_come_from_the_hub_or_its_meter() -> None:
    estate = decode_inventory(
        b'[[devices]]\ndevice_id = "00-DB-12-34-56-78-90-A2"\ndevice_type = "CHF"\n'
        b'status = "installed_not_commissioned"\n'
        b'[[devices]]\ndevice_id = "00-DB-12-34-56-78-90-A0"\ndevice_type = "ESME"\n'
        b'status = "installed_not_commissioned"\nchf_id = "00-DB-12-34-56-78-90-A2"\n'
        b'mpxn = "1000999888"\nuprn = 42\n',
        fmt="toml",
    )
    assert premises_key(estate, "00-DB-12-34-56-78-90-A2", "1000999888") == UprnKey(42)
    assert premises_key(estate, "00-DB-12-34-56-78-90-A2", "1") is None
    assert premises_key(estate, "00-DB-00-00-00-00-00-00", "1000999888") is None
