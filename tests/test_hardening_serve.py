"""Issue 11's network findings against a real `duisgw serve` subprocess, over real sockets.

The edge's limits (findings 3 and 4), the dev inbox (6) and refused TLS handshakes (11)
are tested in depth in-process (tests/test_http_edge.py, tests/test_inbox.py,
tests/test_mutual_tls.py); here the same behaviours are checked once on the daemon an
operator runs, configured only through the TOML file the test writes, and seen only
through its sockets, its log file and its /metrics. Finding 9 (a release and a kill -9)
is done for real: the process is killed at several points of a release and restarted.

Limits are set small so each test runs in seconds; waits are safety nets, never speed
assertions.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from bench.corpus import free_ports
from bench.gateway_process import GatewayProcess
from gateway.devkit.client import sign_request
from gateway.edge.admin_auth import admin_token_path, read_admin_token
from gateway.stores.operator_files import load_config
from tests.harness import next_counter, response_code, set_response_url
from tests.receiver import Receiver
from tests.test_admin_serve import embedded_default
from tests.test_http_edge import HEAD_START, connect, read_until_closed, send_ignoring_errors
from tests.test_inbox import FORGED_I0
from tests.test_mutual_tls import client_context, refused_clients, refused_handshake
from tests.test_release_durable import responses

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
SUPPLIER = "90-B3-D5-1F-30-01-00-00"
XML = {"content-type": "application/xml"}


def write_serve_config(
    state: Path, *, edits: Mapping[str, str] | None = None, tables: str = ""
) -> Path:
    """The embedded default's duisgw.toml in `state` on free ports, with millisecond
    devices, `edits` (old text -> new text, each must be there) and `tables` appended."""
    admin, duis = free_ports(1), free_ports(1)
    while duis == admin:
        duis = free_ports(1)
    embedded_default(state, duis, admin)
    config = state / "duisgw.toml"
    text = config.read_text()
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    config.write_text(text + tables)
    return config


class Daemon:
    """A running `duisgw serve` (bench/gateway_process.py) as the tests see it."""

    def __init__(self, process: GatewayProcess) -> None:
        self.process = process
        self.state = process.config_path.parent

    @property
    def duis_url(self) -> str:
        return f"http://127.0.0.1:{self.process.duis_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.process.admin_ports[0]}"

    @property
    def token_headers(self) -> dict[str, str]:
        token = read_admin_token(admin_token_path(load_config(self.process.config_path)))
        return {"authorization": f"Bearer {token}"}

    async def start(self) -> None:
        """(Again, after a kill) on the same config and state; ready when /readyz is."""
        if self.process.process.poll() is not None:
            self.process.restart()
        await trio.to_thread.run_sync(self.process.wait_ready)

    async def counters(self, *prefixes: str) -> dict[str, float]:
        """Non-zero samples of the named metrics from the daemon's /metrics."""
        return await trio.to_thread.run_sync(self.process.counters, prefixes)

    def log_records(self) -> list[dict[str, Any]]:
        """Its log so far: one JSON object a line (stderr is a file, so json). A line a
        kill -9 cut short is left out."""
        records = []
        for line in self.process.log_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    async def send_inventory(self, client: httpx.AsyncClient, shared_dir: Path) -> str:
        """A signed 8.2 (answered synchronously); its DUIS response code."""
        xml = (shared_dir / INVENTORY).read_bytes()
        signed, path = sign_request(xml, [self.state / "pki"], counter=next_counter())
        answer = await client.post(self.duis_url + path, content=signed, headers=XML)
        assert answer.status_code == 200, answer.text
        return response_code(answer.content)


@asynccontextmanager
async def serving(config: Path) -> AsyncIterator[Daemon]:
    """`duisgw serve --config CONFIG`; afterwards it must still be running and stop cleanly."""
    daemon = Daemon(GatewayProcess.start(config, workers=1, cores=None, profile=None))
    try:
        await daemon.start()
        yield daemon
        assert daemon.process.process.poll() is None, daemon.process.log_tail()
    finally:
        exit_code = await trio.to_thread.run_sync(daemon.process.stop)
    assert exit_code == 0, daemon.process.log_tail()


# ------------------------------------------------------------------ 3: head bytes

HEAD_LIMIT_BYTES = 16_384
HUGE_HEADER_BYTES = 2_000_000
CHUNK_BYTES = 65_536
ANSWER_WAIT_SECONDS = 0.2  # per chunk: all of them together are the safety net


