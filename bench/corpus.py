"""Pre-signed DUIS request corpora, and the bench estate they are signed for.

The RTDS request templates (../shared/duis/samples/requests) are signed before a run,
so the load generator spends no CPU on XML or ECDSA while it measures the gateway.

Why a bench estate: the gateway refuses (E1) any RequestID counter that is not above
the last one it accepted from the same originator. Requests from one originator on
several connections reach the server in an order no client controls (trio even
shuffles the wake-up order of ready tasks), so a corpus cannot be replayed over many
connections from two User IDs. Instead each connection ("slot") gets User IDs of its
own: slot 0 uses the templates' real originators, slot k > 0 clones of them (same
party, roles, device eligibility and certificate roles). Requests on one keep-alive
connection arrive in order, so counters that increase along a slot stay valid.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import re
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.ports import free_ports as free_ports  # the suite's and bench's one source
from gateway.core.certstore import CertStore
from gateway.core.ingest import decode_header, parse_xml
from gateway.core.local_commands import RETURN_LOCAL_COMMAND_RESPONSE
from gateway.core.registry import InventoryFile, UsersFile
from gateway.core.signing import sign_document
from gateway.devkit.client import endpoint_path, prepare
from gateway.devkit.devpki import (
    TLS_CA_NAME,
    TLS_SERVER_NAME,
    TLS_SUBDIRECTORY,
    DevUser,
    generate_dev_pki,
)
from gateway.devkit.estate import DCC_EUI64, dev_users
from gateway.stores.certfiles import load_certstore
from gateway.stores.jobs import LOCAL_JOBS
from gateway.stores.operator_files import load_inventory, load_users
from mmc.catalogue import USER_XML_SIGNING_ROLE_CODE, load_catalogue

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
SHARED_ENV: Final = "DUISGW_SHARED"
SAMPLES: Final = Path("duis/samples/requests")
SERVED_VERSIONS: Final = ("5.0", "5.1", "5.3", "5.4")
# CV 2 (synchronous device) waits for the simulator's seconds-long device latency, and
# CV 4 needs a SignedPreCommand round trip: neither measures the gateway's own cost.
DEFAULT_VARIANTS: Final = frozenset({1, 8})
ASYNC_VARIANTS: Final = frozenset({1, 3, 5, 7})
# The default estate has one Communications Hub, which the simulator drains at about one
# command a second; accepted asynchronous jobs wait in a buffer of LOCAL_JOBS (SQLite) and
# the I99 blocks once it is full. A run stays below that, with room for the workers; each
# worker of `--workers N` has a buffer of its own, so N workers' runs take N times this.
MAX_ASYNC_PER_RUN: Final = LOCAL_JOBS * 9 // 10
# That one hub holds every asynchronous command of a run, where a real estate spreads
# them over many; its queue (1,000 per class by default) is made deeper than any run's,
# so that no run's commands come back "queue full" at once. Those answers are signed and
# delivered: a run with more in flight (two workers hold twice one worker's link
# credit) would do that extra work and read as not scaling (seen here: 1.0x).
BENCH_HUB_QUEUE: Final = 200_000
ROLE_CERTIFICATE_CODES: Final = ("02", "03", "7F", "08", "04")
POOL_THRESHOLD: Final = 2000  # below this, starting worker processes costs more than it saves
POOL_CHUNK: Final = 500

Prepared = tuple[bytes, frozenset[str]]  # the whole HTTP/1.1 request, DUIS codes expected


class SharedDataMissing(Exception):
    """../shared (the DCC's public samples and XSDs) is not where the bench looks."""


def find_shared(explicit: Path | None = None) -> Path:
    candidate = explicit or Path(os.environ.get(SHARED_ENV) or PROJECT_ROOT.parent / "shared")
    if not (candidate / SAMPLES).is_dir():
        raise SharedDataMissing(
            f"DUIS sample requests not found at {candidate / SAMPLES}: the bench needs the "
            f"shared test data beside the project (or its path in ${SHARED_ENV})"
        )
    return candidate


@dataclass(frozen=True)
class Template:
    name: str
    xml: bytes
    version: str
    command_variant: int
    originator: str


def load_templates(
    shared: Path, variants: frozenset[int], rewrite_versions: bool
) -> list[Template]:
    """The sample requests with these CommandVariants, in file-name order.

    Unless versions are rewritten, a template whose own version is not served (the
    5.2 sample) is left out: the gateway would refuse it with HTTP 400.
    """
    templates = []
    for path in sorted((shared / SAMPLES).glob("*.XML")):
        xml = path.read_bytes()
        header = decode_header(parse_xml(xml))
        if header.command_variant not in variants:
            continue
        if header.service_reference_variant == RETURN_LOCAL_COMMAND_RESPONSE:
            continue  # it answers one local command, once: not a request to repeat
        if not rewrite_versions and header.schema_version not in SERVED_VERSIONS:
            continue
        templates.append(
            Template(
                path.stem,
                xml,
                header.schema_version,
                header.command_variant,
                header.request_id.originator,
            )
        )
    if not templates:
        raise ValueError(f"no sample request in {shared / SAMPLES} has CV {sorted(variants)}")
    return templates


def expected_codes(command_variant: int) -> frozenset[str]:
    if command_variant in ASYNC_VARIANTS:
        return frozenset({"I99"})
    return frozenset({"I0"})  # CV 2/6 local commands, CV 4 Pre-Commands, CV 8: no device


def with_version(xml: bytes, version: str) -> bytes:
    return re.sub(rb'schemaVersion="[^"]*"', f'schemaVersion="{version}"'.encode(), xml, count=1)


# ------------------------------------------------------------------ bench estate


def slot_user_id(original: str, slot: int) -> str:
    """Slot 0 is the real User ID; slot k clones it under a prefix no estate ID uses."""
    if slot == 0:
        return original
    octets = original.split("-")
    # Octets 6 and 8 tell the default estate's User IDs apart (30-01-00-00, 30-01-00-08).
    tag = int(octets[5], 16) ^ int(octets[7], 16)
    return f"90-B3-D5-1F-3B-{tag:02X}-{slot >> 8:02X}-{slot & 255:02X}"


def add_slot_users(
    state_dir: Path, originals: Sequence[str], slots: int, now: dt.datetime
) -> tuple[Path, Path]:
    """Clone `originals` once per slot into users.json/inventory.json and the dev PKI.

    Returns the new users and inventory files (JSON: the registry reads it, and the
    standard library writes no TOML).
    """
    users = load_users(state_dir / "users.toml")
    inventory = load_inventory(state_dir / "inventory.toml")
    cert_roles = {u.eui64: (u.label, u.role_code) for u in dev_users()}
    clones = {o: [slot_user_id(o, k) for k in range(1, slots)] for o in originals}
    every = [i for ids in clones.values() for i in ids]
    if len(set(every)) != len(every) or any(users.get(i) is not None for i in every):
        raise ValueError("slot User IDs collide with each other or with the estate")
    user_list = list(users)
    for original, ids in clones.items():
        user = users.get(original)
        if user is None or original not in cert_roles:
            raise ValueError(f"template originator {original} is not a default-estate User")
        user_list += [msgspec.structs.replace(user, user_id=i) for i in ids]
    devices = []
    for device in inventory:
        extra = [
            msgspec.structs.replace(entry, user_id=clone)
            for entry in device.eligibility
            for clone in clones.get(entry.user_id, ())
        ]
        eligibility = device.eligibility + tuple(extra)
        devices.append(msgspec.structs.replace(device, eligibility=eligibility))
    users_file, inventory_file = state_dir / "users.json", state_dir / "inventory.json"
    users_file.write_bytes(msgspec.json.encode(UsersFile(tuple(user_list))))
    inventory_file.write_bytes(msgspec.json.encode(InventoryFile(tuple(devices))))
    pki_users = [
        DevUser(eui64=clone, label=f"bench-{cert_roles[o][0]}-{k}", role_codes=(cert_roles[o][1],))
        for o, ids in clones.items()
        for k, clone in enumerate(ids, start=1)
    ]
    generate_dev_pki(state_dir / "pki", pki_users, DCC_EUI64, now)
    return users_file, inventory_file


def write_bench_config(
    default_config: Path,
    users: Path,
    inventory: Path,
    *,
    xsd_dir: Path | None,
    tls_slots: list[list[str]] | None,
    admin_ports: int = 1,
    rules: Path | None = None,
    synchronous: str = "full",
    limits: dict[str, float] | None = None,
    overrides: Sequence[str] = (),
) -> Path:
    """bench.toml beside the default config: free ports, the slot estate, XSD and TLS,
    the one hub's queue deep enough for a run (BENCH_HUB_QUEUE).

    Starts from the default file's own values, so whatever the default turns on
    (threshold rules, versions) is benchmarked too. `tls_slots` (one list of User IDs
    per connection) turns on mutual TLS: each connection presents the certificate of its
    first User ID, which `tls.identities` lets speak for all of them.
    """
    config = tomllib.loads(default_config.read_text())
    admin = free_ports(admin_ports)
    duis = free_ports(1)
    while admin <= duis < admin + admin_ports:  # probes are closed: the kernel may repeat one
        duis = free_ports(1)
    config["admin"]["port"], config["listen"]["port"] = admin, duis
    config["registry"]["users_file"] = str(users)
    config["registry"]["inventory_file"] = str(inventory)
    if xsd_dir is not None:
        config["duis"]["xsd_dir"] = str(xsd_dir)
    if rules is not None:
        config["thresholds"]["rules_file"] = str(rules.resolve())
    config["storage"] = {"synchronous": synchronous}
    simulator = config.setdefault("simulator", {})
    simulator["queue_limits"] = {
        "max_queued_per_class": BENCH_HUB_QUEUE,
        "max_queued_per_user_per_class": BENCH_HUB_QUEUE,
    }
    if limits:
        config["limits"] = dict(limits)  # [limits] overrides (bench.soak)
    for override in overrides:
        apply_override(config, override)
    if tls_slots is not None:
        tls_dir = default_config.parent / "pki" / TLS_SUBDIRECTORY
        config["tls"] = {
            "certificate": str(tls_dir / f"{TLS_SERVER_NAME}.cert.pem"),
            "private_key": str(tls_dir / f"{TLS_SERVER_NAME}.key.pem"),
            "client_ca": str(tls_dir / f"{TLS_CA_NAME}.cert.pem"),
            "identities": {ids[0].replace("-", ""): ids for ids in tls_slots},
        }
    path = default_config.with_name("bench.toml")
    path.write_text(toml_text(config))
    return path


def apply_override(config: dict[str, object], override: str) -> None:
    """`section.key=VALUE` (VALUE in TOML: `"text"`, `3`, `true`, `[1, 2]`) set in `config`.

    The switch for what the bench does not model itself, e.g. a device transport or
    receiver outside the gateway's process once the config can name one.
    """
    path, separator, text = override.partition("=")
    keys = path.strip().split(".")
    if not separator or not all(keys):
        raise ValueError(f"override {override!r} is not section.key=VALUE")
    try:
        value = tomllib.loads(f"value = {text.strip()}")["value"]
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"override {override!r}: VALUE is not TOML ({exc})") from None
    table = config
    for key in keys[:-1]:
        inner = table.setdefault(key, {})
        if not isinstance(inner, dict):
            raise ValueError(f"override {override!r}: {key} is not a table")
        table = inner
    table[keys[-1]] = value


