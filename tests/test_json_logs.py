"""`--log-format json` through the hostile-case tables: one JSON object per line, each
refusal with its reason as a field, and nothing of the messages or keys in the log.

One real gateway (trusting the DCC's test PKI, its clock at 2024-06-01 when the
test certificates are valid) is sent every case of tests/test_signature_hostile.py's
table, every case of tests/test_gateway_refusals.py's, an admin request with a wrong
token, and a few requests it accepts (a CV 8 read, a CV 4 whose answer carries a
GBCS Pre-Command); its log is captured through the JSON formatter. The last test
runs `duisgw serve --log-format json` itself and reads its stderr.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import msgspec
import pytest
import trio
from lxml import etree

from bench.ports import free_ports
from gateway.core.clock import FixedClock
from gateway.edge.log_format import JsonFormatter
from tests.harness import dccboxed_config, next_counter, running_gateway
from tests.test_durability import start, write_config
from tests.test_signature_hostile import CASES, NOW, ROLES_51, SUPPLIER, Case, make_env

SAMPLES = "duis/samples"
INVENTORY = f"{SAMPLES}/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
CRITICAL = f"{SAMPLES}/requests/ECS44_7.3_SUCCESS_REQUEST_DUIS.XML"
REQUEST_ID_PREFIX = "90-B3-D5-1F-30-01-00-00:90-B3-D5-1F-30-00-00-02:"  # the table's
WRONG_TOKEN = "x" * 43
XML = "application/xml"
# Elements whose text the log may carry: Request and Response IDs, certificate serials.
IDENTIFIERS = frozenset({"RequestID", "ResponseID", "X509SerialNumber", "X509IssuerName"})
DS = "{http://www.w3.org/2000/09/xmldsig#}"


@dataclass
class Exchange:
    name: str
    status: int
    text: str
    log: str  # what the gateway logged while it handled this one


@dataclass
class Run:
    stream: io.StringIO
    exchanges: list[Exchange] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)  # every document posted or answered
    secrets: list[str] = field(default_factory=list)  # key material and tokens

    @property
    def log(self) -> str:
        return self.stream.getvalue()

    def record(self, name: str, status: int, text: str, since: int) -> None:
        self.exchanges.append(Exchange(name, status, text, self.log[since:]))

    def answered(self, name: str) -> Exchange:
        return next(e for e in self.exchanges if e.name == name)


def is_default(case: Case) -> bool:
    return case.at == NOW and case.signer == SUPPLIER and case.roles == ROLES_51


@pytest.fixture(scope="module")
def run(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The gateway's whole log (JSON) through both tables, captured once."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        result = Run(stream)
        tmp = tmp_path_factory.mktemp("json-logs")
        trio.run(_signature_table, shared_dir, tmp, result)
        trio.run(_gateway_table, shared_dir, tmp, result)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return result


async def _signature_table(shared: Path, tmp: Path, run: Run) -> None:
    """tests/test_signature_hostile.py's table, each case posted as it is built there."""
    env = make_env(shared, tmp / "devpki")
    pki = shared / "pki" / "dccboxed"
    config = dccboxed_config(tmp / "signature-state", shared)
    run.secrets += [_pem_body(p) for p in pki.glob("*.key.pem")]
    async with running_gateway(config, [pki], clock=FixedClock(NOW)) as gw:
        for case in CASES:
            if case.dev:  # the dev CRL is not this gateway's trust
                continue
            since = len(run.log)
            data = case.build(env)
            r = await gw.post("/api/v1/serviceD", data)
            run.record(case.name, r.status_code, r.text, since)
            run.sent += [data, r.content]


