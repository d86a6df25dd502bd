"""Derive mmc/versions/duis_<version>.json from the DCC's SRV matrix and DUIS XSDs.

    python tools/derive_catalogue.py --shared ../shared          # rewrite the data files
    python tools/derive_catalogue.py --shared ../shared --check  # exit 1 if they drifted

Only facts are written (SRV names, flags, roles, element names, code lists); the
DCC's files themselves stay outside the project.

Where each fact comes from:
- SRV name, critical, on-demand, future-dated pattern, DCC-scheduled, non-device,
  roles: srv-matrix.json (names with whitespace collapsed).
- Which SRVs a version has: the ServiceReferenceVariant enumeration of its XSD.
- reference: the variant itself or its parent, whichever the XSD's ServiceReference
  enumeration holds; it must agree with the matrix except for MATRIX_REFERENCE_ERRATA.
- body_element: the XSD does not tie Body elements to variants formally. The
  sr:Request Body choice lists one element per variant, in the enumeration's order,
  in groups headed by comments "Service Ref N.x". We pair them by position within
  each group, then prove the pairing: group sizes must match, and every paired
  element must share at least as many name words with its SRV name as any other
  element of its group does. A reordered XSD fails here instead of shipping.
- command_variants: the rule (critical 4-7, non-device 8, other 1-3) with the
  exceptions in CV_EXCEPTIONS, cross-checked against the "CV = ..." comment the XSD
  puts after each ServiceReferenceVariant value.
- response_codes: the ResponseCode enumeration.
- value_sets: every enumeration of the DUIS XSD whose value set is not the same in
  all served versions (including being absent from some).
- signer_role_codes: a per-version policy (signer_role_codes below).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

import msgspec
from lxml import etree

from mmc.catalogue import (
    CATALOGUE_FORMAT,
    ORGANISATION_ROLE_CODES,
    SERVED_VERSIONS,
    SIGNED_PRE_COMMAND_ELEMENT,
    USER_XML_SIGNING_ROLE_CODE,
    CatalogueFile,
    Srv,
    data_file_name,
    decode_catalogue_file,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VERSIONS_DIR = PROJECT_ROOT / "mmc" / "versions"

XS = "{http://www.w3.org/2001/XMLSchema}"
XS_NAMESPACE = "http://www.w3.org/2001/XMLSchema"

# The schema files behind each served version. 5.3 is served by revision "a" of
# the DUIS schema, whose header still says request/response version 5.3.
SCHEMA_FILES: dict[str, tuple[str, str]] = {
    "5.0": ("DUIS_Schema_V5.0.xsd", "MMC_Schema_V5.0.xsd"),
    "5.1": ("DUIS_Schema_V5.1.xsd", "MMC_Schema_V5.1.xsd"),
    "5.3": ("DUIS_Schema_V5.3a.xsd", "MMC_Schema_V5.3.xsd"),
    "5.4": ("DUIS_Schema_V5.4.xsd", "MMC_Schema_V5.4.xsd"),
}

CRITICAL_CVS = frozenset({4, 5, 6, 7})
NON_DEVICE_CVS = frozenset({8})
DEVICE_CVS = frozenset({1, 2, 3})

# SRVs whose CommandVariants are narrower than the rule. Both are stated by the
# "CV = ..." annotation in every served XSD (5.0-5.4).
CV_EXCEPTIONS: dict[str, tuple[frozenset[int], str]] = {
    "8.1.1": (
        frozenset({4, 5}),
        "Commission Device: the XSD offers CV 4 and 5 only, so its Signed Pre-Command "
        "goes over the SM WAN and is never delivered locally (6, 7)",
    ),
    "8.5": (
        frozenset({1}),
        "Service Opt Out: the XSD offers CV 1 only (no local delivery, 2 or 3); the "
        "DCC's own request template for it uses CV 1",
    ),
}

# Variants whose XSD "CV = ..." comment contradicts the SRV matrix, and where we
# follow the matrix. The comments for 7.12-7.15 are swapped in pairs in every
# served XSD: they give 7.12/7.13 (Set Randomised Offset Limit, Set Auxiliary
# Controller State: critical in the matrix) CV 1-3, and 7.14/7.15 (Read Auxiliary
# Controller Configuration/Operational Data: reads, never critical) CV 4-7.
CV_COMMENT_ERRATA = frozenset({"7.12", "7.13", "7.14", "7.15"})

# The matrix writes the Service Reference of 6.20.1 and 6.20.2 as "6.2" (a number
# that lost its trailing zero); the XSD's ServiceReference enumeration and the
# DCC's sample requests say "6.20", and "6.2" is the reference of 6.2.x.
MATRIX_REFERENCE_ERRATA = frozenset({"6.20.1", "6.20.2"})

# Abbreviations in Body element names, spelled as the matrix spells the SRV name,
# so the pairing check can compare words.
ELEMENT_NAME_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "alc": ("auxiliary", "load", "control"),
    "alcs": ("auxiliary", "load", "switch"),
}

YesNo = Literal["Yes", "No"]
UserRole = Literal["IS", "ES", "GS", "ED", "GT", "RSA", "OU"]


class DeriveError(Exception):
    """The DCC's files do not have the shape this derivation relies on."""


class MatrixRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One row of srv-matrix.json, validated as it is decoded."""

    name: str = msgspec.field(name="Service Request Name")
    reference: str = msgspec.field(name="Service Reference")
    variant: str = msgspec.field(name="Service Reference Variant")
    critical: YesNo = msgspec.field(name="Critical")
    on_demand: YesNo = msgspec.field(name="On Demand")
    future_dated: Literal["No", "DSP", "Device", "DSP & Device"] = msgspec.field(
        name="Future Dated Response Pattern"
    )
    dcc_scheduled: YesNo = msgspec.field(name="DCC Scheduled")
    non_device: YesNo = msgspec.field(name="Non-Device Request")
    roles: list[UserRole] = msgspec.field(name="Eligible User Roles")


@dataclasses.dataclass(frozen=True)
class Schemas:
    """One version's schema files, its DUIS schema parsed."""

    version: str
    duis_file: str
    mmc_file: str
    duis: etree._Element


# --- reading the DCC's files -------------------------------------------------------


def load_matrix(path: Path) -> list[MatrixRow]:
    return msgspec.json.decode(path.read_bytes(), type=list[MatrixRow])


def parse_xsd(path: Path) -> etree._Element:
    # Comments are kept: the SRV-to-CV annotations and Body groups live in them.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=False)
    return etree.parse(str(path), parser).getroot()


def load_schemas(xsd_dir: Path, version: str) -> Schemas:
    duis_file, mmc_file = SCHEMA_FILES[version]
    if not (xsd_dir / mmc_file).is_file():
        raise DeriveError(f"{mmc_file} missing beside {duis_file}")
    return Schemas(version, duis_file, mmc_file, parse_xsd(xsd_dir / duis_file))


def header_field(root: etree._Element, label: str) -> str:
    """A value from the DCC's header comment ("Aligned with GBCS version - 4.3")."""
    pattern = re.compile(rf"{re.escape(label)}\s*-\s*(\S+)")
    for comment in root.iter(etree.Comment):
        found = pattern.search(comment.text or "")
        if found:
            return found.group(1)
    raise DeriveError(f"no '{label}' in the schema header")


def top_level_simple_type(root: etree._Element, name: str) -> etree._Element:
    found = root.find(f"{XS}simpleType[@name='{name}']")
    if found is None:
        raise DeriveError(f"simpleType {name} not found")
    return found


def enumeration_values(simple_type: etree._Element) -> list[str]:
    return [str(e.get("value")) for e in simple_type.iter(f"{XS}enumeration")]


