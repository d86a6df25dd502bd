"""Pre-Commands live beside the replay counters in the shared file, not in one process.

A CV 4's allowance carries the Pre-Command GBCS dispatch issued for it; the CV 5/6/7
takes both in one statement. So a restarted gateway, and any worker of several,
correlates the SignedPreCommand: tested with `kill -9` between CV 4 and CV 5 and with
`--workers 2`, both against a real `duisgw serve`.
"""

from __future__ import annotations

import base64
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
from lxml import etree

from bench.ports import free_ports
from gateway.core.replay_rules import Admission, ReplayGuard, ReplayVerdict
from gateway.devkit.client import sign_request
from gateway.stores.certfiles import find_signing_key
from gateway.stores.replay import SharedReplayGuard
from gateway.stores.replay_sqlite import ReplayDatabase
from mmc.identifiers import RequestId
from parse_correlate.correlate import sign_pre_command
from tests.harness import next_counter, response_code
from tests.test_durability import start, write_config
from tests.test_lifecycle_e2e import signed_pre_command_request
from tests.test_workers import wait_ready, worker_ports

SUP = "90-B3-D5-1F-30-01-00-00"
ESME = "00-DB-12-34-56-78-90-A0"
CV4 = "duis/samples/requests/ECS44_7.3_SUCCESS_REQUEST_DUIS.XML"
HEADERS = {"content-type": "application/xml"}
GBCS = b"\xdf\x09pre-command"


def rid(counter: int) -> RequestId:
    return RequestId(SUP, ESME, counter)


def test_the_model_hands_the_issued_pre_command_to_its_cv5_once() -> None:
    book = ReplayGuard()
    assert not book.record_pre_command(SUP, 10, GBCS)  # no CV 4 yet: nothing to attach to
    assert book.admit(rid(10), 4) == Admission(ReplayVerdict.FRESH)
    assert book.record_pre_command(SUP, 10, GBCS)
    assert book.admit(rid(10), 5) == Admission(ReplayVerdict.FRESH, GBCS)
    assert book.admit(rid(10), 5) == Admission(ReplayVerdict.REPLAYED)
    assert not book.record_pre_command(SUP, 10, GBCS)  # spent


