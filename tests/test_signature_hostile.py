"""Hostile signatures and certificates: each refused for its own reason, never a crash.

Every case starts from a request validly signed in the profile and changes one
thing. The harness runs the checks in the pipeline's order (profile, certificate
lookup, certificate rules, digest and signature) and returns the reason code.
"""

from __future__ import annotations

import base64
import copy
import csv
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.core.certstore import (
    CertificateError,
    CertStore,
    check_signing_certificate,
    signer_certificate,
)
from gateway.core.signature import parse_signature, verify_signature
from gateway.core.signature_profile import DS_NS, SignatureError
from gateway.core.signing import sign_document
from gateway.devkit.devpki import DevUser, build_crl, generate_dev_pki
from gateway.stores.certfiles import load_certstore

DS = f"{{{DS_NS}}}"
SR = "{http://www.dccinterface.co.uk/ServiceUserGateway}"
UTC = dt.UTC
NOW = dt.datetime(2024, 6, 1, tzinfo=UTC)  # Z1 role certificates valid, 2015-2025
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
NETWORK_OPERATOR = "90-B3-D5-1F-30-02-00-00"
ROLES_50 = frozenset({"01", "02", "03", "04", "05", "06", "08", "7F"})  # role certificates
ROLES_51 = frozenset({"87"})  # User XML-signing certificates
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

REQUEST = (
    b'<sr:Request xmlns:sr="http://www.dccinterface.co.uk/ServiceUserGateway" '
    b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" schemaVersion="5.1">'
    b"<sr:Header><sr:RequestID>90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:1000"
    b"</sr:RequestID><sr:CommandVariant>8</sr:CommandVariant>"
    b"<sr:ServiceReference>8.2</sr:ServiceReference>"
    b"<sr:ServiceReferenceVariant>8.2</sr:ServiceReferenceVariant></sr:Header>"
    b'<sr:Body><sr:ReadInventory><sr:DeviceID Id="body">00-DB-12-34-56-78-90-A2</sr:DeviceID>'
    b"</sr:ReadInventory></sr:Body></sr:Request>"
)