async def test_an_endless_header_line_gets_431_while_it_is_still_arriving(
    tmp_path: Path, shared_dir: Path
) -> None:
    """2 MB of one header value, never a line end, sent a chunk at a time: the 431 comes
    while it is still being sent (before: the head was buffered until its line ended,
    so no answer came at all, and the cost grew with the square of its size)."""
    config = write_serve_config(
        tmp_path / "state",
        tables=f"\n[limits]\nmax_header_bytes = {HEAD_LIMIT_BYTES}\n"
        "request_timeout_seconds = 30.0\n",
    )
    async with serving(config) as daemon:
        stream = await connect(daemon.process.duis_port)
        sent, answer = 0, b""
        with contextlib.suppress(trio.BrokenResourceError):  # reset once it was refused
            await stream.send_all(HEAD_START)
            while sent < HUGE_HEADER_BYTES and not answer:
                await stream.send_all(b"a" * CHUNK_BYTES)
                sent += CHUNK_BYTES
                with trio.move_on_after(ANSWER_WAIT_SECONDS):
                    answer = await stream.receive_some(65_536)
        assert answer, f"no answer while {sent} bytes of one header line were sent"
        with trio.fail_after(10):
            answer += await read_until_closed(stream)
        await stream.aclose()
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        counted = await daemon.counters("duisgw_http_errors_total")
        assert counted == {'duisgw_http_errors_total{status="431"}': 1.0}
        async with httpx.AsyncClient(timeout=30) as client:
            assert await daemon.send_inventory(client, shared_dir) == "I0"


# ------------------------------------------------------------------ 4: time and slots

TRICKLE_INTERVAL_SECONDS = 0.2
REQUEST_DEADLINE_SECONDS = 1.0
TRICKLE_MAX_BYTES = 100  # 20 s of trickle: the safety net, far past the deadline


async def test_one_byte_at_a_time_gets_408_at_the_request_deadline(tmp_path: Path) -> None:
    """Each byte comes well within the deadline, so a per-read limit (before) never fired."""
    config = write_serve_config(
        tmp_path / "state",
        tables=f"\n[limits]\nrequest_timeout_seconds = {REQUEST_DEADLINE_SECONDS}\n",
    )
    async with serving(config) as daemon:
        stream = await connect(daemon.process.duis_port)
        answer = b""
        with contextlib.suppress(trio.BrokenResourceError):
            for byte in (HEAD_START + b"x" * TRICKLE_MAX_BYTES)[:TRICKLE_MAX_BYTES]:
                await stream.send_all(bytes([byte]))
                with trio.move_on_after(TRICKLE_INTERVAL_SECONDS):
                    answer = await stream.receive_some(4096)
                if answer:
                    break
        await stream.aclose()
        assert answer.startswith(b"HTTP/1.1 408"), answer
        counted = await daemon.counters("duisgw_client_timeouts_total")
        assert counted == {'duisgw_client_timeouts_total{kind="request"}': 1.0}


SEND_TIMEOUT_SECONDS = 1.0


async def test_a_client_that_never_reads_loses_its_connection(tmp_path: Path) -> None:
    """Pipelined requests whose answers are never read: the daemon gives up writing after
    the send timeout and closes (before: no send timeout, the slot was held 80+ s)."""
    config = write_serve_config(
        tmp_path / "state", tables=f"\n[limits]\nsend_timeout_seconds = {SEND_TIMEOUT_SECONDS}\n"
    )
    async with serving(config) as daemon:
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)  # fills at once
        await sock.connect(("127.0.0.1", daemon.process.admin_ports[0]))
        stream = trio.SocketStream(sock)
        requests = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2_000
        counted: dict[str, float] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_ignoring_errors, stream, requests)
            with trio.move_on_after(30):
                while not (counted := await daemon.counters("duisgw_client_timeouts_total")):
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        assert counted == {'duisgw_client_timeouts_total{kind="send"}': 1.0}
        with trio.fail_after(10):
            await read_until_closed(stream)  # what it had sent, then the close
        await stream.aclose()