def variant_cv_comments(root: etree._Element) -> dict[str, frozenset[int] | None]:
    """ServiceReferenceVariant values in XSD order, with the CVs their comment gives."""
    restriction = top_level_simple_type(root, "ServiceReferenceVariant").find(f"{XS}restriction")
    if restriction is None:
        raise DeriveError("ServiceReferenceVariant has no restriction")
    result: dict[str, frozenset[int] | None] = {}
    current: str | None = None
    for child in restriction:
        if child.tag == f"{XS}enumeration":
            current = str(child.get("value"))
            result[current] = None
        elif isinstance(child, etree._Comment) and current is not None:
            found = re.fullmatch(r"\s*CV\s*=\s*([0-9,\s]+?)\s*", child.text or "")
            if found:
                result[current] = frozenset(int(cv) for cv in found.group(1).split(","))
    return result


def body_choice(root: etree._Element) -> etree._Element:
    request = root.find(f"{XS}complexType[@name='Request']")
    body = None if request is None else request.find(f"{XS}sequence/{XS}element[@name='Body']")
    choice = None if body is None else body.find(f"{XS}complexType/{XS}choice")
    if choice is None:
        raise DeriveError("sr:Request/Body is not a choice")
    return choice


def body_element_groups(root: etree._Element) -> dict[str, list[str]]:
    """Body choice elements grouped by their "Service Ref N.x" comment, keyed "N"."""
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for child in body_choice(root):
        if isinstance(child, etree._Comment):
            text = (child.text or "").strip()
            found = re.fullmatch(r"Service Ref (\d+)\.x", text)
            if found:
                current = groups.setdefault(found.group(1), [])
            elif text == "Signed Pre-Command":
                current = None
            else:
                raise DeriveError(f"unexpected comment in the Body choice: {text!r}")
        elif child.tag == f"{XS}element":
            name = str(child.get("name"))
            if current is None:
                if name != SIGNED_PRE_COMMAND_ELEMENT:
                    raise DeriveError(f"Body element {name} is outside any Service Ref group")
            else:
                current.append(name)
    return groups


# --- pairing Body elements with variants -----------------------------------------


def words_of_name(name: str) -> set[str]:
    return {word.lower() for word in re.findall(r"[A-Za-z0-9]+", name)}


def words_of_element(element: str) -> set[str]:
    # Split CamelCase, keeping acronyms whole: "ReadALCSData" -> read alcs data.
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\b)|[A-Z]?[a-z]+|[A-Z]+|[0-9]+", element)
    words: set[str] = set()
    for part in (p.lower() for p in parts):
        words.update(ELEMENT_NAME_ABBREVIATIONS.get(part, (part,)))
    return words


def check_pairing(row: MatrixRow, element: str, group: Sequence[str]) -> None:
    name_words = words_of_name(row.name)
    score = len(name_words & words_of_element(element))
    best = max(len(name_words & words_of_element(other)) for other in group)
    if score == 0 or score < best:
        raise DeriveError(
            f"SRV {row.variant} ({row.name}) paired with Body element {element}, "
            "but another element of its group matches its name better: XSD order changed?"
        )


def pair_body_elements(
    variants: Sequence[str], rows: Mapping[str, MatrixRow], groups: Mapping[str, list[str]]
) -> dict[str, str]:
    by_group: dict[str, list[str]] = {}
    for variant in variants:
        by_group.setdefault(variant.split(".")[0], []).append(variant)
    if set(by_group) != set(groups):
        raise DeriveError(f"Body groups {sorted(groups)} != SRV groups {sorted(by_group)}")
    pairs: dict[str, str] = {}
    for key, group_variants in by_group.items():
        elements = groups[key]
        if len(elements) != len(group_variants):
            raise DeriveError(
                f"Service Ref {key}.x: {len(group_variants)} variants, {len(elements)} elements"
            )
        for variant, element in zip(group_variants, elements, strict=True):
            check_pairing(rows[variant], element, elements)
            pairs[variant] = element
    return pairs


# --- SRV facts ---------------------------------------------------------------------


