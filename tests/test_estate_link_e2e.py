"""The estate link over real sockets: gateway nodes, one estate service, hostile peers."""

from __future__ import annotations

from pathlib import Path

import trio
from lxml import etree

from tests.estate_harness import (
    CV1_READ,
    estate_server,
    node_config,
    start_receiver,
    transport_for,
    wait_until,
)
from tests.harness import default_config, next_counter, response_code, running_gateway


def request_id_in(body: bytes) -> str:
    found = etree.fromstring(body).findtext("{*}Header/{*}RequestID")
    assert found
    return found


async def test_replies_return_to_the_node_that_sent_each_command(
    tmp_path: Path, shared_dir: Path
) -> None:
    read = (shared_dir / CV1_READ).read_bytes()
    server = estate_server(default_config(tmp_path / "estate"))
    per_node = 20
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        nodes = []
        for name in ("node-a", "node-b"):
            receiver, receiver_port = await start_receiver(nursery)
            config = node_config(tmp_path / name, receiver_port, port, name)
            transport = transport_for(config)
            nodes.append((name, config, transport, receiver))
        async with (
            running_gateway(nodes[0][1], [tmp_path / "node-a" / "pki"], nodes[0][2]) as gw_a,
            running_gateway(nodes[1][1], [tmp_path / "node-b" / "pki"], nodes[1][2]) as gw_b,
        ):
            sent: dict[str, set[str]] = {"node-a": set(), "node-b": set()}

            async def send_all(name: str, gw: object) -> None:
                for _ in range(per_node):
                    counter = next_counter()
                    ack = await gw.send(read, counter=counter)  # type: ignore[attr-defined]
                    assert response_code(ack.content) == "I99", ack.text
                    sent[name].add(f":{counter}")

            async with trio.open_nursery() as senders:
                senders.start_soon(send_all, "node-a", gw_a)
                senders.start_soon(send_all, "node-b", gw_b)
            for name, _, transport, receiver in nodes:
                await wait_until(lambda r=receiver: len(r.accepted) >= per_node)
                got = {":" + request_id_in(s.body).rsplit(":", 1)[1] for s in receiver.accepted}
                assert got == sent[name], name
                assert {response_code(s.body) for s in receiver.accepted} == {"I0"}
                assert transport.orphan_replies == 0
            assert server.commands_received == 2 * per_node
            assert server.nodes == {"node-a": 1, "node-b": 1}
        nursery.cancel_scope.cancel()