def point_users_at(users_file: Path, response_url: str) -> None:
    """Every User's Receive Response URL set to `response_url` (a receiver the bench runs
    outside the gateway's process, instead of the dev inbox inside it)."""
    users = msgspec.json.decode(users_file.read_bytes(), type=UsersFile)
    replaced = [msgspec.structs.replace(u, response_url=response_url) for u in users.users]
    users_file.write_bytes(msgspec.json.encode(UsersFile(tuple(replaced))))


def toml_text(table: dict[str, object], prefix: str = "") -> str:
    """TOML for a config: scalars and arrays of scalars, nested tables (no writer in stdlib)."""
    scalars = [
        f"{_toml_value(k)} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)
    ]
    parts = ["\n".join(scalars) + "\n" if scalars else ""]
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}{_toml_key(key)}"
            parts.append(f"\n[{name}]\n" + toml_text(value, name + "."))
    return "".join(parts)


def _toml_key(key: str) -> str:
    """A table name's part: bare if TOML allows it, else quoted (`"Single Band"`)."""
    return (
        key
        if key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
        else (msgspec.json.encode(key).decode())
    )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML here")


# ------------------------------------------------------------------ signing

SigningKey = tuple[bytes, str, int]  # PEM private key, X509IssuerName, serial


def signing_keys(pki: Path, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], SigningKey]:
    """The key each (User ID, version) signs with, by the version's rule (as `duisgw send`).

    One certificate store load for all pairs: `gateway.devkit.client.sign_request` loads the
    store per call (milliseconds), which is fine for one request and not for 50,000.
    """
    store = load_certstore([pki])
    keys = {}
    for eui, version in pairs:
        allowed = load_catalogue(version).signer_role_codes
        roles = [r for r in (USER_XML_SIGNING_ROLE_CODE, *ROLE_CERTIFICATE_CODES) if r in allowed]
        keys[(eui, version)] = _first_key(store, eui, roles)
    return keys


