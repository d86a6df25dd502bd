"""An estate service and gateway nodes on real sockets, for the estate-link tests."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import trio

from gateway.core.clock import SystemClock
from gateway.core.config import Config
from gateway.core.estate_config import EstateConfig
from gateway.core.estate_link import PROTOCOL_VERSION, Credit, Deframer, Hello, Reply, encode
from gateway.core.simulator_config import LinkProfile, SimulatorConfig
from gateway.devkit.estate import DEFAULT_USERS_TOML
from gateway.devkit.estate_server import EstateServer
from gateway.devkit.simulator import Simulator
from gateway.edge.estate_link import NetworkTransport
from gateway.stores.operator_files import load_inventory
from tests.harness import default_config, fast_simulator, set_response_url
from tests.receiver import Receiver

SUPPLIER = "90-B3-D5-1F-30-01-00-00"
CV1_READ = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"

FAST_LINK = EstateConfig(
    transport="network",
    heartbeat_seconds=0.5,
    reconnect_initial_seconds=0.05,
    reconnect_max_seconds=0.2,
    connect_timeout_seconds=2.0,
    command_timeout_seconds=20.0,
    orphan_grace_seconds=0.5,
)


def node_config(
    state_dir: Path, receiver_port: int, estate_port: int, node_id: str, **link: object
) -> Config:
    """A gateway node on the embedded default's files, its device transport the estate
    link, its supplier's responses going to a test receiver."""
    config = default_config(state_dir)
    users = state_dir / "users-with-url.toml"
    users.write_text(
        set_response_url(DEFAULT_USERS_TOML, SUPPLIER, f"http://127.0.0.1:{receiver_port}/duis")
    )
    registry = msgspec.structs.replace(config.registry, users_file=str(users))
    estate = msgspec.structs.replace(
        FAST_LINK, address=f"127.0.0.1:{estate_port}", node_id=node_id, **link
    )
    return msgspec.structs.replace(config, registry=registry, estate=estate)


def estate_server(config: Config, **link: object) -> EstateServer:
    """The simulated estate over `config`'s inventory and simulator settings."""
    inventory = load_inventory(Path(config.registry.inventory_file))
    simulator = Simulator.for_inventory(lambda: inventory, config.simulator, seed=7)
    return EstateServer(simulator, msgspec.structs.replace(FAST_LINK, **link))


def transport_for(config: Config) -> NetworkTransport:
    return NetworkTransport(
        config.estate, node_id=config.estate.node_id, clock=SystemClock(), rng=random.Random(1)
    )


async def wait_until(predicate: object, seconds: float = 30.0) -> None:
    assert callable(predicate)
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.02)


async def start_receiver(nursery: trio.Nursery) -> tuple[Receiver, int]:
    receiver = Receiver()
    port = await nursery.start(receiver.serve)
    return receiver, port


def transport(port: int, **link: object) -> NetworkTransport:
    config = msgspec.structs.replace(FAST_LINK, address=f"127.0.0.1:{port}", **link)
    return NetworkTransport(config, node_id="node-t", clock=SystemClock(), rng=random.Random(3))


def slow_estate(
    config: Config,
    seconds: float,
    *,
    credit_window: int,
    hub_capacity: int = 1,
    auth_token: str | None = None,
    **link: object,
) -> EstateServer:
    """Every device answers after `seconds`."""
    slow = LinkProfile(
        distribution="fixed", latency_median_seconds=seconds, latency_p99_seconds=seconds
    )
    simulator_config = msgspec.structs.replace(
        fast_simulator(),
        wan_profiles={name: slow for name in SimulatorConfig().wan_profiles},
        hub_capacity=hub_capacity,
    )
    inventory = load_inventory(Path(config.registry.inventory_file))
    devices = Simulator.for_inventory(lambda: inventory, simulator_config)
    return EstateServer(
        devices,
        msgspec.structs.replace(FAST_LINK, credit_window=credit_window, **link),
        auth_token=auth_token,
    )


class RawNode:
    """A node speaking the link by hand: to leave at a chosen moment, or to see what
    credit and replies the estate sends it."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.deframer = Deframer()
        self.credit = 0  # granted by the estate, less what `spend` took
        self.replies: list[Reply] = []  # received and not yet taken by `next_reply`

    @classmethod
    async def connect(cls, port: int, node_id: str) -> RawNode:
        node = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await node.stream.send_all(
            encode(Hello(node_id=node_id, protocol_version=PROTOCOL_VERSION))
        )
        return node

    async def next_reply(self) -> Reply:
        while not self.replies:
            data = await self.stream.receive_some()
            assert data, "closed"
            self._take(data)
        return self.replies.pop(0)

    async def read_for(self, seconds: float) -> None:
        """Take what the estate sends for `seconds`."""
        with trio.move_on_after(seconds):
            while data := await self.stream.receive_some():
                self._take(data)

    def _take(self, data: bytes) -> None:
        for message in self.deframer.feed(data):
            if isinstance(message, Credit):
                self.credit += message.n
            elif isinstance(message, Reply):
                self.replies.append(message)