async def _gateway_table(shared: Path, tmp: Path, run: Run) -> None:
    """tests/test_gateway_refusals.py's cases, with XSD validation on, and a few more."""
    pki = shared / "pki" / "dccboxed"
    config = dccboxed_config(tmp / "gateway-state", shared)
    config = msgspec.structs.replace(
        config,
        duis=msgspec.structs.replace(config.duis, xsd_dir=str(shared / "duis/xsd")),
        limits=msgspec.structs.replace(config.limits, request_timeout_seconds=1.0),
    )
    run.secrets.append(_pem_body(Path(config.trust.dcc_signing_key)))
    async with running_gateway(config, [pki], clock=FixedClock(NOW)) as gw:
        run.secrets += [gw.admin_token, WRONG_TOKEN]

        async def post(name: str, path: str, body: bytes, content_type: str = XML) -> None:
            since = len(run.log)
            r = await gw.post(path, body, content_type)
            run.record(name, r.status_code, r.text, since)
            run.sent += [body, r.content]

        async def send(name: str, body: bytes, counter: int | None = None) -> None:
            since = len(run.log)
            r = await gw.send(body, counter=counter)
            run.record(name, r.status_code, r.text, since)
            run.sent += [body, r.content]

        inventory = (shared / INVENTORY).read_bytes()
        hostile = shared / SAMPLES / "hostile"
        await post("xxe", "/api/v1/serviceS", (hostile / "duis-xxe.xml").read_bytes())
        await post("not xml", "/api/v1/serviceS", b"<not xml")
        await post("json", "/api/v1/serviceS", b"<a/>", "application/json")
        await post("no endpoint", "/api/v1/serviceX", b"<a/>")
        await post("too large", "/api/v1/serviceD", b"<a>" + b"x" * 2_000_000 + b"</a>")
        await post("placeholder signature", "/api/v1/serviceD", inventory)
        invalid = (hostile / "ECS17b_4.1.1_REQUEST-schema-invalid.XML").read_bytes()
        await post("schema invalid", "/api/v1/serviceS", invalid)
        for version in ("6.0", "4.0"):
            old = inventory.replace(b'"5.4"', f'"{version}"'.encode())
            await send(f"version {version}", old)
        counter = next_counter()
        await send("accepted", inventory, counter)
        await send("replayed", inventory, counter)
        await send("critical", (shared / CRITICAL).read_bytes())  # I0 with a GBCS PreCommand
        since = len(run.log)
        r = await gw.client.get(gw.url + "/api/v1/serviceS")
        run.record("GET", r.status_code, r.text, since)
        since = len(run.log)
        denied = await gw.client.get(
            gw.admin_url + "/admin/status", headers={"authorization": f"Bearer {WRONG_TOKEN}"}
        )
        run.record("wrong admin token", denied.status_code, denied.text, since)
        assert (await gw.admin.get("/admin/status")).status_code == 200
        since = len(run.log)
        slow = await trio.open_tcp_stream("127.0.0.1", gw.addresses.duis[1])
        await slow.send_all(b"POST /api/v1/serviceS HTTP/1.1\r\nHost: x\r\nContent-Le")
        data = b""
        while chunk := await slow.receive_some(4096):
            data += chunk
        await slow.aclose()
        run.record("slow", int(data.split()[1]), data.decode(), since)


def _pem_body(path: Path) -> str:
    lines = path.read_text().splitlines()
    return "".join(line for line in lines if not line.startswith("-----"))


def records(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_every_line_is_one_json_object_with_the_common_keys(run: Run) -> None:
    lines = run.log.splitlines()
    assert len(lines) > len(CASES)
    for line in lines:
        record = json.loads(line)  # raises on anything that is not one JSON object
        assert isinstance(record, dict)
        assert {"time", "level", "logger", "event"} <= record.keys(), record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(record["time"]))
        assert record["level"] in ("debug", "info", "warning", "error", "critical")


def test_each_signature_refusal_is_one_line_with_its_reason_stage_request_id_and_serial(
    run: Run,
) -> None:
    checked = 0
    for case in CASES:
        if case.dev:
            continue
        exchange = run.answered(case.name)
        refused = [r for r in records(exchange.log) if r["event"] == "refused"]
        if exchange.status == 200:
            continue  # passed the signature checks under the table's version, 5.1
        stage, reason, _ = exchange.text.split(": ", 2)
        assert len(refused) == 1, (case.name, exchange.log)
        (record,) = refused
        assert (record["stage"], record["reason"], record["level"]) == (stage, reason, "info")
        assert record["logger"] == "duisgw.pipeline"
        if stage in ("signature", "certificate"):  # the header was read: it is named
            assert str(record["request_id"]).startswith(REQUEST_ID_PREFIX), case.name
        # The serial is logged wherever one is known: named by X509IssuerSerial, or read
        # from an embedded certificate (one that does not parse names none).
        names_one = "embedded X509Certificate is not a trusted" not in exchange.text
        if (stage == "certificate" and names_one) or reason in (
            "digest_mismatch",
            "signature_invalid",
        ):
            assert str(record["serial"]).isdigit(), (case.name, record)
        if is_default(case) and stage in ("signature", "certificate"):
            # The table's reason, unless the gateway's envelope check (ingest) came first.
            assert reason == case.reason, case.name
            checked += 1
    assert checked >= 25