def _first_key(store: CertStore, eui: str, roles: Sequence[str]) -> SigningKey:
    for role in roles:
        for cert in store.find(eui, role, "digitalSignature"):
            key_file = cert.path.with_name(cert.path.name.removesuffix(".cert.pem") + ".key.pem")
            if key_file.is_file():
                issuer = cert.certificate.issuer.rfc4514_string()
                return key_file.read_bytes(), issuer, cert.serial
    raise ValueError(f"no signing key for {eui} with role {'/'.join(roles)}")


# Set in each worker by _init_worker (and in the parent when signing sequentially).
_documents: list[bytes] = []
_keys: dict[tuple[str, str], SigningKey] = {}
_loaded: dict[tuple[str, str], ec.EllipticCurvePrivateKey] = {}

Job = tuple[int, str, str, int]  # document index, originator, version, counter


def _init_worker(documents: list[bytes], keys: dict[tuple[str, str], SigningKey]) -> None:
    global _documents, _keys
    _documents, _keys = documents, keys
    _loaded.clear()


def _sign_chunk(jobs: list[Job]) -> list[bytes]:
    signed = []
    for index, originator, version, counter in jobs:
        pem, issuer, serial = _keys[(originator, version)]
        key = _loaded.get((originator, version))
        if key is None:
            loaded = serialization.load_pem_private_key(pem, password=None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)
            key = _loaded[(originator, version)] = loaded
        root, _ = prepare(_documents[index], counter=counter, originator=originator)
        signed.append(sign_document(root, key, issuer, serial))
    return signed


