"""The estate link's TLS and shared token, and where a reply goes when its node is gone."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import msgspec
import pytest
import trio

from gateway.compose import load_for_start
from gateway.core.clock import SystemClock
from gateway.core.config import Config, StartupError
from gateway.core.device import DeviceOutcome
from gateway.core.estate_config import EstateTls
from gateway.core.estate_link import (
    Command,
    encode,
)
from gateway.devkit.devpki import TLS_CA_NAME, TLS_SERVER_NAME, TLS_SUBDIRECTORY
from gateway.devkit.estate_server import estate_server_context
from gateway.edge.estate_link import NetworkTransport, client_context
from tests.estate_harness import FAST_LINK, RawNode, wait_until
from tests.harness import default_config
from tests.test_estate_link_peers import command, slow_estate


@pytest.fixture(scope="module")
def estate_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return default_config(tmp_path_factory.mktemp("estate"))


async def test_a_tls_link_carries_commands_and_refuses_a_wrong_token(
    estate_config: Config,
) -> None:
    tls_dir = Path(estate_config.state_dir) / "pki" / TLS_SUBDIRECTORY
    served = EstateTls(
        certificate=str(tls_dir / f"{TLS_SERVER_NAME}.cert.pem"),
        private_key=str(tls_dir / f"{TLS_SERVER_NAME}.key.pem"),
    )
    trusting = EstateTls(ca=str(tls_dir / f"{TLS_CA_NAME}.cert.pem"), server_name="localhost")
    server = slow_estate(estate_config, 0.01, credit_window=4, auth_token="s3cret")
    async with trio.open_nursery() as nursery:
        serve = functools.partial(server.serve, ssl_context=estate_server_context(served))
        _, port = await nursery.start(serve, "127.0.0.1", 0)
        link = msgspec.structs.replace(FAST_LINK, address=f"127.0.0.1:{port}", tls=trusting)

        def node(token: str) -> NetworkTransport:
            return NetworkTransport(
                link,
                node_id=f"node-{token}",
                clock=SystemClock(),
                ssl_context=client_context(trusting),
                auth_token=token,
                rng=random.Random(2),
            )

        good, bad = node("s3cret"), node("guess")
        await nursery.start(good.run)
        await nursery.start(bad.run)
        assert (await good.send(command())).outcome is DeviceOutcome.RESPONDED
        await wait_until(lambda: server.connections_refused >= 1)
        assert bad.sessions == 0 and server.nodes == {"node-s3cret": 1}
        nursery.cancel_scope.cancel()


async def test_a_plain_node_cannot_talk_to_a_tls_estate(estate_config: Config) -> None:
    tls_dir = Path(estate_config.state_dir) / "pki" / TLS_SUBDIRECTORY
    served = EstateTls(
        certificate=str(tls_dir / f"{TLS_SERVER_NAME}.cert.pem"),
        private_key=str(tls_dir / f"{TLS_SERVER_NAME}.key.pem"),
    )
    server = slow_estate(estate_config, 0.01, credit_window=4)
    async with trio.open_nursery() as nursery:
        serve = functools.partial(server.serve, ssl_context=estate_server_context(served))
        _, port = await nursery.start(serve, "127.0.0.1", 0)
        plain = NetworkTransport(
            msgspec.structs.replace(FAST_LINK, address=f"127.0.0.1:{port}"),
            node_id="plain",
            clock=SystemClock(),
        )
        await nursery.start(plain.run)
        await trio.sleep(0.5)
        assert plain.sessions == 0 and server.nodes == {}
        nursery.cancel_scope.cancel()


def wire(node_id: str) -> Command:
    device = command()
    return Command(
        command_id=str(device.request_id),
        node_id=node_id,
        priority=device.priority,
        srv_variant=device.srv_variant,
        device_id=device.device_id,
        device_type=device.device_type,
        hub_id=device.hub_id,
        gbcs=device.gbcs,
        timeout_seconds=30,
    )


@pytest.mark.parametrize("comes_back", [True, False])
async def test_a_reply_whose_node_left_goes_to_it_when_back_or_to_another_node(
    estate_config: Config, comes_back: bool
) -> None:
    # 0.6 s per command (WAN + HAN); a reply waits 1 s for its node to come back.
    server = slow_estate(estate_config, 0.3, credit_window=4, orphan_grace_seconds=1.0)
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        other = await RawNode.connect(port, "node-b")
        leaving = await RawNode.connect(port, "node-a")
        sent = wire("node-a")
        await leaving.stream.send_all(encode(sent))
        await wait_until(lambda: server.commands_received == 1)
        await leaving.stream.aclose()  # gone before its device answers
        if comes_back:
            back = await RawNode.connect(port, "node-a")
            with trio.fail_after(5):
                reply = await back.next_reply()
        else:
            with trio.fail_after(5):
                reply = await other.next_reply()  # after the grace
        assert reply.command_id == sent.command_id
        assert reply.outcome is DeviceOutcome.RESPONDED
        nursery.cancel_scope.cancel()


def test_start_up_names_an_estate_tls_file_it_cannot_use(tmp_path: Path) -> None:
    """Checked by `load_for_start`, so `duisgw config check` says it before a start does."""
    config = default_config(tmp_path)
    missing = str(tmp_path / "no-such-ca.pem")
    config = msgspec.structs.replace(
        config,
        estate=msgspec.structs.replace(FAST_LINK, tls=EstateTls(ca=missing)),
    )
    with pytest.raises(StartupError, match=r"no-such-ca\.pem"):
        load_for_start(config, SystemClock())