def test_each_gateway_refusal_is_one_line_with_its_reason(run: Run) -> None:
    for name, status, reason in [
        ("xxe", 400, "dtd_forbidden"),
        ("not xml", 400, "malformed_xml"),
        ("placeholder signature", 403, "bad_digest_value"),
        ("schema invalid", 400, "schema_invalid"),
        ("version 6.0", 400, "unsupported_version"),
        ("version 4.0", 400, "unsupported_version"),
    ]:
        exchange = run.answered(name)
        assert (exchange.status, exchange.text.split(": ", 2)[1]) == (status, reason), name
        (record,) = [r for r in records(exchange.log) if r["event"] == "refused"]
        assert record["reason"] == reason
    for name, status in [("json", 415), ("no endpoint", 404), ("GET", 405), ("too large", 413)]:
        exchange = run.answered(name)
        assert exchange.status == status
        (record,) = [r for r in records(exchange.log) if r["event"] == "HTTP refusal"]
        assert record["status"] == status and record["reason"]
    (record,) = [r for r in records(run.answered("slow").log) if r["event"] == "request timeout"]
    assert record["status"] == 408 and record["peer"]
    (record,) = [r for r in records(run.answered("replayed").log) if r["event"] == "refused"]
    assert record["code"] == "E1" and record["reason"] and record["request_id"]
    exchange = run.answered("wrong admin token")
    (record,) = [r for r in records(exchange.log) if r["event"] == "admin refusal"]
    assert (exchange.status, record["status"], record["reason"]) == (401, 401, "wrong_token")
    skipped = [r for r in records(run.log) if r["event"] == "certificate refused"]
    assert any(str(r["file"]).endswith("mdr-ds.cert.pem") for r in skipped)


def test_no_message_content_or_key_material_is_logged(run: Run) -> None:
    log = run.log
    assert "-----BEGIN" not in log and "PRIVATE KEY" not in log
    for secret in run.secrets:
        assert secret and secret not in log
    for token in run.secrets:  # also no long piece of one (a key's base64 split over fields)
        assert not any(token[i : i + 24] in log for i in range(0, max(1, len(token) - 24), 8))
    assert not re.search(r"<[a-z]+:[A-Za-z]|xmlns", log)
    fragments: set[str] = set()
    for document in run.sent:
        try:
            root = etree.fromstring(document, etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError:
            continue
        for element in root.iter():
            text = (element.text or "").strip()
            name = etree.QName(element).localname if isinstance(element.tag, str) else ""
            # Identifiers are what the log is for; everything else long is content:
            # signature and digest values, GBCS payloads, values of the request.
            if len(text) >= 24 and name not in IDENTIFIERS:
                fragments.add(text[:24])
    assert len(fragments) > 20
    leaked = sorted(fragment for fragment in fragments if fragment in log)
    assert leaked == []


def test_serve_writes_only_json_lines_on_stderr(tmp_path: Path, shared_dir: Path) -> None:
    duis, admin = free_ports(), free_ports()
    config = write_config(tmp_path, duis, admin, receiver=9, latency=0.001)
    process = trio.run(start, config, admin, ["--config", str(config), "--log-format", "json"])
    try:
        unsigned = (shared_dir / INVENTORY).read_bytes()
        r = httpx.post(
            f"http://127.0.0.1:{duis}/api/v1/serviceD",
            content=unsigned,
            headers={"content-type": "application/xml"},
        )
        assert r.status_code == 403
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert process.stderr is not None
    lines = process.stderr.read().decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events if e["logger"] == "duisgw"][-3:] == [
        "listening",
        "draining",
        "stopped",
    ]
    refusal = next(e for e in events if e["event"] == "refused")
    assert refusal["stage"] in ("signature", "certificate") and refusal["reason"]


def test_a_start_up_failure_is_a_json_line_too(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[listen\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--config",
            str(config),
            "--log-format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    failure = json.loads(line)
    assert failure["level"] == "error" and failure["event"] == "config error"
    assert "not valid TOML" in failure["reason"]
    assert dt.datetime.fromisoformat(failure["time"].replace("Z", "+00:00")).tzinfo