def command_variants(row: MatrixRow) -> frozenset[int]:
    if row.variant in CV_EXCEPTIONS:
        return CV_EXCEPTIONS[row.variant][0]
    if row.critical == "Yes":
        return CRITICAL_CVS
    if row.non_device == "Yes":
        return NON_DEVICE_CVS
    return DEVICE_CVS


def check_cv_comment(variant: str, derived: frozenset[int], comment: frozenset[int] | None) -> None:
    if comment is None or comment == derived or variant in CV_COMMENT_ERRATA:
        return
    raise DeriveError(
        f"SRV {variant}: XSD annotates CV {sorted(comment)}, we derive {sorted(derived)}"
    )


def service_reference(row: MatrixRow, references: Collection[str]) -> str:
    """The variant's Service Reference as the XSD enumerates it."""
    parent = row.variant.rsplit(".", 1)[0]
    reference = row.variant if row.variant in references else parent
    if reference not in references:
        raise DeriveError(f"SRV {row.variant}: no ServiceReference {reference} in the XSD")
    if reference != row.reference and row.variant not in MATRIX_REFERENCE_ERRATA:
        raise DeriveError(f"SRV {row.variant}: matrix says {row.reference}, XSD {reference}")
    return reference


def build_srv(row: MatrixRow, reference: str, body_element: str) -> Srv:
    return Srv(
        variant=row.variant,
        reference=reference,
        name=" ".join(row.name.split()),
        body_element=body_element,
        command_variants=command_variants(row),
        critical=row.critical == "Yes",
        on_demand=row.on_demand == "Yes",
        future_dated=row.future_dated,
        dcc_scheduled=row.dcc_scheduled == "Yes",
        non_device=row.non_device == "Yes",
        roles=frozenset(row.roles),
    )


def derive_srvs(root: etree._Element, rows: Mapping[str, MatrixRow]) -> tuple[Srv, ...]:
    cv_comments = variant_cv_comments(root)
    unknown = [variant for variant in cv_comments if variant not in rows]
    if unknown:
        raise DeriveError(f"XSD variants missing from the SRV matrix: {unknown}")
    variants = list(cv_comments)
    bodies = pair_body_elements(variants, rows, body_element_groups(root))
    references = enumeration_values(top_level_simple_type(root, "ServiceReference"))
    srvs = tuple(
        build_srv(rows[v], service_reference(rows[v], references), bodies[v]) for v in variants
    )
    for srv in srvs:
        check_cv_comment(srv.variant, srv.command_variants, cv_comments[srv.variant])
    return srvs


# --- value sets ----------------------------------------------------------------------


def enumerated_types(root: etree._Element) -> dict[str, frozenset[str]]:
    """Every enumeration: named types by name, anonymous ones by their element's name."""
    found: dict[str, frozenset[str]] = {}
    for simple_type in root.iter(f"{XS}simpleType"):
        values = frozenset(enumeration_values(simple_type))
        if not values:
            continue
        key = simple_type.get("name") or anonymous_type_key(simple_type)
        if key is None:
            continue  # an anonymous enumeration on an attribute: no element to map
        if found.setdefault(key, values) != values:
            raise DeriveError(f"two different enumerations are both keyed {key}")
    return found


def anonymous_type_key(simple_type: etree._Element) -> str | None:
    parent = simple_type.getparent()
    if parent is None or parent.tag != f"{XS}element":
        return None
    return parent.get("name")


def differing_keys(per_version: Mapping[str, Mapping[str, frozenset[str]]]) -> set[str]:
    keys = set().union(*(types.keys() for types in per_version.values()))
    return {key for key in keys if len({types.get(key) for types in per_version.values()}) > 1}


def element_value_set(element: etree._Element, differing: set[str]) -> str | None:
    """The differing value set an element declaration uses, if any (else None)."""
    type_name = element.get("type")
    if type_name is None:
        anonymous = element.find(f"{XS}simpleType")
        name = element.get("name")
        if anonymous is not None and enumeration_values(anonymous) and name in differing:
            return name
        return None
    prefix, _, local = type_name.rpartition(":")
    if element.nsmap.get(prefix or None) == XS_NAMESPACE:
        return None
    return local if local in differing else None


