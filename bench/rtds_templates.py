"""The DCC's RTDS request templates against a real gateway on the embedded default.

    python -m bench.rtds_templates [--pki dev|dccboxed] [--package-dir DIR]
                                   [--set SECTION.KEY=VALUE] [--json]

The templates are the npm package @smartdcc/duis-templates 0.7.0 (the Reference Test
Data Set's DUIS requests, as DCC Boxed uses them). Its data is GPL: it is never part of
this project. `--package-dir` names an unpacked copy; otherwise `npm pack` fetches the
tarball into a temporary directory, which is removed afterwards.

Every `*_REQUEST_DUIS.XML` under the package's `templates/` is signed as `duisgw send`
signs it (gateway/devkit/client.py `sign_request`: the placeholder signature replaced, a
fresh increasing RequestID counter, the originator's key under the version's rule) and
posted to the endpoint its CommandVariant belongs on, one at a time, to a `duisgw serve`
subprocess on a fresh embedded default (`--pki dccboxed`: trusting the DCC's test PKI in
../shared/pki/dccboxed and signing with its keys, README "Pointing the gateway at the
DCC's test PKI"; `--set`: any other config key, e.g. a coverage database). The report
counts the answers (DUIS code, or HTTP status and reason; "not sent" when `duisgw send`
would find no signing key) and lists every template not answered I0 or I99, with the
reason the gateway logged for refusing it where it logged one.

An 8.13 Return Local Command Response answers a command issued for local delivery:
alone it matches none (E081301). So before the templates, for each 8.13 whose
OriginalRequestID is the RequestID of a CV 4 template, that CV 4 is sent with its own
counter, its Pre-Command signed with the originator's role key (`duisgw pc correlate
--sign-with`) and sent back as the CV 6 (command for local delivery) it asks for. These
preparation requests are reported apart; the CV 4 template is also sent in its turn.

Exit status: 0 when the run completed (whatever the answers), 1 if the gateway failed to
start or stop, 2 if the templates or the shared data cannot be had (with the reason).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final, Literal

import httpx
import msgspec
from lxml import etree

from bench import corpus as corpus_mod
from bench.gateway_process import GatewayFailed, GatewayProcess
from gateway.core.ingest import SR_NS, decode_header, parse_xml
from gateway.core.local_commands import RETURN_LOCAL_COMMAND_RESPONSE
from gateway.devkit.client import ROLE_CERTIFICATE_CODES, ClientError, fresh_counter, sign_request
from gateway.devkit.default import ensure_default_state
from gateway.stores.certfiles import SigningKeyNotFoundError, find_signing_key
from mmc.identifiers import IdentifierError, RequestId, parse_request_id
from parse_correlate.correlate import sign_pre_command
from parse_correlate.gbcs import parse_message
from parse_correlate.gbcs_bytes import GbcsError
from parse_correlate.gbcs_codes import message_code_name
from parse_correlate.inputs import read_request
from parse_correlate.precommand_report import signed_pre_command_request

PACKAGE: Final = "@smartdcc/duis-templates@0.7.0"
TEMPLATE_SUFFIX: Final = "_REQUEST_DUIS.XML"
NPM_TIMEOUT_SECONDS: Final = 180
POST_TIMEOUT_SECONDS: Final = 60.0
ACCEPTED: Final = frozenset({"I0", "I99"})
DCCBOXED_PKI: Final = Path("pki/dccboxed")
DSP_NAME: Final = "dsp-xml-sign-90B3D51F30000002-ds"
DCCBOXED_ANCHOR: Final = "Z1-issuing-ca.cert.pem"
LOCAL_DELIVERY_CV: Final = 6
# The GBCS use case at the head of a template's file name (the package's parseFileTag).
USE_CASE_TAG: Final = re.compile(r"([A-Z]+\d+(?:(?:[a-z]|[A-Z]{1,2})\d?)?|CCS05CCS04)")

Pki = Literal["dev", "dccboxed"]


class TemplatesUnavailable(Exception):
    """The package cannot be had (npm missing, offline, a bad directory); says why."""


class Answer(msgspec.Struct, kw_only=True):
    """What one request got."""

    template: str
    srv: str
    command_variant: int
    originator: str
    endpoint: str | None  # None: not sent
    request_id: str = ""  # as sent (fresh counter)
    http_status: int | None = None
    code: str | None = None  # the DUIS ResponseCode of a 200 answer
    detail: str = ""  # the body of a non-200 answer, or why the request was not sent
    reason: str = ""  # the gateway's logged refusal (stage: reason) for an error code

    @property
    def outcome(self) -> str:
        """The answer's class: `I0`, `E4`, `HTTP 403 signature: bad_key_info`, `not sent`."""
        if self.endpoint is None:
            return "not sent"
        if self.http_status == 200 and self.code:
            return self.code
        reason = ": ".join(part.strip() for part in self.detail.split(":")[:2])
        return f"HTTP {self.http_status} {reason}".strip()


