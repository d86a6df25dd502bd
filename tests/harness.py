"""Start a real gateway for a test: `nursery.start(serve, ...)` on port 0, no sleeps."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import trio
from lxml import etree

from gateway.compose import BoundAddresses, serve
from gateway.core.clock import Clock
from gateway.core.config import Config
from gateway.core.simulator_config import LinkProfile, SimulatorConfig
from gateway.devkit.client import sign_request
from gateway.devkit.default import ensure_default_state
from gateway.edge.admin_auth import admin_token_path, read_admin_token
from gateway.edge.metrics import Metrics
from gateway.edge.transport import DeviceTransport
from gateway.stores.operator_files import load_config

_counter = itertools.count(int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000))


def next_counter() -> int:
    """A RequestID counter that keeps increasing across tests in one run."""
    return next(_counter)


def default_config(state_dir: Path, **changes: object) -> Config:
    """The embedded default, on ephemeral ports."""
    config = load_config(ensure_default_state(state_dir, dt.datetime.now(dt.UTC)))
    return _ephemeral(config, **changes)


def dccboxed_config(state_dir: Path, shared: Path, **changes: object) -> Config:
    """The default estate, but trusting the DCC's test PKI and signing with its DSP key."""
    config = default_config(state_dir)
    pki = shared / "pki" / "dccboxed"
    trust = msgspec.structs.replace(
        config.trust,
        certificate_dirs=(str(pki),),
        dcc_signing_certificate=str(pki / "dsp-xml-sign-90B3D51F30000002-ds.cert.pem"),
        dcc_signing_key=str(pki / "dsp-xml-sign-90B3D51F30000002-ds.key.pem"),
    )
    return _ephemeral(config, trust=trust, **changes)


def fast_simulator(unreachable_rate: float = 0.0, no_response_rate: float = 0.0) -> SimulatorConfig:
    """Devices that answer in a millisecond, so tests exercise logic, not radio latency."""
    link = LinkProfile(
        distribution="fixed",
        latency_median_seconds=0.001,
        latency_p99_seconds=0.001,
        unreachable_rate=unreachable_rate,
        no_response_rate=no_response_rate,
    )
    defaults = SimulatorConfig()
    return SimulatorConfig(
        wan_profiles={name: link for name in defaults.wan_profiles},
        han_profiles={name: link for name in defaults.han_profiles},
    )


def _ephemeral(config: Config, **changes: object) -> Config:
    listen = msgspec.structs.replace(config.listen, port=0)
    admin = msgspec.structs.replace(config.admin, port=0)
    changes.setdefault("simulator", fast_simulator())
    return msgspec.structs.replace(config, listen=listen, admin=admin, **changes)


def set_response_url(users_toml: str, user_id: str, url: str) -> str:
    """users.toml text with `user_id`'s response_url replaced by `url`."""
    head, marker, rest = users_toml.partition(f'user_id = "{user_id}"')
    assert marker, f"{user_id} is not in the users file"
    entry, separator, tail = rest.partition("[[users]]")
    entry, count = re.subn(r'response_url = "[^"]*"', f'response_url = "{url}"', entry)
    assert count == 1, f"{user_id} has no response_url"
    return head + marker + entry + separator + tail


class Gateway:
    def __init__(
        self, addresses: BoundAddresses, metrics: Metrics, key_dirs: list[Path], admin_token: str
    ):
        self.addresses = addresses
        self.metrics = metrics
        self.key_dirs = key_dirs
        self.admin_token = admin_token
        self.client = httpx.AsyncClient(timeout=30)
        # The admin API with the token, as the duisgw commands send it.
        self.admin = httpx.AsyncClient(
            base_url=self.admin_url,
            headers={"authorization": f"Bearer {admin_token}"},
            timeout=30,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.addresses.duis[1]}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.addresses.admin[1]}"

    async def post(
        self, path: str, body: bytes, content_type: str = "application/xml"
    ) -> httpx.Response:
        return await self.client.post(
            self.url + path, content=body, headers={"content-type": content_type}
        )

    async def send(
        self, xml: bytes, *, counter: int | None = None, as_user: str | None = None
    ) -> httpx.Response:
        signed, path = sign_request(
            xml,
            self.key_dirs,
            counter=next_counter() if counter is None else counter,
            as_user=as_user,
        )
        return await self.post(path, signed)


@asynccontextmanager
async def running_gateway(
    config: Config,
    key_dirs: list[Path],
    transport: DeviceTransport | None = None,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Gateway]:
    metrics = metrics or Metrics()
    async with trio.open_nursery() as nursery:

        async def run(task_status: trio.TaskStatus[BoundAddresses]) -> None:
            await serve(
                config, clock=clock, metrics=metrics, transport=transport, task_status=task_status
            )

        addresses = await nursery.start(run)
        token = read_admin_token(admin_token_path(config))
        gateway = Gateway(addresses, metrics, key_dirs, token)
        try:
            yield gateway
        finally:
            await gateway.client.aclose()
            await gateway.admin.aclose()
            nursery.cancel_scope.cancel()


def response_code(body: bytes) -> str:
    root = etree.fromstring(body)
    code = root.find("{*}Header/{*}ResponseCode")
    assert code is not None and code.text
    return code.text