async def test_any_guard_on_the_file_and_a_restarted_one_get_the_pre_command(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replay.sqlite"
    worker_a = await SharedReplayGuard.open(path)
    worker_b = await SharedReplayGuard.open(path)
    for counter in (20, 21):
        assert (await worker_a.admit(rid(counter), 4)).verdict is ReplayVerdict.FRESH
        assert await worker_a.record_pre_command(rid(counter), GBCS + bytes([counter]))
    # A CV 4 whose Pre-Command was never recorded (say, still quarantined).
    assert (await worker_a.admit(rid(22), 4)).verdict is ReplayVerdict.FRESH
    assert await worker_b.admit(rid(20), 6) == Admission(ReplayVerdict.FRESH, GBCS + b"\x14")
    assert await worker_a.admit(rid(20), 5) == Admission(ReplayVerdict.REPLAYED)
    await worker_a.aclose()
    await worker_b.aclose()
    restarted = await SharedReplayGuard.open(path)
    assert await restarted.admit(rid(21), 5) == Admission(ReplayVerdict.FRESH, GBCS + b"\x15")
    assert await restarted.admit(rid(22), 7) == Admission(ReplayVerdict.FRESH, None)
    assert restarted.statistics().queued == 0
    await restarted.aclose()


def test_a_version_1_file_is_migrated_and_its_allowances_kept(tmp_path: Path) -> None:
    path = tmp_path / "replay.sqlite"
    shift = 2**63
    with sqlite3.connect(path) as db:  # the schema before Pre-Commands were stored
        db.executescript(
            "CREATE TABLE last_counter (originator TEXT PRIMARY KEY, counter INTEGER NOT NULL,"
            " open_pre_commands INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
            "CREATE TABLE open_pre_command (originator TEXT NOT NULL, counter INTEGER NOT NULL,"
            " PRIMARY KEY (originator, counter)) WITHOUT ROWID; PRAGMA user_version = 1;"
        )
        db.execute("INSERT INTO last_counter VALUES (?, ?, 1)", (SUP, 30 - shift))
        db.execute("INSERT INTO open_pre_command VALUES (?, ?)", (SUP, 30 - shift))
    database = ReplayDatabase(path)
    try:
        # The old process kept its Pre-Command in memory: the allowance survives without it.
        assert database.decide_batch([(rid(30), 5)]) == [Admission(ReplayVerdict.FRESH, None)]
        assert database.decide_batch([(rid(31), 4)]) == [Admission(ReplayVerdict.FRESH)]
        assert database.record_pre_command(rid(31), GBCS)
        assert database.decide_batch([(rid(31), 5)]) == [Admission(ReplayVerdict.FRESH, GBCS)]
    finally:
        database.close()


# ---------------------------------------------------------------- a real `duisgw serve`


async def transform(client: httpx.AsyncClient, url: str, keys: Path, cv4: bytes) -> bytes:
    """Send a CV 4 as the supplier; return its CV 5, signed as the User would."""
    counter = next_counter()
    signed, path = sign_request(cv4, [keys], counter=counter)
    answer = await client.post(url + path, content=signed, headers=HEADERS)
    assert response_code(answer.content) == "I0", answer.text
    payload = etree.fromstring(answer.content).find(".//{*}PreCommand/{*}GBCSPayload")
    assert payload is not None and payload.text
    _, role_key = find_signing_key([keys], SUP, "02")
    signed_gbcs = sign_pre_command(base64.b64decode(payload.text), role_key)
    cv5, _ = sign_request(signed_pre_command_request(cv4, signed_gbcs), [keys], counter=counter)
    return cv5


async def test_kill_9_between_cv4_and_cv5_keeps_the_pre_command(
    tmp_path: Path, shared_dir: Path
) -> None:
    duis, admin = free_ports(), free_ports()
    config = write_config(tmp_path, duis, admin, receiver=9, latency=0.001)
    cv4 = (shared_dir / CV4).read_bytes()
    url = f"http://127.0.0.1:{duis}"
    process = await start(config, admin)
    try:
        async with httpx.AsyncClient() as client:
            cv5s = [await transform(client, url, tmp_path / "pki", cv4) for _ in range(3)]
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    process = await start(config, admin)
    try:
        async with httpx.AsyncClient() as client:
            codes = []
            for cv5 in cv5s:
                r = await client.post(url + "/api/v1/serviceS", content=cv5, headers=HEADERS)
                codes.append(response_code(r.content))
            assert codes == ["I99"] * 3  # before: E12, the Pre-Commands died with the process
            again = await client.post(url + "/api/v1/serviceS", content=cv5s[0], headers=HEADERS)
            assert response_code(again.content) == "E1"  # and still once only
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


async def test_with_two_workers_every_cv5_finds_its_pre_command(
    tmp_path: Path, shared_dir: Path
) -> None:
    duis, admin = worker_ports()
    config = write_config(tmp_path, duis, admin, receiver=9, latency=0.001)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cv4 = (shared_dir / CV4).read_bytes()
    url = f"http://127.0.0.1:{duis}"
    try:
        await wait_ready([admin, admin + 1], process)
        cv5s = []
        codes = []
        # A fresh connection per request: the kernel spreads them over both workers, so
        # about half the CV 5s reach the worker that did not issue their Pre-Command.
        for _ in range(12):
            async with httpx.AsyncClient() as client:
                cv5s.append(await transform(client, url, tmp_path / "pki", cv4))
        for cv5 in cv5s:
            async with httpx.AsyncClient() as client:
                r = await client.post(url + "/api/v1/serviceS", content=cv5, headers=HEADERS)
                codes.append(response_code(r.content))
        assert codes == ["I99"] * 12
        served = []
        async with httpx.AsyncClient() as client:
            for port in (admin, admin + 1):
                metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                served.append(
                    sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in metrics.splitlines()
                        if line.startswith("duisgw_requests_total{")
                    )
                )
        assert sum(served) == 24 and all(served)  # both workers took part
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