@dataclass
class Env:
    pki: Path
    store: CertStore
    dev_store: CertStore
    dev_revoked: bytes  # a request signed with a dev certificate the CRL revokes
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    listed: dict[str, tuple[str, int]] = field(default_factory=dict)

    def issuer_serial(self, name: str) -> tuple[str, int]:
        """As the DCC's index of its test PKI lists them, without parsing the certificate:
        the parser refuses the ``mdr-*`` ones, and a request may still name them."""
        if not self.listed:
            with (self.pki / "index.csv").open(newline="") as index:
                for row in csv.DictReader(index):
                    self.listed[row["name"]] = (row["issuer"], int(row["serial"]))
        return self.listed[name]

    def sign(
        self, name: str, *, issuer: str = "", serial_of: str = "", data: bytes = REQUEST
    ) -> bytes:
        if name not in self.keys:
            pem = (self.pki / f"{name}.key.pem").read_bytes()
            key = serialization.load_pem_private_key(pem, None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.keys[name] = key
        listed_issuer, serial = self.issuer_serial(serial_of or name)
        return sign_document(data, self.keys[name], issuer or listed_issuer, serial)

    @property
    def signed(self) -> bytes:
        return self.sign("xml-sign-90B3D51F30010000-ds")


@pytest.fixture(scope="module")
def env(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Env:
    return make_env(shared_dir, tmp_path_factory.mktemp("devpki"))


def make_env(shared_dir: Path, dev: Path) -> Env:
    """The DCC's test PKI, and a dev PKI with a CRL (tests/test_json_logs.py uses it too)."""
    pki = shared_dir / "pki" / "dccboxed"
    paths = generate_dev_pki(
        dev, [DevUser(SUPPLIER, "supplier", ("02",))], "90-B3-D5-1F-30-00-00-02", NOW
    )
    ca = x509.load_pem_x509_certificate(paths.issuing_ca.read_bytes())
    ca_key = serialization.load_pem_private_key(
        paths.issuing_ca.with_name("dev-issuing-ca.key.pem").read_bytes(), None
    )
    user_cert = x509.load_pem_x509_certificate(paths.user_xml_signing[SUPPLIER].read_bytes())
    user_key = serialization.load_pem_private_key(
        paths.user_xml_signing[SUPPLIER]
        .with_name(f"xml-sign-{SUPPLIER.replace('-', '')}-ds.key.pem")
        .read_bytes(),
        None,
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey) and isinstance(
        user_key, ec.EllipticCurvePrivateKey
    )
    crl = dev / "revoked.crl.pem"
    crl.write_bytes(build_crl(ca, ca_key, [user_cert.serial_number], NOW))
    return Env(
        pki=pki,
        store=load_certstore([pki]),
        dev_store=load_certstore([dev], anchors=[paths.issuing_ca], crl_files=[crl]),
        dev_revoked=sign_document(
            REQUEST, user_key, user_cert.issuer.rfc4514_string(), user_cert.serial_number
        ),
    )


def check(
    data: bytes,
    store: CertStore,
    *,
    at: dt.datetime = NOW,
    signer: str = SUPPLIER,
    roles: frozenset[str] = ROLES_51,
) -> tuple[str, etree._Element]:
    """The pipeline's signature stages; 'ok' or the refusal's reason code."""
    root = etree.fromstring(data, PARSER)
    try:
        parts = parse_signature(root)
        # The SignedInfo form parse_signature derives is lxml's in-place C14N of it.
        method = ds_find(root, "ds:SignedInfo/ds:CanonicalizationMethod").get("Algorithm")
        in_place = etree.tostring(parts.signature[0], method="c14n", exclusive=method == EXC)
        assert parts.signed_info_c14n == in_place
        cert = signer_certificate(store, parts.issuer_name, parts.serial, parts.certificate)
        check_signing_certificate(
            cert, at=at, signer_eui64=signer, allowed_role_codes=roles, store=store
        )
        verify_signature(root, parts, cert.public_key)
    except (SignatureError, CertificateError) as exc:
        return exc.reason, root
    return "ok", root


# --------------------------------------------------------------------------- edits


def edit(data: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(data, PARSER)
    change(root)
    return bytes(etree.tostring(root))


def sig(root: etree._Element) -> etree._Element:
    found = root.find(f".//{DS}Signature")
    assert found is not None
    return found


def ds_find(root: etree._Element, path: str) -> etree._Element:
    found = sig(root).find(path.replace("ds:", DS))
    assert found is not None, path
    return found


def set_algorithm(path: str, algorithm: str) -> Callable[[etree._Element], None]:
    return lambda root: ds_find(root, path).set("Algorithm", algorithm)


def move_signature_to(
    where: Callable[[etree._Element], etree._Element], index: int = 0
) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        signature = sig(root)
        where(root).insert(index, signature)

    return change


def second_signature(root: etree._Element) -> None:
    root[0].append(copy.deepcopy(sig(root)))


def wrap_document(root: etree._Element) -> None:
    # Forged Header/Body at the top, the genuine signed document pushed down a level.
    genuine = copy.deepcopy(root)
    for child in list(root):
        root.remove(child)
    root.append(etree.fromstring(etree.tostring(genuine[0]).replace(b"1000", b"1001")))
    root.append(copy.deepcopy(genuine[1]))
    wrapper = etree.SubElement(root, f"{SR}Wrapper")
    wrapper.append(genuine)


def duplicate_header_and_body(root: etree._Element) -> None:
    forged_header = copy.deepcopy(root[0])
    forged_header[0].text = forged_header[0].text.replace("1000", "1001")  # type: ignore[union-attr]
    forged_body = copy.deepcopy(root[1])
    root.insert(0, forged_body)
    root.insert(0, forged_header)


def add_after_signature(node: etree._Element) -> Callable[[etree._Element], None]:
    return lambda root: root.append(node)


def text_after_signature(root: etree._Element) -> None:
    sig(root).tail = "injected"


def extra_transform(algorithm: str, replace: bool = False) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        transforms = ds_find(root, "ds:SignedInfo/ds:Reference/ds:Transforms")
        if replace:
            transforms.remove(transforms[0])
        transform = etree.SubElement(transforms, f"{DS}Transform", Algorithm=algorithm)
        if "xpath" in algorithm:
            etree.SubElement(transform, f"{DS}XPath").text = "not(ancestor-or-self::ds:Signature)"

    return change


def set_reference_uri(uri: str | None) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        reference = ds_find(root, "ds:SignedInfo/ds:Reference")
        if uri is None:
            del reference.attrib["URI"]
        else:
            reference.set("URI", uri)

    return change


def second_reference(root: etree._Element) -> None:
    reference = ds_find(root, "ds:SignedInfo/ds:Reference")
    reference.addnext(copy.deepcopy(reference))


def append_to_signature(tag: str) -> Callable[[etree._Element], None]:
    return lambda root: etree.SubElement(sig(root), f"{DS}{tag}").append(
        etree.Element(f"{SR}Header")
    )


def set_signature_attribute(root: etree._Element) -> None:
    sig(root).set("Id", "body")


def hmac_output_length(root: etree._Element) -> None:
    etree.SubElement(
        ds_find(root, "ds:SignedInfo/ds:SignatureMethod"), f"{DS}HMACOutputLength"
    ).text = "8"


def change_body(root: etree._Element) -> None:
    device = root.find(f".//{SR}DeviceID")
    assert device is not None
    device.text = "00-DB-12-34-56-78-90-A3"


def set_text(path: str, text: str | Callable[[str], str]) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        element = ds_find(root, path)
        element.text = text(element.text or "") if callable(text) else text

    return change


def flip_last_scalar_bit(value: str) -> str:
    import base64

    raw = bytearray(base64.b64decode(value))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def replace_key_info_with_certificate(root: etree._Element) -> None:
    x509_data = ds_find(root, "ds:KeyInfo/ds:X509Data")
    x509_data.remove(x509_data[0])
    etree.SubElement(x509_data, f"{DS}X509Certificate").text = "MIIB"


def certificate_text(pki: Path, name: str) -> str:
    der = x509.load_pem_x509_certificate((pki / f"{name}.cert.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    return base64.b64encode(der).decode()


def add_certificate(
    text: str, *, replace: bool = False, before: bool = False
) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        x509_data = ds_find(root, "ds:KeyInfo/ds:X509Data")
        if replace:
            x509_data.remove(x509_data[0])
        element = etree.Element(f"{DS}X509Certificate")
        element.text = text
        x509_data.insert(0 if before else len(x509_data), element)

    return change


def add_to_x509_data(tag: str, text: str) -> Callable[[etree._Element], None]:
    return lambda root: setattr(
        etree.SubElement(ds_find(root, "ds:KeyInfo/ds:X509Data"), f"{DS}{tag}"), "text", text
    )


def transform_first(algorithm: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        transforms = ds_find(root, "ds:SignedInfo/ds:Reference/ds:Transforms")
        transforms.insert(0, etree.Element(f"{DS}Transform", Algorithm=algorithm))

    return change


def exclusive_with_prefix_list(root: etree._Element) -> None:
    extra_transform(EXC)(root)
    transform = ds_find(root, "ds:SignedInfo/ds:Reference/ds:Transforms")[1]
    etree.SubElement(transform, f"{{{EXC}}}InclusiveNamespaces", PrefixList="sr xsi")


def xml_lang_on_root_with_c14n11(root: etree._Element) -> None:
    root.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    set_algorithm("ds:SignedInfo/ds:CanonicalizationMethod", C14N11)(root)


def insert_node(
    path: str, node_factory: Callable[[], etree._Element], index: int = 0
) -> Callable[[etree._Element], None]:
    return lambda root: ds_find(root, path).insert(index, node_factory())


def split_digest_with_comment(root: etree._Element) -> None:
    digest = ds_find(root, "ds:SignedInfo/ds:Reference/ds:DigestValue")
    text = digest.text or ""
    digest.text = text[:10]
    comment = etree.Comment("x")
    comment.tail = text[10:]
    digest.append(comment)


def text_inside_signed_info(root: etree._Element) -> None:
    ds_find(root, "ds:SignedInfo").text = "unsigned words"


def relative_namespace(data: bytes) -> bytes:
    return data.replace(b"<sr:Request ", b'<sr:Request xmlns:rel="relative/uri" ', 1)


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Env], bytes]
    reason: str
    at: dt.datetime = NOW
    signer: str = SUPPLIER
    roles: frozenset[str] = ROLES_51
    dev: bool = False


def on_signed(change: Callable[[etree._Element], None]) -> Callable[[Env], bytes]:
    return lambda env: edit(env.signed, change)


EXC = "http://www.w3.org/2001/10/xml-exc-c14n#"
C14N10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
OTHER_USER_CERT = "xml-sign-90B3D51F30020000-ds"
CASES = [
    # wrapping
    Case("no signature", on_signed(lambda r: r.remove(sig(r))), "missing_signature"),
    Case("signature first", on_signed(move_signature_to(lambda r: r)), "signature_not_last"),
    Case(
        "signature nested in Body",
        on_signed(move_signature_to(lambda r: r[1])),
        "signature_not_last",
    ),
    Case("second signature in Header", on_signed(second_signature), "multiple_signatures"),
    Case(
        "genuine document wrapped under forged Header/Body",
        on_signed(wrap_document),
        "signature_not_last",
    ),
    Case(
        "forged Header/Body before the signed ones",
        on_signed(duplicate_header_and_body),
        "digest_mismatch",
    ),
    Case(
        "comment after the signature",
        on_signed(add_after_signature(etree.Comment("x"))),
        "signature_not_last",
    ),
    Case(
        "PI after the signature",
        on_signed(add_after_signature(etree.PI("x"))),
        "signature_not_last",
    ),
    Case("text after the signature", on_signed(text_after_signature), "signature_not_last"),
    # algorithm substitution
    Case(
        "rsa-sha256",
        on_signed(
            set_algorithm(
                "ds:SignedInfo/ds:SignatureMethod",
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            )
        ),
        "bad_algorithm",
    ),
    Case(
        "sha1 digest",
        on_signed(
            set_algorithm(
                "ds:SignedInfo/ds:Reference/ds:DigestMethod",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            )
        ),
        "bad_algorithm",
    ),
    Case(
        # An accepted method, but the signature covered SignedInfo in exclusive form.
        "SignedInfo method changed to inclusive c14n after signing",
        on_signed(set_algorithm("ds:SignedInfo/ds:CanonicalizationMethod", C14N10)),
        "signature_invalid",
    ),
    Case(
        "exclusive c14n with comments",
        on_signed(set_algorithm("ds:SignedInfo/ds:CanonicalizationMethod", EXC + "WithComments")),
        "bad_algorithm",
    ),
    Case(
        "c14n 1.1 with comments for SignedInfo",
        on_signed(
            set_algorithm("ds:SignedInfo/ds:CanonicalizationMethod", C14N11 + "#WithComments")
        ),
        "bad_algorithm",
    ),
    Case(
        "c14n 1.1 SignedInfo under an inherited xml:lang",
        on_signed(xml_lang_on_root_with_c14n11),
        "canonicalization_failed",
    ),
    # The exclusive form drops the unused xmlns:xsi the inclusive digest covered.
    Case("exclusive c14n transform added", on_signed(extra_transform(EXC)), "digest_mismatch"),
    Case("c14n transform before enveloped", on_signed(transform_first(C14N10)), "bad_transforms"),
    Case(
        "two c14n transforms",
        on_signed(lambda r: (extra_transform(C14N10)(r), extra_transform(C14N11)(r))),
        "bad_transforms",
    ),
    Case(
        "exclusive transform with an InclusiveNamespaces prefix list",
        on_signed(exclusive_with_prefix_list),
        "bad_transforms",
    ),
    Case(
        "XPath transform instead of enveloped",
        on_signed(extra_transform("http://www.w3.org/TR/1999/REC-xpath-19991116", replace=True)),
        "bad_transforms",
    ),
    Case(
        "Reference URI names an element", on_signed(set_reference_uri("#body")), "bad_reference_uri"
    ),
    Case("Reference without URI", on_signed(set_reference_uri(None)), "bad_reference_uri"),
    Case("second Reference", on_signed(second_reference), "bad_structure"),
    Case("ds:Object carrying a Header", on_signed(append_to_signature("Object")), "bad_structure"),
    Case("Id attribute on Signature", on_signed(set_signature_attribute), "unexpected_attribute"),
    Case("HMACOutputLength", on_signed(hmac_output_length), "bad_structure"),
    Case("text inside SignedInfo", on_signed(text_inside_signed_info), "bad_structure"),
    # values
    Case("body changed", on_signed(change_body), "digest_mismatch"),
    Case(
        "SignatureValue of 63 bytes",
        on_signed(set_text("ds:SignatureValue", "A" * 84)),
        "bad_signature_value",
    ),
    Case(
        "SignatureValue not base64",
        on_signed(set_text("ds:SignatureValue", "!!" * 44)),
        "bad_signature_value",
    ),
    Case(
        "SignatureValue oversize",
        on_signed(set_text("ds:SignatureValue", "AAAA" * 2000)),
        "bad_signature_value",
    ),
    Case(
        "SignatureValue altered",
        on_signed(set_text("ds:SignatureValue", flip_last_scalar_bit)),
        "signature_invalid",
    ),
    Case(
        "DigestValue of 20 bytes",
        on_signed(set_text("ds:SignedInfo/ds:Reference/ds:DigestValue", "A" * 27 + "=")),
        "bad_digest_value",
    ),
    Case(
        "KeyInfo carries a certificate nobody trusts",
        on_signed(replace_key_info_with_certificate),
        "unknown_certificate",
    ),
    Case(
        "another trusted certificate beside the IssuerSerial",
        lambda env: edit(env.signed, add_certificate(certificate_text(env.pki, OTHER_USER_CERT))),
        "embedded_certificate_mismatch",
    ),
    Case(
        "another User's trusted certificate alone",
        lambda env: edit(
            env.signed, add_certificate(certificate_text(env.pki, OTHER_USER_CERT), replace=True)
        ),
        "eui_mismatch",
    ),
    Case(
        "another User's trusted certificate alone, posing as that User",
        lambda env: edit(
            env.signed, add_certificate(certificate_text(env.pki, OTHER_USER_CERT), replace=True)
        ),
        "signature_invalid",
        signer=NETWORK_OPERATOR,
    ),
    Case(
        "two certificates",
        lambda env: edit(
            env.signed,
            lambda r: (
                add_certificate(certificate_text(env.pki, OTHER_USER_CERT), replace=True)(r),
                add_certificate(certificate_text(env.pki, OTHER_USER_CERT))(r),
            ),
        ),
        "bad_key_info",
    ),
    Case(
        "X509Certificate not base64",
        on_signed(add_certificate("not*base64", replace=True)),
        "bad_key_info",
    ),
    Case(
        "X509SubjectName beside the IssuerSerial",
        on_signed(add_to_x509_data("X509SubjectName", "CN=Z1")),
        "bad_key_info",
    ),
    Case(
        "serial in hex",
        on_signed(
            set_text("ds:KeyInfo/ds:X509Data/ds:X509IssuerSerial/ds:X509SerialNumber", "0x1f")
        ),
        "bad_key_info",
    ),
    # comment games
    Case(
        "comment inside SignedInfo",
        on_signed(insert_node("ds:SignedInfo", lambda: etree.Comment("c"))),
        "comment_in_signature",
    ),
    Case(
        "comment splitting DigestValue",
        on_signed(split_digest_with_comment),
        "comment_in_signature",
    ),
    Case(
        "PI inside Signature",
        on_signed(insert_node(".", lambda: etree.PI("x", "y"))),
        "comment_in_signature",
    ),
    Case(
        "relative namespace URI",
        lambda env: relative_namespace(env.signed),
        "canonicalization_failed",
    ),
    # certificates
    Case(
        "another User's key and certificate",
        lambda env: env.sign("xml-sign-90B3D51F30020000-ds"),
        "eui_mismatch",
    ),
    Case(
        "own key, another User's serial, posing as that User",
        lambda env: env.sign(
            "xml-sign-90B3D51F30010000-ds", serial_of="xml-sign-90B3D51F30020000-ds"
        ),
        "signature_invalid",
        signer=NETWORK_OPERATOR,
    ),
    Case(
        "own key, another User's serial",
        lambda env: env.sign(
            "xml-sign-90B3D51F30010000-ds", serial_of="xml-sign-90B3D51F30020000-ds"
        ),
        "eui_mismatch",
    ),
    Case(
        "expired role certificate",
        lambda env: env.sign("Z1-supplier-ds"),
        "expired",
        at=dt.datetime(2025, 11, 1, tzinfo=UTC),
        roles=ROLES_50,
    ),
    Case(
        "not yet valid",
        lambda env: env.sign("Z1b-supplier-ds"),
        "not_yet_valid",
        at=dt.datetime(2015, 12, 1, tzinfo=UTC),
        roles=ROLES_50,
    ),
    Case("revoked", lambda env: env.dev_revoked, "revoked", dev=True),
    Case(
        "key agreement certificate",
        lambda env: env.sign("Z1-supplier-ka"),
        "key_agreement_certificate",
        roles=ROLES_50,
    ),
    Case(
        "OU 87 under the 5.0 rule", lambda env: env.signed, "wrong_role_for_version", roles=ROLES_50
    ),
    Case(
        "role certificate under the 5.1 rule",
        lambda env: env.sign("Z1-supplier-ds"),
        "wrong_role_for_version",
    ),
    Case(
        "DCC's own signing certificate posing as a User",
        lambda env: env.sign("dsp-xml-sign-90B3D51F30000002-ds"),
        "wrong_role_for_version",
        signer="90-B3-D5-1F-30-00-00-02",
    ),
    Case(
        "non-DER certificate (mdr)",
        lambda env: env.sign("mdr-ds"),
        "unknown_certificate",
        signer="90-B3-D5-1F-30-01-00-09",
        roles=frozenset({"7F"}),
    ),
    Case(
        "unknown serial",
        on_signed(
            set_text("ds:KeyInfo/ds:X509Data/ds:X509IssuerSerial/ds:X509SerialNumber", "12345")
        ),
        "unknown_certificate",
    ),
    Case(
        "unknown issuer",
        lambda env: env.sign("xml-sign-90B3D51F30010000-ds", issuer="CN=Z2,OU=07"),
        "unknown_certificate",
    ),
]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert len({case.name for case in CASES}) == len(CASES)


def test_the_unmodified_request_verifies(env: Env) -> None:
    assert check(env.signed, env.store)[0] == "ok"
    assert check(env.sign("Z1-supplier-ds"), env.store, roles=ROLES_50)[0] == "ok"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_case_is_refused_for_its_own_reason(env: Env, case: Case) -> None:
    store = env.dev_store if case.dev else env.store
    reason, _ = check(case.build(env), store, at=case.at, signer=case.signer, roles=case.roles)
    assert reason == case.reason


def test_mdr_certificate_is_absent_because_it_was_refused(env: Env) -> None:
    assert any(path.name == "mdr-ds.cert.pem" for path, _ in env.store.skipped)


def test_revoked_certificate_passes_without_the_crl(env: Env) -> None:
    # Control for the "revoked" row: the same request is fine when nothing revokes it.
    store = load_certstore([env.dev_store.find(SUPPLIER, "87", "digitalSignature")[0].path.parent])
    assert check(env.dev_revoked, store)[0] == "ok"


# --------------------------------------------------------------------------- mutation


def signed_content(root: etree._Element) -> bytes:
    return etree.tostring(root.getroottree(), method="c14n")


@pytest.fixture(scope="module")
def baseline(env: Env) -> tuple[bytes, bytes]:
    signed = env.signed
    _, root = check(signed, env.store)  # verification detaches the Signature
    return signed, signed_content(root)


MUTATION_SETTINGS = settings(max_examples=150, deadline=None)


@MUTATION_SETTINGS
@given(data=st.data())
def test_random_byte_mutations(
    env: Env, baseline: tuple[bytes, bytes], data: st.DataObject
) -> None:
    signed, content = baseline
    position = data.draw(st.integers(0, len(signed) - 1))
    operation = data.draw(st.sampled_from(["replace", "delete", "insert"]))
    value = data.draw(st.binary(min_size=1, max_size=3))
    if operation == "replace":
        mutated = signed[:position] + value + signed[position + len(value) :]
    elif operation == "delete":
        mutated = signed[:position] + signed[position + len(value) :]
    else:
        mutated = signed[:position] + value + signed[position:]
    try:
        reason, root = check(mutated, env.store)
    except etree.XMLSyntaxError:
        return
    if reason == "ok":
        assert signed_content(root) == content


ELEMENT_OPERATIONS = [
    "delete",
    "duplicate",
    "text",
    "attribute",
    "to_root_end",
    "comment",
    "wrap",
    "swap",
]


def mutate_element(root: etree._Element, index: int, operation: str) -> None:
    # Elements only: an earlier mutation may have inserted a comment, which takes no
    # attributes or children.
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    element = elements[index % len(elements)]
    parent = element.getparent()
    if parent is None:
        element.set("mutated", "1")
        return
    if operation == "delete":
        parent.remove(element)
    elif operation == "duplicate":
        element.addnext(copy.deepcopy(element))
    elif operation == "text":
        element.text = (element.text or "") + "x"
    elif operation == "attribute":
        element.set("Id", "x")
    elif operation == "to_root_end":
        root.append(element)
    elif operation == "comment":
        element.insert(0, etree.Comment("c"))
    elif operation == "wrap":
        wrapper = etree.Element(f"{DS}Object")
        element.addprevious(wrapper)
        wrapper.append(element)
    else:
        following = element.getnext()
        if following is not None:
            following.addnext(element)


@MUTATION_SETTINGS
@given(
    index=st.integers(0, 200),
    operation=st.sampled_from(ELEMENT_OPERATIONS),
    second=st.none() | st.tuples(st.integers(0, 200), st.sampled_from(ELEMENT_OPERATIONS)),
)
def test_random_element_mutations(
    env: Env,
    baseline: tuple[bytes, bytes],
    index: int,
    operation: str,
    second: tuple[int, str] | None,
) -> None:
    signed, content = baseline
    root = etree.fromstring(signed, PARSER)
    mutate_element(root, index, operation)
    if second is not None:
        mutate_element(root, *second)
    reason, verified = check(bytes(etree.tostring(root)), env.store)
    if reason == "ok":
        assert signed_content(verified) == content
