"""A real `duisgw serve` on the embedded default: the admin token made at first start and
read by the duisgw commands, private state files, responses in the dev inbox on a moved
admin port, and hostile admin requests answered 400 while the daemon goes on."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from bench.ports import free_ports
from gateway.devkit.client import sign_request
from gateway.devkit.default import ensure_default_state
from tests.harness import next_counter, response_code
from tests.test_durability import HAN, WAN, start

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
PRIVATE_SUFFIXES = (".sqlite", "-wal", "-shm", ".jsonl", ".token")
# The requests that ended the whole process (issue 11, finding 1).
HOSTILE = [
    ("GET", "/admin/quarantine/99999999999999999999999"),
    ("GET", "/admin/quarantine?min_age_seconds=1e999"),
    ("POST", "/admin/quarantine/99999999999999999999999/release"),
    ("POST", "/admin/quarantine/-99999999999999999999999/delete"),
]


def embedded_default(state: Path, duis: int, admin: int) -> None:
    """The embedded default's state directory, on free ports, with millisecond devices."""
    config = ensure_default_state(state, dt.datetime.now(dt.UTC))
    link = 'distribution = "fixed"\nlatency_median_seconds = 0.001\nlatency_p99_seconds = 0.001\n'
    text = config.read_text().replace("port = 8079", f"port = {duis}")
    text = text.replace("port = 8080", f"port = {admin}")
    text += "\n[simulator]\n" + "".join(
        f'[simulator.{kind}_profiles."{name}"]\n{link}'
        for kind, names in (("wan", WAN), ("han", HAN))
        for name in names
    )
    config.write_text(text)


def duisgw(*args: str, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DUISGW_ADMIN_TOKEN"}
    if token is not None:
        env["DUISGW_ADMIN_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_first_start_makes_the_token_the_cli_uses_and_keeps_state_private(
    tmp_path: Path, shared_dir: Path
) -> None:
    state = tmp_path / "state"
    duis, admin = free_ports(), free_ports()
    embedded_default(state, duis, admin)
    # Left by an earlier version: a readable state directory and audit file.
    state.chmod(0o755)
    audit = state / "thresholds-audit.jsonl"
    audit.write_text("{}\n")
    audit.chmod(0o644)
    assert not (state / "admin.token").exists()

    process = await start_embedded(state, admin)
    admin_url = f"http://127.0.0.1:{admin}"
    try:
        token_file = state / "admin.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        token = token_file.read_text().strip()

        status = duisgw("status", "--state-dir", str(state), cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert "5.4" in json.loads(status.stdout)["versions"]
        nothing = duisgw("status", "--admin", admin_url, cwd=tmp_path)
        assert nothing.returncode == 2 and "no admin token" in nothing.stderr
        wrong = duisgw("status", "--admin", admin_url, cwd=tmp_path, token="W" * 43)
        assert wrong.returncode == 1 and "not this gateway's" in wrong.stdout
        from_env = duisgw("status", "--admin", admin_url, cwd=tmp_path, token=token)
        assert from_env.returncode == 0, from_env.stdout

        # A response reaches the dev inbox on this admin port (not 8080), and the CLI sees it.
        counter = next_counter()
        signed, path = sign_request(
            (shared_dir / ECS17B).read_bytes(), [state / "pki"], counter=counter
        )
        async with httpx.AsyncClient() as client:
            ack = await client.post(
                f"http://127.0.0.1:{duis}{path}",
                content=signed,
                headers={"content-type": "application/xml"},
            )
        assert response_code(ack.content) == "I99"
        with trio.fail_after(30):
            while True:
                inbox = duisgw("inbox", "--state-dir", str(state), cwd=tmp_path)
                assert inbox.returncode == 0, inbox.stderr
                if f":{counter}" in inbox.stdout:
                    break
                await trio.sleep(0.1)
        assert " I0 " in inbox.stdout

        private = [p for p in state.iterdir() if p.name.endswith(PRIVATE_SUFFIXES)]
        names = {p.name for p in private}
        assert {
            "replay.sqlite",
            "outbox.sqlite",
            "jobs.sqlite",
            "quarantine.sqlite",
            "thresholds.sqlite",
        } <= names
        assert {"inbox.jsonl", "thresholds-audit.jsonl", "admin.token"} <= names
        assert any(name.endswith("-wal") for name in names)
        for file in private:
            assert stat.S_IMODE(file.stat().st_mode) & 0o077 == 0, file.name
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


async def test_hostile_admin_requests_get_400_and_the_daemon_goes_on(
    tmp_path: Path, shared_dir: Path
) -> None:
    state = tmp_path / "state"
    duis, admin = free_ports(), free_ports()
    embedded_default(state, duis, admin)
    process = await start_embedded(state, admin)
    try:
        token = (state / "admin.token").read_text().strip()
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin}") as client:
            for method, path in HOSTILE:
                answer = await client.request(method, path, headers=headers)
                assert answer.status_code == 400, (path, answer.text)
                assert process.poll() is None, path
            assert (await client.get("/readyz")).status_code == 200
        signed, path = sign_request(
            (shared_dir / INVENTORY).read_bytes(), [state / "pki"], counter=next_counter()
        )
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{duis}{path}",
                content=signed,
                headers={"content-type": "application/xml"},
            )
        assert response_code(answer.content) == "I0"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


async def start_embedded(state: Path, admin: int) -> subprocess.Popen[bytes]:
    """`duisgw serve --state-dir STATE`, ready when /readyz answers."""
    return await start(state / "duisgw.toml", admin, ["--state-dir", str(state)])