async def test_idle_sockets_in_every_slot_do_not_lock_out_a_client_with_work(
    tmp_path: Path, shared_dir: Path
) -> None:
    """Four slots, at most two per peer: a third socket from one peer is refused; two
    peers' idle sockets then fill every slot, and a well-behaved client is still served
    (the longest idle socket reclaimed for it; before, it failed every request)."""
    config = write_serve_config(
        tmp_path / "state",
        tables="\n[limits]\nmax_connections = 4\nmax_connections_per_peer = 2\n",
    )
    async with serving(config) as daemon:
        port = daemon.process.duis_port
        idle = [await connect(port, "127.0.0.3") for _ in range(2)]
        third = await connect(port, "127.0.0.3")
        refused = b""
        with trio.move_on_after(10):  # without the cap: admitted, and nothing comes
            refused = await read_until_closed(third)
        assert refused.startswith(b"HTTP/1.1 503") and b"max_connections_per_peer" in refused
        idle += [await connect(port, "127.0.0.2") for _ in range(2)]
        with trio.fail_after(10):
            while (await daemon.counters("duisgw_open_connections")).get(
                'duisgw_open_connections{listener="duis"}'
            ) != 4:
                await trio.sleep(0.02)
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(3):
                assert await daemon.send_inventory(client, shared_dir) == "I0"
        with trio.fail_after(10):
            assert await read_until_closed(idle[0]) == b""  # the longest idle, closed
        counted = await daemon.counters(
            "duisgw_connections_reclaimed_total", "duisgw_connections_refused_total"
        )
        assert counted == {
            'duisgw_connections_reclaimed_total{listener="duis"}': 1.0,
            'duisgw_connections_refused_total{listener="duis",reason="max_connections_per_peer"}': (
                1.0
            ),
        }
        for stream in [*idle, third]:
            await stream.aclose()


# ------------------------------------------------------------------ 6: the dev inbox

INBOX_TABLE = """[dev_inbox]
enabled = true
max_total_bytes = 16777216
max_message_bytes = 1048576
max_age_seconds = 604800
"""


async def test_the_dev_inbox_is_not_there_unless_the_config_asks_for_it(tmp_path: Path) -> None:
    """No `[dev_inbox]` table and Users with URLs of their own: /inbox is not mounted
    (before, it always was, and took a forged I0 for any User)."""
    state = tmp_path / "state"
    config = write_serve_config(state, edits={INBOX_TABLE: ""})
    users = state / "users.toml"
    users.write_text(users.read_text().replace('"dev-inbox"', '"https://user.example/duis"'))
    async with serving(config) as daemon:
        async with httpx.AsyncClient(base_url=daemon.admin_url, timeout=30) as client:
            forged = await client.post(f"/inbox/{SUPPLIER}", content=FORGED_I0, headers=XML)
            assert forged.status_code == 401  # every admin route but three needs the token
            token = daemon.token_headers
            listed = await client.get("/inbox", headers=token)
            assert listed.status_code == 404 and "not enabled" in listed.text
            posted = await client.post(
                f"/inbox/{SUPPLIER}", content=FORGED_I0, headers={**XML, **token}
            )
            assert posted.status_code == 404
        assert not (state / "inbox.jsonl").exists()


MESSAGE_CAP_BYTES = 16_384
TOTAL_CAP_BYTES = 65_536


async def test_the_enabled_dev_inbox_is_bounded_in_bytes(tmp_path: Path) -> None:
    """Caps from the config: a post over the message cap is refused 413; posts past the
    total cap push the oldest out, in memory and in inbox.jsonl (before: unbounded)."""
    state = tmp_path / "state"
    config = write_serve_config(
        state,
        edits={
            "max_total_bytes = 16777216": f"max_total_bytes = {TOTAL_CAP_BYTES}",
            "max_message_bytes = 1048576": f"max_message_bytes = {MESSAGE_CAP_BYTES}",
        },
    )
    message = b"<r>" + b"x" * (MESSAGE_CAP_BYTES - 1024) + b"</r>"
    async with serving(config) as daemon:
        async with httpx.AsyncClient(
            base_url=daemon.admin_url, headers=daemon.token_headers, timeout=30
        ) as client:
            forged = await client.post(
                f"/inbox/{SUPPLIER}", content=FORGED_I0, headers={"authorization": "Bearer x"}
            )
            assert forged.status_code == 401
            too_large = b"<r>" + b"x" * MESSAGE_CAP_BYTES + b"</r>"
            refused = await client.post(f"/inbox/{SUPPLIER}", content=too_large, headers=XML)
            assert refused.status_code == 413 and "max_message_bytes" in refused.text
            assert (await client.get("/inbox")).json() == []
            posts = 3 * TOTAL_CAP_BYTES // len(message)
            for i in range(posts):
                headers = {**XML, "x-duis-message-id": f"m{i}"}
                posted = await client.post(f"/inbox/{SUPPLIER}", content=message, headers=headers)
                assert posted.status_code == 200
            kept = [m["message_id"] for m in (await client.get("/inbox")).json()]
        assert 0 < len(kept) <= TOTAL_CAP_BYTES // len(message) < posts
        assert kept == [f"m{i}" for i in range(posts - len(kept), posts)]  # oldest dropped
        assert (state / "inbox.jsonl").stat().st_size <= 2 * TOTAL_CAP_BYTES + MESSAGE_CAP_BYTES


