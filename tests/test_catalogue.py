"""The per-version Message Mapping Catalogues: data, loader, and agreement with the XSDs.

Tests marked by the `shared_dir` fixture read the DCC's files beside the project
and skip without them; the rest need only the shipped data files.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from lxml import etree

from mmc.catalogue import (
    SIGNED_PRE_COMMAND_ELEMENT,
    Catalogue,
    CatalogueFile,
    Endpoint,
    UnknownVersion,
    available_versions,
    data_file_name,
    decode_catalogue_file,
    load_catalogue,
    srv_for,
    srv_for_body,
    value_allowed,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VERSIONS_DIR = PROJECT_ROOT / "mmc" / "versions"
XS = "{http://www.w3.org/2001/XMLSchema}"
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
VERSIONS = ("5.0", "5.1", "5.3", "5.4")
XSD_FILES = {
    "5.0": "DUIS_Schema_V5.0.xsd",
    "5.1": "DUIS_Schema_V5.1.xsd",
    "5.3": "DUIS_Schema_V5.3a.xsd",
    "5.4": "DUIS_Schema_V5.4.xsd",
}
CV_EXCEPTIONS = {"8.1.1": frozenset({4, 5}), "8.5": frozenset({1})}
FOUR_G_REGIONS = {"4G North", "4G Central", "4G South"}
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def catalogues() -> dict[str, Catalogue]:
    return {version: load_catalogue(version) for version in VERSIONS}


# --- the loader --------------------------------------------------------------------


def test_served_versions_are_exactly_the_shipped_files() -> None:
    assert available_versions() == VERSIONS
    shipped = {p.name for p in VERSIONS_DIR.glob("*.json")}
    assert shipped == {data_file_name(v) for v in VERSIONS}


def test_load_is_cached() -> None:
    assert load_catalogue("5.4") is load_catalogue("5.4")


@pytest.mark.parametrize("version", ["5.2", "6.0", "5.40", "", "../versions/duis_5.4", "5.4 "])
def test_unserved_version_is_refused(version: str) -> None:
    with pytest.raises(UnknownVersion) as caught:
        load_catalogue(version)
    assert isinstance(caught.value, LookupError)
    assert caught.value.version == version


@pytest.mark.parametrize("version", VERSIONS)
def test_lookup_tables_agree(version: str) -> None:
    catalogue = load_catalogue(version)
    assert catalogue.version == version
    assert len(catalogue.srvs) == 129
    assert len(catalogue.by_body_element) == 129  # one distinct element per variant
    for variant, srv in catalogue.srvs.items():
        assert srv.variant == variant
        assert variant.startswith(srv.reference)
        assert srv_for(catalogue, variant) is srv
        assert srv_for_body(catalogue, srv.body_element) is srv
    assert srv_for(catalogue, "99.9") is None
    assert srv_for_body(catalogue, SIGNED_PRE_COMMAND_ELEMENT) is None


@pytest.mark.parametrize("version", VERSIONS)
def test_command_variant_rules(version: str) -> None:
    for srv in load_catalogue(version).srvs.values():
        if srv.variant in CV_EXCEPTIONS:
            expected = CV_EXCEPTIONS[srv.variant]
        elif srv.critical:
            expected = frozenset({4, 5, 6, 7})
        elif srv.non_device:
            expected = frozenset({8})
        else:
            expected = frozenset({1, 2, 3})
        assert srv.command_variants == expected, srv.variant
        assert (4 in srv.command_variants) == srv.critical  # every critical SRV transforms


def test_cv_exceptions_are_the_narrowed_ones() -> None:
    srvs = load_catalogue("5.4").srvs
    assert srvs["8.1.1"].critical and srvs["8.1.1"].command_variants == {4, 5}
    assert not srvs["8.5"].critical and not srvs["8.5"].non_device
    assert srvs["8.5"].command_variants == {1}


def test_endpoints() -> None:
    srvs = load_catalogue("5.4").srvs
    assert srvs["8.2"].endpoint_for(8) is Endpoint.NON_DEVICE
    assert srvs["1.1.1"].endpoint_for(4) is Endpoint.TRANSFORM
    assert srvs["1.1.1"].endpoint_for(5) is Endpoint.SEND
    assert srvs["4.1.1"].endpoint_for(1) is Endpoint.SEND


def test_sample_variants_from_the_brief() -> None:
    srvs = load_catalogue("5.4").srvs
    assert srvs["4.1.1"].body_element == "ReadInstantaneousImportRegisters"
    assert srvs["8.2"].body_element == "ReadInventory"
    assert srvs["11.2"].body_element == "ReadFirmwareVersion"
    assert srvs["2.2"].body_element == "TopUpDevice"
    for non_device in ("8.2", "11.1", "12.2", "5.1", "8.13"):
        assert srvs[non_device].command_variants == {8}, non_device


def test_srvs_are_the_same_in_every_version() -> None:
    # A fact of these XSDs (the brief expected it): if a version ever changes an
    # SRV, this test should be replaced by one naming the change.
    first, *others = catalogues().values()
    for other in others:
        assert other.srvs == first.srvs


# --- version-specific values -----------------------------------------------------


def test_response_codes_added_per_version() -> None:
    codes = {v: c.response_codes for v, c in catalogues().items()}
    assert len(codes["5.0"]) == 180
    assert codes["5.1"] - codes["5.0"] == {
        "E062305", "E062306", "E65", "E66", "E67", "E68", "E69", "E70", "E71",
    }  # fmt: skip
    assert codes["5.3"] - codes["5.1"] == {"E050111", "E050112", "E110106", "E120103"}
    assert codes["5.4"] - codes["5.3"] == {"E081406"}
    assert codes["5.0"] <= codes["5.1"] <= codes["5.3"] <= codes["5.4"]  # nothing removed
    everyday = {"I0", "I99", "E1", "E2", "E3", "E4", "E5", "E11", "E12", "E13", "E17", "E19"}
    assert everyday | {"E20", "E21", "E30"} <= codes["5.0"]


def test_csp_regions_gain_4g_from_5_3() -> None:
    for version, catalogue in catalogues().items():
        regions = catalogue.value_sets["CSPRegion"]
        assert {"North", "Central", "South"} <= regions
        assert (regions >= FOUR_G_REGIONS) == (version >= "5.3"), version
        assert regions.isdisjoint(FOUR_G_REGIONS) == (version < "5.3"), version
        assert value_allowed(catalogue, "CSPRegion", "4G South") == (version >= "5.3")


def test_dsp_schedulable_4_2_from_5_3() -> None:
    # The "4.2" the XSDs add in 5.3 is SRV 4.2 (Read Instantaneous Export Registers)
    # becoming DCC-schedulable, not a GBCS version: no XSD enumerates GBCS versions.
    for version, catalogue in catalogues().items():
        has = version >= "5.3"
        assert ("4.2" in catalogue.value_sets["DSPScheduledServiceReference"]) == has
        assert ("4.2" in catalogue.value_sets["DSPScheduledServiceReferenceVariant"]) == has


def test_gbcs_alignment_per_version() -> None:
    aligned = {v: c.gbcs_version for v, c in catalogues().items()}
    assert aligned == {"5.0": "4.1", "5.1": "4.1", "5.3": "4.3", "5.4": "4.3"}


def test_inventory_connectivity_only_in_5_4() -> None:
    for version, catalogue in catalogues().items():
        assert ("Connectivity" in catalogue.value_sets) == (version == "5.4")
    assert load_catalogue("5.4").value_sets["Connectivity"] == {"Cellular", "Virtual"}


def test_dcc_alert_codes_gain_n63_to_n65_in_5_1() -> None:
    new = {"N63", "N64", "N65"}
    for version, catalogue in catalogues().items():
        assert (new <= catalogue.value_sets["DCCAlertCode"]) == (version >= "5.1")
        # Also declared as free text (DCCAlertVersionMismatch), so not constrained by name.
        assert "DCCAlertCode" not in catalogue.value_set_elements


def test_value_set_elements_point_at_value_sets() -> None:
    for catalogue in catalogues().values():
        assert set(catalogue.value_set_elements.values()) <= set(catalogue.value_sets)
        assert catalogue.value_set_elements["ResponseCode"] == "ResponseCode"
        assert catalogue.value_sets["ResponseCode"] == catalogue.response_codes
        assert value_allowed(catalogue, "DeviceType", "anything")  # not version-dependent


def test_signer_role_codes_per_version() -> None:
    signers = {v: c.signer_role_codes for v, c in catalogues().items()}
    assert signers["5.0"] == {"02", "03", "7F"}
    for version in ("5.1", "5.3", "5.4"):
        assert signers[version] == {"87"}
    never = {"01", "04", "05", "06", "07", "89"}  # DCC-held roles, the CA, DCC signing
    assert all(codes.isdisjoint(never) for codes in signers.values())


# --- the data file format --------------------------------------------------------


def test_data_file_rejects_unknown_fields_and_formats() -> None:
    good = (VERSIONS_DIR / data_file_name("5.4")).read_bytes()
    assert decode_catalogue_file(good).version == "5.4"
    with pytest.raises(msgspec.ValidationError):
        decode_catalogue_file(good.replace(b'"format": 1', b'"format": 2'))
    with pytest.raises(msgspec.ValidationError):
        decode_catalogue_file(good.replace(b'"format": 1,', b'"format": 1, "extra": 0,'))


# --- agreement with the DCC's files ---------------------------------------------


@pytest.fixture(scope="session")
def derive() -> ModuleType:
    """tools/derive_catalogue.py, imported by path (tools/ is not a package)."""
    path = PROJECT_ROOT / "tools" / "derive_catalogue.py"
    spec = importlib.util.spec_from_file_location("derive_catalogue", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def derived(derive: ModuleType, shared_dir: Path) -> dict[str, CatalogueFile]:
    result: dict[str, CatalogueFile] = derive.derive_all(shared_dir)
    return result


@pytest.fixture(scope="session")
def xsd_roots(shared_dir: Path) -> dict[str, etree._Element]:
    xsd_dir = shared_dir / "duis" / "xsd"
    return {v: etree.parse(str(xsd_dir / f), SAFE_PARSER).getroot() for v, f in XSD_FILES.items()}


def enumeration(root: etree._Element, type_name: str) -> list[str]:
    simple_type = root.find(f"{XS}simpleType[@name='{type_name}']")
    assert simple_type is not None, type_name
    return [str(e.get("value")) for e in simple_type.iter(f"{XS}enumeration")]


def named_enumerations(root: etree._Element) -> dict[str, frozenset[str]]:
    return {
        str(st.get("name")): frozenset(str(e.get("value")) for e in st.iter(f"{XS}enumeration"))
        for st in root.findall(f"{XS}simpleType")
        if st.find(f"{XS}restriction/{XS}enumeration") is not None
    }


def test_shipped_files_are_what_the_xsds_give(
    derive: ModuleType, derived: dict[str, CatalogueFile]
) -> None:
    for version, file in derived.items():
        path = VERSIONS_DIR / data_file_name(version)
        assert decode_catalogue_file(path.read_bytes()) == file, version
        assert path.read_bytes() == derive.render(file), f"{path.name}: formatting"


def test_check_mode_passes_on_shipped_files(derive: ModuleType, shared_dir: Path) -> None:
    assert derive.main(["--shared", str(shared_dir), "--check"]) == 0


def test_check_mode_reports_drift(
    derive: ModuleType,
    derived: dict[str, CatalogueFile],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for version in VERSIONS:
        shutil.copy(VERSIONS_DIR / data_file_name(version), tmp_path)
    stale = msgspec.structs.replace(
        derived["5.1"], response_codes=derived["5.1"].response_codes - {"E65"}
    )
    (tmp_path / data_file_name("5.1")).write_bytes(derive.render(stale))
    (tmp_path / data_file_name("5.0")).unlink()
    assert derive.run_check(derived, tmp_path) == 1
    out = capsys.readouterr().out
    assert "duis_5.1.json: response_codes: +['E65'] -[]" in out
    assert "duis_5.0.json: missing" in out
    assert "duis_5.4.json" not in out


def test_drift_in_srvs_is_described(derive: ModuleType, derived: dict[str, CatalogueFile]) -> None:
    shipped = derived["5.4"]
    srvs = list(shipped.srvs)
    srvs[0] = msgspec.structs.replace(srvs[0], body_element="Renamed")
    drifted = msgspec.structs.replace(shipped, srvs=tuple(srvs[:-1]))
    lines = list(derive.describe_differences(drifted, shipped))
    assert "srvs[1.1.1].body_element: 'Renamed' -> 'UpdateImportTariffPrimaryElement'" in lines
    assert any(line.startswith("srvs: variants +['14.1']") for line in lines)


def test_reordered_body_elements_fail_the_pairing(derive: ModuleType, shared_dir: Path) -> None:
    rows = {r.variant: r for r in derive.load_matrix(shared_dir / "duis" / "srv-matrix.json")}
    variants = ["2.1", "2.2", "2.3", "2.5"]
    good = ["UpdatePrepayConfiguration", "TopUpDevice", "UpdateDebt", "ActivateEmergencyCredit"]
    assert derive.pair_body_elements(variants, rows, {"2": good})["2.2"] == "TopUpDevice"
    swapped = [good[1], good[0], *good[2:]]
    with pytest.raises(derive.DeriveError):
        derive.pair_body_elements(variants, rows, {"2": swapped})


def test_unexpected_cv_annotation_fails(derive: ModuleType) -> None:
    derive.check_cv_comment("7.12", frozenset({4, 5, 6, 7}), frozenset({1, 2, 3}))  # erratum
    with pytest.raises(derive.DeriveError):
        derive.check_cv_comment("4.1.1", frozenset({1, 2, 3}), frozenset({1}))


@pytest.mark.parametrize("version", VERSIONS)
def test_catalogue_agrees_with_its_xsd(version: str, xsd_roots: dict[str, etree._Element]) -> None:
    # Read the XSD directly here (not through the derivation) so the two can disagree.
    root, catalogue = xsd_roots[version], load_catalogue(version)
    assert list(catalogue.srvs) == enumeration(root, "ServiceReferenceVariant")
    assert {s.reference for s in catalogue.srvs.values()} == set(
        enumeration(root, "ServiceReference")
    )
    body = root.find(f"{XS}complexType[@name='Request']/{XS}sequence/{XS}element[@name='Body']")
    assert body is not None
    choice = [str(e.get("name")) for e in body.iter(f"{XS}element") if e is not body]
    assert choice == [*[s.body_element for s in catalogue.srvs.values()], "SignedPreCommand"]
    assert catalogue.response_codes == set(enumeration(root, "ResponseCode"))
    for name, values in named_enumerations(root).items():
        if name in catalogue.value_sets:
            assert catalogue.value_sets[name] == values, name


def test_value_sets_are_exactly_the_named_types_that_differ(
    xsd_roots: dict[str, etree._Element],
) -> None:
    per_version = {v: named_enumerations(root) for v, root in xsd_roots.items()}
    names = set().union(*per_version.values())
    differing = {n for n in names if len({types.get(n) for types in per_version.values()}) > 1}
    assert differing == {
        "CSPRegion", "Connectivity", "DSPScheduledServiceReference",
        "DSPScheduledServiceReferenceVariant", "ResponseCode",
    }  # fmt: skip
    for version, catalogue in catalogues().items():
        present = {n for n in differing if n in per_version[version]}
        assert set(catalogue.value_sets) - {"DCCAlertCode"} == present, version


def test_catalogue_agrees_with_the_srv_matrix(shared_dir: Path) -> None:
    matrix = msgspec.json.decode((shared_dir / "duis" / "srv-matrix.json").read_bytes())
    assert len(matrix) == 129
    for version, catalogue in catalogues().items():
        for row in matrix:
            srv = catalogue.srvs[row["Service Reference Variant"]]
            if srv.variant in ("6.20.1", "6.20.2"):  # the matrix lost a trailing zero
                assert (row["Service Reference"], srv.reference) == ("6.2", "6.20")
            else:
                assert srv.reference == row["Service Reference"]
            assert srv.name == " ".join(row["Service Request Name"].split())
            assert srv.critical == (row["Critical"] == "Yes")
            assert srv.on_demand == (row["On Demand"] == "Yes")
            assert srv.future_dated == row["Future Dated Response Pattern"]
            assert srv.dcc_scheduled == (row["DCC Scheduled"] == "Yes")
            assert srv.non_device == (row["Non-Device Request"] == "Yes")
            assert srv.roles == set(row["Eligible User Roles"]), (version, srv.variant)


def sample_requests(shared_dir: Path) -> list[Path]:
    return sorted((shared_dir / "duis" / "samples" / "requests").glob("*.XML"))


def test_sample_requests_match_their_catalogue(shared_dir: Path) -> None:
    checked = 0
    for path in sample_requests(shared_dir):
        request = etree.parse(str(path), SAFE_PARSER).getroot()
        version = str(request.get("schemaVersion"))
        if version not in VERSIONS:
            with pytest.raises(UnknownVersion):
                load_catalogue(version)
            continue
        variant = request.findtext(f"{SR}Header/{SR}ServiceReferenceVariant")
        srv = load_catalogue(version).srvs[str(variant)]
        assert request.findtext(f"{SR}Header/{SR}ServiceReference") == srv.reference
        assert int(str(request.findtext(f"{SR}Header/{SR}CommandVariant"))) in srv.command_variants
        body = request.find(f"{SR}Body")
        assert body is not None
        assert [etree.QName(child).localname for child in body] == [srv.body_element], path.name
        checked += 1
    assert checked >= 25
