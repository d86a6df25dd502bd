"""Standalone XML signature verifiers on the gateway's own requests: the peers to beat.

    python -m bench.verifier_peers [--mix default|cv8] [--requests N] [--core N]

Each peer verifies the enveloped signature of the same signed requests the load
client sends, one after another on one core, given the signer's certificate (looked
up by the request's X509IssuerSerial, as the gateway does):

- signxml: `XMLVerifier().verify(...)` alone (pure Python over lxml and cryptography);
- xmlsec: python-xmlsec (libxmlsec1) with the certificate's key.

Neither does what the gateway does besides (XSD, the DUIS profile, certificate rules,
replay, access control, an answer over HTTP): a gateway slower end to end than a bare
verifier would be losing its time outside the checks. Both are test dependencies
(pyproject `[test]`), imported here only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import serialization
from lxml import etree

from bench import corpus as corpus_mod
from gateway.core.dn import normalise_dn
from gateway.core.signature import parse_signature
from gateway.devkit.default import ensure_default_state
from gateway.stores.certfiles import load_certstore

MIXES: dict[str, frozenset[int]] = {"default": corpus_mod.DEFAULT_VARIANTS, "cv8": frozenset({8})}
DS = "{http://www.w3.org/2000/09/xmldsig#}"
MIN_SECONDS = 0.5  # each peer verifies the sample at least this long (repeating it)


class PeerRate(msgspec.Struct):
    name: str
    per_second: float
    verified: int
    failed: int  # requests the peer refused: a wrong comparison if not zero


class PeersReport(msgspec.Struct):
    mix: str
    requests: int
    peers: list[PeerRate]


Signed = tuple[bytes, bytes]  # (request body, the signer's certificate PEM)


def signed_sample(mix: str, count: int, shared: Path | None = None) -> list[Signed]:
    """`count` requests of the mix, signed as the load client's corpus is, with certs."""
    found = corpus_mod.find_shared(shared)
    templates = corpus_mod.load_templates(found, MIXES[mix], rewrite_versions=False)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        state = Path(tmp)
        ensure_default_state(state, dt.datetime.now(dt.UTC))
        corpus = corpus_mod.build_corpus(templates, state / "pki", slots=1, total=count)
        store = load_certstore([state / "pki"])
        sample = []
        for wire, _ in corpus.slots[0]:
            body = wire.split(b"\r\n\r\n", 1)[1]
            parts = parse_signature(etree.fromstring(body))
            assert parts.issuer_name is not None and parts.serial is not None
            cert = store.lookup(normalise_dn(parts.issuer_name), parts.serial)
            assert cert is not None, "the corpus signs with certificates of the dev PKI"
            pem = cert.certificate.public_bytes(serialization.Encoding.PEM)
            sample.append((body, pem))
    return sample


def signxml_verifier() -> Callable[[bytes, bytes], None]:
    from signxml.algorithms import DigestAlgorithm, SignatureMethod
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    config = SignatureConfiguration(
        require_x509=False,
        signature_methods=frozenset([SignatureMethod.ECDSA_SHA256]),
        digest_algorithms=frozenset([DigestAlgorithm.SHA256]),
    )

    def verify(body: bytes, pem: bytes) -> None:
        XMLVerifier().verify(body, x509_cert=pem.decode(), expect_config=config)

    return verify


def xmlsec_verifier() -> Callable[[bytes, bytes], None]:
    import xmlsec

    keys: dict[bytes, xmlsec.Key] = {}  # the key loaded once per certificate

    def verify(body: bytes, pem: bytes) -> None:
        key = keys.get(pem)
        if key is None:
            key = keys[pem] = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatCertPem)
        root = etree.fromstring(body)
        node = root.find(f".//{DS}Signature")
        assert node is not None, "signed_sample signs every request"
        context = xmlsec.SignatureContext()
        context.key = key
        context.verify(node)

    return verify


def rate(verify: Callable[[bytes, bytes], None], sample: Sequence[Signed]) -> tuple[float, int]:
    """Verifications per second over the sample (repeated to MIN_SECONDS), and failures."""
    failed = 0
    for body, pem in sample[:5]:  # warm: imports, key caches
        verify(body, pem)
    done = 0
    started = time.perf_counter()
    while True:
        for body, pem in sample:
            try:
                verify(body, pem)
            except Exception:  # a peer's refusal: counted, and the comparison flagged
                failed += 1
            done += 1
        elapsed = time.perf_counter() - started
        if elapsed >= MIN_SECONDS:
            return done / elapsed, failed


def measure(mix: str, count: int, core: int) -> PeersReport:
    sample = signed_sample(mix, count)
    previous = os.sched_getaffinity(0)
    if core >= 0:
        os.sched_setaffinity(0, {core})
    try:
        peers = []
        for name, make in (("signxml verify alone", signxml_verifier), ("xmlsec", xmlsec_verifier)):
            per_second, failed = rate(make(), sample)
            peers.append(PeerRate(name, per_second, len(sample), failed))
    finally:
        os.sched_setaffinity(0, previous)
    return PeersReport(mix=mix, requests=len(sample), peers=peers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.verifier_peers",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--mix", choices=sorted(MIXES), default="default")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--core", type=int, default=0, help="-1: do not pin")
    args = parser.parse_args(argv)
    try:
        report = measure(args.mix, args.requests, args.core)
    except corpus_mod.SharedDataMissing as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    for peer in report.peers:
        print(f"{peer.name:<24} {peer.per_second:8,.0f}/s  ({peer.failed} refused)")
    return 0 if all(p.failed == 0 for p in report.peers) else 1


if __name__ == "__main__":
    sys.exit(main())