# ------------------------------------------------------------------ 11: refused TLS handshakes

TLS_TABLE = """
[tls]
certificate = "pki/tls/tls-server.cert.pem"
private_key = "pki/tls/tls-server.key.pem"
client_ca = "pki/tls/tls-ca.cert.pem"
"""


async def test_refused_tls_handshakes_are_logged_at_info_and_counted(
    tmp_path: Path, shared_dir: Path
) -> None:
    """No client certificate, an expired one, a self-signed one, one for servers only,
    and plain HTTP: each refusal is one info line with its reason in the daemon's log
    and one count in /metrics (before: neither), and a proper client still gets in."""
    state = tmp_path / "state"
    config = write_serve_config(state, tables=TLS_TABLE)
    tls_dir = state / "pki" / "tls"
    clients = refused_clients(tls_dir, tmp_path)
    async with serving(config) as daemon:
        peers = {
            reason: await refused_handshake(daemon.process.duis_port, context)
            for reason, context in clients.items()
        }
        expected = {
            f'duisgw_tls_handshake_failures_total{{reason="{reason}"}}': 1.0 for reason in clients
        }
        counted: dict[str, float] = {}
        with trio.move_on_after(10):
            while (counted := await daemon.counters("duisgw_tls_handshake_failures_total")) != (
                expected
            ):
                await trio.sleep(0.05)
        assert counted == expected
        refusals = [r for r in daemon.log_records() if r["event"] == "TLS handshake refused"]
        assert {r["peer"]: (r["level"], r["reason"]) for r in refusals} == {
            peer: ("info", reason) for reason, peer in peers.items()
        }
        xml = (shared_dir / INVENTORY).read_bytes()
        signed, path = sign_request(xml, [state / "pki"], counter=next_counter())
        url = f"https://localhost:{daemon.process.duis_port}{path}"
        async with httpx.AsyncClient(verify=client_context(tls_dir, "90B3D51F30010000")) as client:
            answer = await client.post(url, content=signed, headers=XML)
        assert response_code(answer.content) == "I0"
        assert await daemon.counters("duisgw_tls_handshake_failures_total") == expected


# ------------------------------------------------------------------ 9: release, then kill -9

HOLD_EVERY_INVENTORY = """
[[rules]]
user_id = "*"
srv = "8.2"
window_seconds = 3600
limit = 0
kind = "user_quarantine"
"""
CLEAR_ANSWER = 409  # release or delete of a request no longer held


def quarantine_state(daemon: Daemon, ref: int) -> str:
    """The request's state as the daemon's quarantine file has it now."""
    database = daemon.state / "quarantine.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT state FROM quarantine WHERE event_ref = ?", (ref,)).fetchone()
    return str(row[0])


async def kill_while_its_answer_waits(daemon: Daemon, client: httpx.AsyncClient, ref: int) -> bool:
    """SIGKILL between the two steps of the release, every time: the test holds the
    outbox's write lock, so the release, once journaled, waits to store its answer."""
    outbox = sqlite3.connect(daemon.state / "outbox.sqlite", isolation_level=None)
    try:
        outbox.execute("BEGIN IMMEDIATE")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(release_ignoring_the_kill, client, daemon, ref)
            with trio.fail_after(30):
                while await trio.to_thread.run_sync(quarantine_state, daemon, ref) == "held":
                    await trio.sleep(0.001)
            daemon.process.kill9()
        outbox.execute("ROLLBACK")
    finally:
        outbox.close()
    # Before the fix the row was `released` here, and its answer never made.
    assert quarantine_state(daemon, ref) == "releasing"
    return True  # the restart must resume it


async def release_ignoring_the_kill(client: httpx.AsyncClient, daemon: Daemon, ref: int) -> None:
    with contextlib.suppress(httpx.TransportError):
        await client.post(f"{daemon.admin_url}/admin/quarantine/{ref}/release")


async def kill_as_the_post_returns(daemon: Daemon, client: httpx.AsyncClient, ref: int) -> bool:
    """Released and its answer stored, perhaps not yet delivered."""
    released = await client.post(f"{daemon.admin_url}/admin/quarantine/{ref}/release")
    daemon.process.kill9()
    assert released.status_code == 200 and released.json()["answered"] == "I0", released.text
    return False


