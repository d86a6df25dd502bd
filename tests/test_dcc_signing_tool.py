"""The DCC's own signing tool on both sides of the gateway.

DCC Boxed signs and checks DUIS with `dccboxed-signing-tool` (a Java tool, shipped as
`dist/tool.jar` in the npm package `@smartdcc/duis-sign-wrap`, GPL, fetched by .ci/run and
never kept in this repository). Every public sample request signed by it (with the DCC
test keys it carries) gets from the gateway the answer our own client's signature gets,
and every signed response the gateway returns passes the tool's own validation (its XSD
and signature check with the DSP certificate it carries).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import trio

from gateway.core.ingest import decode_header, parse_xml
from gateway.devkit.client import endpoint_path
from tests.conftest import needs
from tests.harness import dccboxed_config, response_code, running_gateway
from tests.test_gateway_samples import expected_codes, sample_files

JAR_VARIABLE = "DUISGW_DCC_SIGNING_TOOL_JAR"
TOOL_PACKAGE = "uk.co.smartdcc.boxed.xmldsig"
HOW = (
    "set DUISGW_DCC_SIGNING_TOOL_JAR to dist/tool.jar of `npm pack "
    "@smartdcc/duis-sign-wrap@0.1.2` (.ci/run does) and install a Java runtime"
)


@pytest.fixture(scope="module")
def tool() -> tuple[str, Path]:
    java = shutil.which("java")
    jar = Path(os.environ.get(JAR_VARIABLE, "/nonexistent"))
    needs(
        f"the DCC signing tool is not available: {HOW}"
        if java is None or not jar.is_file()
        else None
    )
    assert java is not None
    return java, jar


def run_tool(
    tool: tuple[str, Path], mode: str, document: bytes
) -> subprocess.CompletedProcess[bytes]:
    java, jar = tool
    return subprocess.run(
        [java, "-cp", str(jar), f"{TOOL_PACKAGE}.{mode}", "-"],
        input=document,
        capture_output=True,
        timeout=120,
        check=False,
    )


def tool_signed(tool: tuple[str, Path], files: list[Path]) -> dict[str, bytes]:
    """Each sample signed by the tool (a fresh counter each)."""

    def sign(path: Path) -> tuple[str, bytes]:
        done = run_tool(tool, "Sign", path.read_bytes())
        assert done.returncode == 0, (path.name, done.stderr.decode(errors="replace"))
        return path.name, done.stdout

    with ThreadPoolExecutor(max_workers=2) as pool:
        signed = dict(pool.map(sign, files))
    # The tool's counter comes from the clock: two signing at the same instant can get
    # the same one (a suite run on 2026-12-03 got 25 counters for 26 files), and the
    # replay rule is per originator whatever the target (a run on 2026-12-04 got E1 for
    # two targets of one originator on one counter). Such a file is signed again, alone.
    seen: set[tuple[str, int]] = set()
    for path in files:
        while (counter := originator_counter(signed[path.name])) in seen:
            signed[path.name] = sign(path)[1]
        seen.add(counter)
    return signed


def originator_counter(document: bytes) -> tuple[str, int]:
    request_id = decode_header(parse_xml(document)).request_id
    return request_id.originator, request_id.counter


async def test_the_dcc_tool_s_requests_get_their_answers_and_our_responses_pass_its_check(
    tmp_path: Path, shared_dir: Path, tool: tuple[str, Path]
) -> None:
    files = [p for p in sample_files(shared_dir) if expected_codes(p.read_bytes(), p.name)]
    assert len(files) >= 26  # every sample of a served version
    signed = await trio.to_thread.run_sync(tool_signed, tool, files)
    headers = {name: decode_header(parse_xml(document)) for name, document in signed.items()}
    ids = [(h.request_id.originator, h.request_id.counter) for h in headers.values()]
    assert len(set(ids)) == len(ids)  # a fresh counter for each, per originator
    # Signed two at a time: sent in counter order, as one User's counters must rise.
    files.sort(key=lambda p: headers[p.name].request_id.counter)
    answers: dict[str, bytes] = {}
    config = dccboxed_config(tmp_path, shared_dir)
    async with running_gateway(config, [shared_dir / "pki" / "dccboxed"]) as gateway:
        for path in files:
            document = signed[path.name]
            header = headers[path.name]
            route = endpoint_path(
                header.schema_version, header.service_reference_variant, header.command_variant
            )
            response = await gateway.post(route, document)
            assert response.status_code == 200, (path.name, response.text)
            code = response_code(response.content)
            assert code in expected_codes(path.read_bytes(), path.name), (path.name, code)
            if code == "I0":
                answers[path.name] = response.content
    assert len(answers) >= 10
    # The tool's check, on a sample of the signed answers (a JVM start each), and on one
    # answer altered after signing, which it must refuse (so its check is a real one).
    sample = dict(sorted(answers.items())[:: max(1, len(answers) // 5)])
    first = next(iter(sample.values()))
    sample["altered"] = first.replace(b"<sr:ResponseCode>I0<", b"<sr:ResponseCode>I99<", 1)
    assert sample["altered"] != first

    def check(item: tuple[str, bytes]) -> tuple[str, int, str]:
        done = run_tool(tool, "Validate", item[1])
        return item[0], done.returncode, done.stderr.decode(errors="replace")

    with ThreadPoolExecutor(max_workers=2) as pool:
        checked = await trio.to_thread.run_sync(lambda: list(pool.map(check, sample.items())))
    outcome = {name: rc for name, rc, _ in checked}
    assert outcome.pop("altered") != 0  # the altered answer fails the tool's check
    refused = [(name, rc, err[-300:]) for name, rc, err in checked if name != "altered" and rc]
    assert not refused, refused
    assert len(outcome) >= 5