def value_set_elements(root: etree._Element, differing: set[str]) -> dict[str, str]:
    """Element local name -> differing value set, for names that are unambiguous.

    A name also declared with another type somewhere (DCCAlertCode is xs:string in
    DCCAlertVersionMismatch) is left out: constraining it by name would be wrong.
    """
    uses: dict[str, set[str | None]] = {}
    for element in root.iter(f"{XS}element"):
        name = element.get("name")
        if name is not None:
            uses.setdefault(name, set()).add(element_value_set(element, differing))
    mapping: dict[str, str] = {}
    for name, sets in uses.items():
        value_set = next(iter(sets))
        if len(sets) == 1 and value_set is not None:
            mapping[name] = value_set
    return mapping


# --- per-version policy ------------------------------------------------------------


def signer_role_codes(version: str) -> frozenset[str]:
    """Certificate OUs allowed to sign a User's request under this DUIS version.

    Up to 5.0 a User signs with the digital-signing certificate of the role it acts
    in: only User-held roles (supplier 02, network operator 03, other 7F). The DCC's
    own roles (recovery 01, ACB 04, transitional CoS 05, WAN provider 06), the
    issuing CA (07) and DCC XML signing (89) never sign a User request, and no DUIS
    User Role maps to load controller (08). From 5.1 Users sign with dedicated
    User XML-signing certificates (87), as the DCC's test environment does.
    """
    if version_key(version) < (5, 1):
        return frozenset(ORGANISATION_ROLE_CODES.values())
    return frozenset({USER_XML_SIGNING_ROLE_CODE})


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# --- whole derivation ----------------------------------------------------------------


def derive_all(shared: Path) -> dict[str, CatalogueFile]:
    """Every served version's catalogue, from the DCC's files under `shared`."""
    duis_dir = shared / "duis"
    rows = {row.variant: row for row in load_matrix(duis_dir / "srv-matrix.json")}
    schemas = [load_schemas(duis_dir / "xsd", version) for version in SERVED_VERSIONS]
    types = {s.version: enumerated_types(s.duis) for s in schemas}
    differing = differing_keys(types)
    return {s.version: derive_version(s, rows, types[s.version], differing) for s in schemas}


def derive_version(
    schemas: Schemas,
    rows: Mapping[str, MatrixRow],
    types: Mapping[str, frozenset[str]],
    differing: set[str],
) -> CatalogueFile:
    root = schemas.duis
    declared = header_field(root, "DUIS XML Schema Version - Request")
    if declared != schemas.version:
        raise DeriveError(f"{schemas.duis_file} declares request version {declared}")
    return CatalogueFile(
        format=CATALOGUE_FORMAT,
        version=schemas.version,
        xsd_file=schemas.duis_file,
        mmc_xsd_file=schemas.mmc_file,
        gbcs_version=header_field(root, "Aligned with GBCS version"),
        srvs=derive_srvs(root, rows),
        response_codes=frozenset(enumeration_values(top_level_simple_type(root, "ResponseCode"))),
        value_sets={key: values for key, values in types.items() if key in differing},
        value_set_elements=value_set_elements(root, differing),
        signer_role_codes=signer_role_codes(schemas.version),
    )


# --- writing and checking -----------------------------------------------------------


def _json(value: object) -> str:
    return msgspec.json.encode(value, order="deterministic").decode()


def render(file: CatalogueFile) -> bytes:
    """The file's JSON: one field per line, one SRV and one value set per line.

    Line-per-item keeps diffs of the data files reviewable; `order="deterministic"`
    sorts sets and dict keys so the bytes never depend on hash seeds.
    """
    lines = ["{"]
    fields = msgspec.structs.asdict(file)
    for index, (name, value) in enumerate(fields.items()):
        comma = "," if index < len(fields) - 1 else ""
        if name == "srvs":
            items = [_json(srv) for srv in value]
            lines.append('  "srvs": [\n    ' + ",\n    ".join(items) + f"\n  ]{comma}")
        elif name == "value_sets":
            items = [f"{_json(key)}: {_json(value[key])}" for key in sorted(value)]
            lines.append('  "value_sets": {\n    ' + ",\n    ".join(items) + f"\n  }}{comma}")
        else:
            lines.append(f"  {_json(name)}: {_json(value)}{comma}")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode()