async def kill_as_the_post_is_sent(daemon: Daemon, client: httpx.AsyncClient, ref: int) -> bool:
    """Most often before the daemon has read it: the request is still held."""
    stream = await connect(daemon.process.admin_ports[0])
    token = daemon.token_headers["authorization"].encode()
    await stream.send_all(
        b"POST /admin/quarantine/%d/release HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: %s\r\nContent-Length: 0\r\n\r\n" % (ref, token)
    )
    daemon.process.kill9()
    await stream.aclose()
    return False


KILL_POINTS = [kill_as_the_post_is_sent, kill_while_its_answer_waits, kill_as_the_post_returns]


async def test_a_release_cut_by_kill_9_is_answered_once_after_the_restart(
    tmp_path: Path, shared_dir: Path
) -> None:
    """Held synchronous requests (8.2, answered at the Receive Response URL once
    released), each released and the daemon killed at another point: as the release
    request is sent; once the release is journaled and before its answer is stored
    (every time: the test holds the outbox's lock); as its answer returns. After each
    restart the request is either still held (the kill came first: releasing it now
    works) or released, never lost: its one answer reaches the User, and release and
    delete then say 409 with a reason. (Before: marked released, never answered,
    release and delete 409: lost.)"""
    receiver = Receiver()
    state = tmp_path / "state"
    config = write_serve_config(
        state,
        edits={'store = "memory"': f'store = "memory"\nrules_file = "{state / "rules.toml"}"'},
        tables="\n[delivery]\nbackoff_base_seconds = 0.05\nbackoff_cap_seconds = 0.2\n",
    )
    (state / "rules.toml").write_text(HOLD_EVERY_INVENTORY)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(receiver.serve)
        users = state / "users.toml"
        users.write_text(
            set_response_url(users.read_text(), SUPPLIER, f"http://127.0.0.1:{port}/duis")
        )
        async with (
            serving(config) as daemon,
            httpx.AsyncClient(headers=daemon.token_headers, timeout=30) as client,
        ):
            for _ in KILL_POINTS:
                assert await daemon.send_inventory(client, shared_dir) == "I99"  # held
            held = (await client.get(f"{daemon.admin_url}/admin/quarantine")).json()
            assert [h["state"] for h in held] == ["held"] * len(KILL_POINTS)
            for kill, item in zip(KILL_POINTS, held, strict=True):
                must_resume = await kill(daemon, client, item["event_ref"])
                await daemon.start()
                await check_answered_once(daemon, client, receiver, item)
                if must_resume:
                    resumed = [r for r in daemon.log_records() if r["event"] == "resumed release"]
                    assert item["event_ref"] in [r["ref"] for r in resumed]
        await trio.sleep(0.5)  # anything still on its way would arrive now
        answers = {seen.message_id for seen in responses(receiver)}
        assert answers == {f"{item['request_id']}:response" for item in held}
        nursery.cancel_scope.cancel()


async def check_answered_once(
    daemon: Daemon, client: httpx.AsyncClient, receiver: Receiver, item: dict[str, Any]
) -> None:
    """Still held (then released now) or released; either way one answer reaches the User."""
    url = f"{daemon.admin_url}/admin/quarantine/{item['event_ref']}"
    shown = (await client.get(url)).json()
    with trio.move_on_after(30):
        while (shown := (await client.get(url)).json())["state"] == "releasing":
            await trio.sleep(0.02)  # resumed at start, not yet finished
    if shown["state"] == "held":  # killed before the release was journaled
        released = await client.post(url + "/release")
        assert released.status_code == 200 and released.json()["answered"] == "I0"
        shown = (await client.get(url)).json()
    assert shown["state"] == "released", shown
    for decision in ("release", "delete"):
        again = await client.post(f"{url}/{decision}")
        assert again.status_code == CLEAR_ANSWER and again.json()["error"], again.text

    def answers() -> set[str]:
        return {s.message_id for s in responses(receiver) if s.message_id.startswith(request_id)}

    request_id = item["request_id"]
    with trio.move_on_after(30):
        while not answers():
            await trio.sleep(0.02)
    ids = answers()
    # One answer; a kill between its delivery and its record may send it again, under
    # the same X-DUIS-Message-ID for the User to drop (README, "The asynchronous life cycle").
    assert ids == {f"{item['request_id']}:response"}
