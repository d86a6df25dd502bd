"""Each connection is a crash boundary (issue 11, finding 1).

An unexpected exception in a handler is logged once with its traceback, counted by
listener, answered 500 and that connection closed; the listener and every other
connection go on. The first tests inject a handler that raises, behind the real
ConnectionHandler served on a real socket (`trio.serve_tcp`, port 0); the last one
sends the admin requests that used to end the whole process to a real
`duisgw serve` subprocess, since "the process goes on" is what it checks.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path

import httpx
import pytest
import trio

from bench.corpus import free_ports
from bench.gateway_process import GatewayProcess
from gateway.core.config import LimitsConfig
from gateway.devkit.client import sign_request
from gateway.devkit.default import ensure_default_state
from gateway.edge.admin_auth import admin_token_path, read_admin_token
from gateway.edge.http import HttpRequest
from gateway.edge.metrics import Metrics
from gateway.edge.server import ConnectionHandler, Draining, PeerInfo
from gateway.stores.operator_files import load_config
from tests.harness import next_counter, response_code

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
FAILURES = [
    OverflowError("Python int too large to convert to SQLite INTEGER"),
    OSError(28, "No space left on device"),  # ours, though OSError: not a dropped peer
    RuntimeError("a bug"),
    ExceptionGroup("from a nursery", [ValueError("inside")]),
]


class ExplodingHandler:
    """Answers every path but /boom, which raises the given exception."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    async def __call__(self, request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
        if request.target == "/boom":
            raise self.failure
        return 200, b"fine\n", b"text/plain"


async def exchange(stream: trio.SocketStream, target: bytes) -> bytes:
    await stream.send_all(b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
    data = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in data or not data.endswith(b"\n"):
            chunk = await stream.receive_some(4096)
            assert chunk, f"closed without an answer: {data!r}"
            data += chunk
    return data


@pytest.mark.parametrize("failure", FAILURES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("listener", ["duis", "admin"])
async def test_an_exception_in_a_handler_ends_only_its_connection(
    listener: str, failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    handler = ConnectionHandler(
        ExplodingHandler(failure), LimitsConfig(), metrics, Draining(), listener=listener
    )
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        port = listeners[0].socket.getsockname()[1]
        bystander = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await exchange(bystander, b"/fine")).startswith(b"HTTP/1.1 200")

        victim = await trio.open_tcp_stream("127.0.0.1", port)
        answer = await exchange(victim, b"/boom")
        assert answer.startswith(b"HTTP/1.1 500") and b"connection: close" in answer
        with trio.fail_after(10):
            assert await victim.receive_some(4096) == b""  # and closed

        # The open keep-alive connection and new ones go on.
        assert (await exchange(bystander, b"/fine")).startswith(b"HTTP/1.1 200")
        newcomer = await trio.open_tcp_stream("127.0.0.1", port)
        assert (await exchange(newcomer, b"/fine")).startswith(b"HTTP/1.1 200")

        sample = metrics.registry.get_sample_value
        assert sample("duisgw_internal_errors_total", {"listener": listener}) == 1
        other = "admin" if listener == "duis" else "duis"
        assert not sample("duisgw_internal_errors_total", {"listener": other})
        tracebacks = [r for r in caplog.records if r.exc_info]
        assert len(tracebacks) == 1  # logged once
        assert tracebacks[0].exc_info is not None and tracebacks[0].exc_info[1] is failure
        assert listener in tracebacks[0].getMessage()
        for stream in (bystander, victim, newcomer):
            await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_handler_that_hangs_up_is_not_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer that resets mid-answer is its business: no traceback, no count."""
    metrics = Metrics()
    stalled = trio.Event()

    async def slow(request: HttpRequest, peer: PeerInfo) -> tuple[int, bytes, bytes]:
        stalled.set()
        await trio.sleep(0.2)
        return 200, b"x" * 1_000_000, b"text/plain"

    handler = ConnectionHandler(slow, LimitsConfig(), metrics, Draining(), listener="duis")
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        await stalled.wait()
        stream.socket.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        await stream.aclose()  # RST
        await trio.sleep(0.5)
        assert not metrics.registry.get_sample_value(
            "duisgw_internal_errors_total", {"listener": "duis"}
        )
        assert not [r for r in caplog.records if r.exc_info]
        nursery.cancel_scope.cancel()


ADMIN_PROBES = [
    ("GET", "/admin/quarantine/99999999999999999999999"),
    ("GET", "/admin/quarantine?min_age_seconds=1e999"),
    ("GET", "/admin/quarantine?min_age_seconds=1e300"),
    ("POST", "/admin/quarantine/99999999999999999999999/release"),
    ("POST", "/admin/quarantine/-99999999999999999999999/delete"),
]


@pytest.mark.skipif(sys.platform != "linux", reason="bench.gateway_process reads /proc")
async def test_admin_requests_that_once_ended_the_process(tmp_path: Path, shared_dir: Path) -> None:
    """Each of these ended `duisgw serve`, DUIS listener included. Sent with the admin
    token, so they reach the handlers (without it the guard answers 401 first), each
    gets 400 with its reason, and the daemon and its DUIS listener go on."""
    config = ensure_default_state(tmp_path, dt.datetime.now(dt.UTC))
    admin, duis = free_ports(1), free_ports(1)
    while duis == admin:
        duis = free_ports(1)
    text = config.read_text().replace("port = 8079", f"port = {duis}")
    config.write_text(text.replace("port = 8080", f"port = {admin}"))
    gateway = GatewayProcess.start(config, workers=1, cores=None, profile=None)
    try:
        await trio.to_thread.run_sync(gateway.wait_ready)
        token = read_admin_token(admin_token_path(load_config(config)))  # as duisgw reads it
        async with httpx.AsyncClient(timeout=30) as client:
            for method, path in ADMIN_PROBES:
                answer = await client.request(
                    method,
                    f"http://127.0.0.1:{admin}{path}",
                    headers={"authorization": f"Bearer {token}"},
                )
                assert answer.status_code == 400, (path, answer.status_code, answer.text)
                assert answer.json()["error"], path  # the reason
                assert gateway.process.poll() is None, gateway.log_tail()
            xml = (shared_dir / INVENTORY).read_bytes()
            signed, endpoint = sign_request(xml, [tmp_path / "pki"], counter=next_counter())
            answer = await client.post(
                f"http://127.0.0.1:{duis}{endpoint}",
                content=signed,
                headers={"content-type": "application/xml"},
            )
            assert answer.status_code == 200 and response_code(answer.content) == "I0"
            assert (await client.get(f"http://127.0.0.1:{admin}/healthz")).status_code == 200
    finally:
        exit_code = await trio.to_thread.run_sync(gateway.stop)
    assert exit_code == 0, gateway.log_tail()