def describe_differences(shipped: CatalogueFile, derived: CatalogueFile) -> Iterator[str]:
    """Human-readable lines saying how a shipped file differs from the derivation."""
    for name in CatalogueFile.__struct_fields__:
        old, new = getattr(shipped, name), getattr(derived, name)
        if old == new:
            continue
        if name == "srvs":
            yield from _srv_differences(old, new)
        elif name == "value_sets":
            yield from _value_set_differences(old, new)
        elif isinstance(old, frozenset) and isinstance(new, frozenset):
            yield f"{name}: {_set_change(old, new)}"
        else:
            yield f"{name}: {old!r} -> {new!r}"


def _set_change(old: Iterable[str], new: Iterable[str]) -> str:
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    return f"+{added} -{removed}"


def _srv_differences(old: Sequence[Srv], new: Sequence[Srv]) -> Iterator[str]:
    before, after = {s.variant: s for s in old}, {s.variant: s for s in new}
    if list(before) != list(after):
        yield f"srvs: variants {_set_change(before, after)} (or their order changed)"
    for variant in (v for v in after if v in before):  # XSD order, for stable output
        for field in Srv.__struct_fields__:
            was, now = getattr(before[variant], field), getattr(after[variant], field)
            if was != now:
                yield f"srvs[{variant}].{field}: {was!r} -> {now!r}"


def _value_set_differences(
    old: Mapping[str, frozenset[str]], new: Mapping[str, frozenset[str]]
) -> Iterator[str]:
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            yield f"value_sets[{key}]: {_set_change(old.get(key, ()), new.get(key, ()))}"


def check_file(path: Path, derived: CatalogueFile) -> list[str]:
    if not path.is_file():
        return ["missing"]
    data = path.read_bytes()
    try:
        shipped = decode_catalogue_file(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return [f"unreadable: {exc}"]
    problems = list(describe_differences(shipped, derived))
    if not problems and data != render(derived):
        problems.append("same content, different formatting")
    return problems


def extra_files(versions_dir: Path) -> list[str]:
    expected = {data_file_name(version) for version in SERVED_VERSIONS}
    return sorted(p.name for p in versions_dir.glob("duis_*.json") if p.name not in expected)


def run_check(derived: Mapping[str, CatalogueFile], versions_dir: Path) -> int:
    failures = 0
    for version, file in derived.items():
        problems = check_file(versions_dir / data_file_name(version), file)
        for problem in problems:
            print(f"{data_file_name(version)}: {problem}")
        failures += bool(problems)
    for name in extra_files(versions_dir):
        print(f"{name}: not a served version")
        failures += 1
    if failures:
        print(f"{failures} catalogue file(s) differ from the XSDs: run without --check")
    return 1 if failures else 0


def write_all(derived: Mapping[str, CatalogueFile], versions_dir: Path) -> None:
    versions_dir.mkdir(parents=True, exist_ok=True)
    for version, file in derived.items():
        (versions_dir / data_file_name(version)).write_bytes(render(file))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--shared", type=Path, default=PROJECT_ROOT.parent / "shared")
    parser.add_argument("--versions-dir", type=Path, default=VERSIONS_DIR)
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    try:
        derived = derive_all(args.shared)
    except (DeriveError, OSError, etree.XMLSyntaxError, msgspec.ValidationError) as exc:
        print(f"cannot derive the catalogue: {exc}", file=sys.stderr)
        return 2
    if args.check:
        return run_check(derived, args.versions_dir)
    write_all(derived, args.versions_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