class Row(msgspec.Struct):
    outcome: str
    count: int


class Report(msgspec.Struct, kw_only=True):
    package: str
    pki: str
    templates_found: int
    accepted: int  # answered I0 or I99
    outcomes: list[Row]  # every outcome with its count, most frequent first
    not_accepted: list[Answer]  # every template not answered I0/I99, with its answer
    preparation: list[Answer]  # the CV 4 and CV 6 sent before an 8.13 (not counted)
    gateway_exit_code: int | None


# ------------------------------------------------------------------ the package


def fetch_package(directory: Path) -> Path:
    """`npm pack` of the package into `directory`, unpacked there; its `package/` dir."""
    try:
        done = subprocess.run(
            ["npm", "pack", PACKAGE, "--silent"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise TemplatesUnavailable(
            f"npm is not installed: it fetches {PACKAGE} (or give --package-dir DIR, "
            "an unpacked copy of the package)"
        ) from None
    except subprocess.TimeoutExpired:
        raise TemplatesUnavailable(
            f"`npm pack {PACKAGE}` did not finish in {NPM_TIMEOUT_SECONDS} s (offline?)"
        ) from None
    tarballs = sorted(directory.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        reason = (done.stderr or done.stdout).strip()[-1500:] or f"exit {done.returncode}"
        raise TemplatesUnavailable(f"`npm pack {PACKAGE}` failed (offline?): {reason}")
    try:
        with tarfile.open(tarballs[0]) as tarball:
            tarball.extractall(directory, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise TemplatesUnavailable(f"cannot unpack {tarballs[0].name}: {exc}") from None
    return directory / "package"


def find_templates(package_dir: Path) -> list[Path]:
    """Every request template of the package (`templates/**/*_REQUEST_DUIS.XML`, as the
    package's own loader globs), in name order."""
    root = template_root(package_dir)
    found = sorted(
        (p for p in root.rglob("*") if p.is_file() and p.name.upper().endswith(TEMPLATE_SUFFIX)),
        key=lambda p: (p.name, str(p)),
    )
    if not found:
        raise TemplatesUnavailable(f"no *{TEMPLATE_SUFFIX} under {root}")
    return found


def template_root(package_dir: Path) -> Path:
    """The package's `templates/` (or `package_dir` itself if it has none)."""
    if not package_dir.is_dir():
        raise TemplatesUnavailable(f"{package_dir} is not a directory")
    root = package_dir / "templates"
    return root if root.is_dir() else package_dir


@contextlib.contextmanager
def package_directory(explicit: Path | None) -> Iterator[Path]:
    """`explicit`, or the package fetched into a temporary directory removed afterwards."""
    if explicit is not None:
        yield explicit
        return
    with tempfile.TemporaryDirectory(prefix="duis-templates-") as tmp:
        yield fetch_package(Path(tmp))


# ------------------------------------------------------------------ the gateway


def prepare_state(
    state: Path, pki: Pki, shared: Path | None, settings: Sequence[str] = ()
) -> tuple[Path, list[Path]]:
    """The embedded default in `state` on free ports (`--pki dccboxed`: trusting the DCC's
    test PKI and signing with its DSP key; `settings`: `section.key=VALUE` overrides),
    and the key directories the Users sign from."""
    default_config = ensure_default_state(state, dt.datetime.now(dt.UTC))
    overrides: list[str] = []
    key_dirs = [state / "pki"]
    if pki == "dccboxed":
        if shared is None:
            raise TemplatesUnavailable("--pki dccboxed needs the shared data (../shared)")
        boxed = (shared / DCCBOXED_PKI).resolve()
        if not (boxed / f"{DSP_NAME}.cert.pem").is_file():
            raise TemplatesUnavailable(f"the DCC's test PKI is not at {boxed}")
        overrides = [
            f'trust.certificate_dirs=["{boxed}"]',
            f'trust.ca_anchors=["{boxed / DCCBOXED_ANCHOR}"]',
            f'trust.dcc_signing_certificate="{boxed / DSP_NAME}.cert.pem"',
            f'trust.dcc_signing_key="{boxed / DSP_NAME}.key.pem"',
        ]
        key_dirs = [boxed]
    config = corpus_mod.write_bench_config(
        default_config,
        state / "users.toml",
        state / "inventory.toml",
        xsd_dir=None,
        tls_slots=None,
        overrides=[*overrides, *settings],
    )
    return config, key_dirs


class Sender:
    """Signs as `duisgw send` does and posts, counters increasing across the run."""

    def __init__(self, url: str, key_dirs: Sequence[Path]) -> None:
        self.url = url
        self.key_dirs = list(key_dirs)
        self.client = httpx.Client(timeout=POST_TIMEOUT_SECONDS)
        self._last = 0

    def counter(self) -> int:
        self._last = max(fresh_counter(), self._last + 1)
        return self._last

    def send(self, name: str, xml: bytes, counter: int | None = None) -> tuple[Answer, bytes]:
        """Sign (fresh counter unless given) and post; the answer and its body."""
        header = decode_header(parse_xml(xml))
        answer = Answer(
            template=name,
            srv=header.service_reference_variant,
            command_variant=header.command_variant,
            originator=header.request_id.originator,
            endpoint=None,
        )
        counter = self.counter() if counter is None else counter
        sent = header.request_id
        answer.request_id = str(RequestId(sent.originator, sent.target, counter))
        try:
            body, path = sign_request(xml, self.key_dirs, counter=counter)
        except ClientError as exc:
            answer.detail = str(exc)
            return answer, b""
        answer.endpoint = path
        try:
            got = self.client.post(
                self.url + path, content=body, headers={"content-type": "application/xml"}
            )
        except httpx.HTTPError as exc:
            answer.detail = f"transport: {type(exc).__name__}: {exc}"
            answer.http_status = 0
            return answer, b""
        answer.http_status = got.status_code
        if got.status_code == 200:
            answer.code = response_code(got.content)
        else:
            answer.detail = got.text.strip()[:500]
        return answer, got.content

    def close(self) -> None:
        self.client.close()


def response_code(body: bytes) -> str | None:
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return None
    code = root.find(f"{{{SR_NS}}}Header/{{{SR_NS}}}ResponseCode")
    if code is None:
        code = root.find(".//{*}ResponseCode")
    return code.text.strip() if code is not None and code.text else None


# ------------------------------------------------------------------ 8.13 preparation


def _request_id(xml: bytes) -> RequestId | None:
    try:
        return decode_header(parse_xml(xml)).request_id
    except Exception:  # a template the gateway will refuse itself: no preparation
        return None


def _returned(xml: bytes) -> tuple[RequestId, str | None] | None:
    """An 8.13's OriginalRequestID and the GBCS use case of the response it returns."""
    root = parse_xml(xml)
    returned = f".//{{{SR_NS}}}ReturnLocalCommandResponse/{{{SR_NS}}}"
    text = root.findtext(returned + "OriginalRequestID")
    if not text:
        return None
    try:
        original = parse_request_id(text.strip())
    except IdentifierError:
        return None
    use_case = None
    with contextlib.suppress(ValueError, GbcsError):
        gbcs = base64.b64decode(root.findtext(returned + "DeviceGBCSResponse") or "")
        use_case = message_code_name(parse_message(gbcs).header.message_code)
    return original, use_case


def _use_case(name: str) -> str | None:
    """The GBCS use case a template's file name starts with (the package's file tag)."""
    found = USE_CASE_TAG.match(name)
    return found.group(1) if found else None


def local_commands_to_open(templates: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """The CV 4 template each 8.13 template answers, in counter order: its RequestID is
    the 8.13's OriginalRequestID (several templates share one), preferring the one whose
    file tag names the GBCS use case of the returned response, then one without an
    ExecutionDateTime (a local command is delivered at once), then by name."""
    wanted: list[tuple[str, bytes]] = []
    for xml in templates.values():
        header = _safe_header(xml)
        returned = _returned(xml) if header == (RETURN_LOCAL_COMMAND_RESPONSE, 8) else None
        if returned is None:
            continue
        original, use_case = returned
        matches = [
            (name, candidate)
            for name, candidate in templates.items()
            if (_safe_header(candidate) or ("", 0))[1] == 4 and _request_id(candidate) == original
        ]
        matches.sort(
            key=lambda m: (
                use_case is None or _use_case(m[0]) != use_case,
                b"ExecutionDateTime>" in m[1],
                m[0],
            )
        )
        if matches and matches[0] not in wanted:
            wanted.append(matches[0])
    return sorted(wanted, key=lambda m: (_request_id(m[1]) or RequestId("", "", 0)).counter)


def _safe_header(xml: bytes) -> tuple[str, int] | None:
    try:
        header = decode_header(parse_xml(xml))
    except Exception:
        return None
    return header.service_reference_variant, header.command_variant


def open_local_command(sender: Sender, name: str, xml: bytes) -> list[Answer]:
    """The CV 4 with its own counter, its Pre-Command signed with the originator's role
    key, and the CV 6 that issues it for local delivery (as `duisgw pc correlate
    --sign-with KEY --command-variant 6` then `duisgw send --keep-counter`)."""
    request_id = _request_id(xml)
    assert request_id is not None
    cv4, pre = sender.send(f"{name} (CV 4, own counter)", xml, counter=request_id.counter)
    answers = [cv4]
    payload = _pre_command_payload(pre) if cv4.code == "I0" else None
    if payload is None:
        return answers
    cv6_name = f"{name} (as CV {LOCAL_DELIVERY_CV})"
    key = None
    for role in ROLE_CERTIFICATE_CODES:
        with contextlib.suppress(SigningKeyNotFoundError):
            _, key = find_signing_key(sender.key_dirs, request_id.originator, role)
            break
    if key is None:
        answers.append(
            Answer(
                template=cv6_name,
                srv=cv4.srv,
                command_variant=LOCAL_DELIVERY_CV,
                originator=request_id.originator,
                endpoint=None,
                detail=f"no role signing key for {request_id.originator} to sign the Pre-Command",
            )
        )
        return answers
    signed = sign_pre_command(payload, key)
    cv6 = signed_pre_command_request(read_request(xml, name), signed, LOCAL_DELIVERY_CV)
    answers.append(sender.send(cv6_name, cv6, counter=request_id.counter)[0])
    return answers


def _pre_command_payload(body: bytes) -> bytes | None:
    try:
        root = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return None
    text = root.findtext(".//{*}PreCommand/{*}GBCSPayload")
    return base64.b64decode(text) if text else None


# ------------------------------------------------------------------ the run


def check_templates(
    package_dir: Path,
    pki: Pki = "dev",
    shared: Path | None = None,
    label: str | None = None,
    settings: Sequence[str] = (),
) -> Report:
    """Every template of the package through a fresh `duisgw serve`; the report (`label`
    names the package in it, default its directory; `settings` change the embedded
    default's config, `section.key=VALUE`)."""
    paths = find_templates(package_dir)
    root = template_root(package_dir)
    # By path under templates/ (the package keeps them in one directory: the file name).
    templates = {path.relative_to(root).as_posix(): path.read_bytes() for path in paths}
    state = Path(tempfile.mkdtemp(prefix="duisgw-rtds-"))
    try:
        config, key_dirs = prepare_state(state, pki, shared, settings)
        gateway = GatewayProcess.start(config, workers=1, cores=None, profile=None)
        try:
            gateway.wait_ready()
            sender = Sender(f"http://127.0.0.1:{gateway.duis_port}", key_dirs)
            try:
                preparation = [
                    answer
                    for name, xml in local_commands_to_open(templates)
                    for answer in open_local_command(sender, name, xml)
                ]
                answers = [_send_template(sender, name, xml) for name, xml in templates.items()]
            finally:
                sender.close()
        finally:
            exit_code = gateway.stop()
        if exit_code != 0:
            raise GatewayFailed(f"gateway exited {exit_code}:\n{gateway.log_tail()}")
        refusals = logged_refusals(gateway.log_path)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    for answer in [*preparation, *answers]:
        if answer.outcome not in ACCEPTED:
            answer.reason = refusals.get(answer.request_id, "")
    counts = Counter(answer.outcome for answer in answers)
    return Report(
        package=label or str(package_dir),
        pki=pki,
        templates_found=len(paths),
        accepted=sum(counts[code] for code in ACCEPTED),
        outcomes=[Row(o, n) for o, n in sorted(counts.items(), key=lambda i: (-i[1], i[0]))],
        not_accepted=[a for a in answers if a.outcome not in ACCEPTED],
        preparation=preparation,
        gateway_exit_code=exit_code,
    )


def logged_refusals(log: Path) -> dict[str, str]:
    """`stage: reason` of each request the gateway refused, by RequestID, from its JSON
    log (`duisgw.pipeline` "refused" events; the last one of a RequestID wins)."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in log.read_bytes().splitlines():
            if b'"refused"' not in line:
                continue
            try:
                event = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(event, dict) and event.get("event") == "refused":
                request_id = str(event.get("request_id", ""))
                found[request_id] = f"{event.get('stage', '?')}: {event.get('reason', '?')}"
    return found


def _send_template(sender: Sender, name: str, xml: bytes) -> Answer:
    try:
        return sender.send(name, xml)[0]
    except Exception as exc:  # not a DUIS request this client can prepare
        return Answer(
            template=name,
            srv="?",
            command_variant=0,
            originator="?",
            endpoint=None,
            detail=f"cannot prepare: {type(exc).__name__}: {exc}",
        )


def format_report(report: Report) -> str:
    lines = [
        f"package        {report.package}",
        f"PKI            {report.pki}",
        f"templates      {report.templates_found} found, {report.accepted} answered I0/I99",
        "answers:",
        *(f"  {row.count:>5}  {row.outcome}" for row in report.outcomes),
    ]
    if report.preparation:
        lines.append("before the 8.13 (opening the local command it answers; not counted):")
        lines += [f"  {_answer_line(a)}" for a in report.preparation]
    lines.append(f"not answered I0/I99 ({len(report.not_accepted)}):")
    lines += [f"  {_answer_line(a)}" for a in report.not_accepted] or ["  none"]
    lines.append(f"gateway exit   {report.gateway_exit_code}")
    return "\n".join(lines)


def _answer_line(answer: Answer) -> str:
    why = "; ".join(x for x in (answer.reason, answer.detail) if x)
    detail = f" ({why})" if why else ""
    return (
        f"{answer.template}: SRV {answer.srv} CV {answer.command_variant} from "
        f"{answer.originator} on {answer.endpoint or '-'}: {answer.outcome}{detail}"
    )


class _Once(logging.Filter):
    """Each message once: signing loads the key directory per request, and it logs the
    same refused certificate files (the DCC's test PKI holds a few) every time."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rtds_templates", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--pki", choices=("dev", "dccboxed"), default="dev")
    p.add_argument("--package-dir", type=Path, help="an unpacked package (default: npm pack)")
    p.add_argument("--shared", type=Path, help="the shared test data (default: ../shared)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change a key of the embedded default's config (VALUE in TOML), repeatable: "
        'e.g. techspec.coverage_file="/abs/coverage.toml"',
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    for setting in args.set:
        try:
            corpus_mod.apply_override({}, setting)
        except ValueError as exc:
            p.error(str(exc))  # exit 2
    handler = logging.StreamHandler()
    handler.addFilter(_Once())
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    started = time.monotonic()
    try:
        shared = corpus_mod.find_shared(args.shared) if args.pki == "dccboxed" else None
        with package_directory(args.package_dir) as package_dir:
            label = str(args.package_dir) if args.package_dir else f"{PACKAGE} (npm pack)"
            report = check_templates(package_dir, args.pki, shared, label, args.set)
    except (TemplatesUnavailable, corpus_mod.SharedDataMissing) as exc:
        print(f"rtds_templates: {exc}", file=sys.stderr)
        return 2
    except GatewayFailed as exc:
        print(f"rtds_templates: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        print(format_report(report))
        print(f"took {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