# ------------------------------------------------------------------ corpus


@dataclass(frozen=True)
class Corpus:
    slots: list[list[Prepared]]
    size: int
    async_share: float
    build_seconds: float
    sign_processes: int
    templates: tuple[str, ...]
    versions: tuple[str, ...]


def build_corpus(
    templates: Sequence[Template],
    pki: Path,
    *,
    slots: int,
    total: int,
    versions: Sequence[str] | None = None,
    counter_base: int | None = None,
    processes: int = 2,
    max_async: int = MAX_ASYNC_PER_RUN,
) -> Corpus:
    """`total` signed requests dealt round-robin to `slots`, counters increasing along each.

    Templates alternate asynchronous/synchronous in their natural proportion until
    `max_async` asynchronous requests are drawn, then only synchronous ones follow (a
    time-limited run sends the front of the corpus, so it keeps the natural mix). With
    `versions`, each pass over the templates rewrites schemaVersion to the next version.
    """
    started = time.perf_counter()
    base = counter_base if counter_base is not None else time.time_ns() // 1000
    groups = (
        [t for t in templates if t.command_variant in ASYNC_VARIANTS],
        [t for t in templates if t.command_variant not in ASYNC_VARIANTS],
    )
    share = len(groups[0]) / len(templates)
    chosen_versions = tuple(versions) if versions else ()
    documents: dict[tuple[str, str], int] = {}
    doc_list: list[bytes] = []
    paths: list[bytes] = []
    expected: list[frozenset[str]] = []
    jobs: list[Job] = []
    drawn = [0, 0]
    for i in range(total):
        group = 0 if int((i + 1) * share) > int(i * share) else 1
        if group == 0 and drawn[0] >= max_async:
            group = 1
        if not groups[group]:
            group = 1 - group
        n = drawn[group]
        drawn[group] += 1
        template = groups[group][n % len(groups[group])]
        version = (
            chosen_versions[(n // len(groups[group])) % len(chosen_versions)]
            if chosen_versions
            else template.version
        )
        index = documents.get((template.name, version))
        if index is None:
            index = documents[(template.name, version)] = len(doc_list)
            xml = with_version(template.xml, version)
            header = decode_header(parse_xml(xml))
            doc_list.append(xml)
            paths.append(
                endpoint_path(
                    version, header.service_reference_variant, header.command_variant
                ).encode()
            )
            expected.append(expected_codes(template.command_variant))
        jobs.append((index, slot_user_id(template.originator, i % slots), version, base + i))
    keys = signing_keys(pki, {(originator, version) for _, originator, version, _ in jobs})
    chunks = [jobs[i : i + POOL_CHUNK] for i in range(0, total, POOL_CHUNK)]
    used = processes if total >= POOL_THRESHOLD and processes > 1 else 1
    if used > 1:
        # fork: the workers inherit the imports and start in milliseconds. They only
        # sign; an idle trio cache thread left by an earlier run holds no lock they use.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(used, context, _init_worker, (doc_list, keys)) as pool:
            bodies = [body for chunk in pool.map(_sign_chunk, chunks) for body in chunk]
    else:
        _init_worker(doc_list, keys)
        bodies = [body for chunk in chunks for body in _sign_chunk(chunk)]
    dealt: list[list[Prepared]] = [[] for _ in range(slots)]
    for i, (job, body) in enumerate(zip(jobs, bodies, strict=True)):
        dealt[i % slots].append((http_request(paths[job[0]], body), expected[job[0]]))
    n_async = sum(1 for job in jobs if "I99" in expected[job[0]])
    return Corpus(
        slots=dealt,
        size=total,
        async_share=n_async / total if total else 0.0,
        build_seconds=time.perf_counter() - started,
        sign_processes=used,
        templates=tuple(t.name for t in templates),
        versions=chosen_versions or tuple(sorted({t.version for t in templates})),
    )


def http_request(path: bytes, body: bytes) -> bytes:
    """The whole request as the wire carries it: the client only has to send it."""
    return (
        b"POST " + path + b" HTTP/1.1\r\nhost: duisgw\r\ncontent-type: application/xml\r\n"
        b"content-length: %d\r\n\r\n" % len(body)
    ) + body
