"""Two gateway processes (`--workers 2`) share one threshold count per User ID via Redis.

A burst from one User ID over both workers is held at the threshold within the
documented overshoot: with P = 2 processes and batch_size B, at most L + (P - 1) * B
requests are processed in the window, and never fewer than L.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from gateway.devkit.client import sign_request
from gateway.edge.admin_auth import read_admin_token
from tests.harness import next_counter, response_code
from tests.test_durability import write_config
from tests.test_thresholds_redis import REDIS_URL
from tests.test_workers import wait_ready, worker_ports

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"
LIMIT, BATCH, PROCESSES = 20, 4, 2


async def test_burst_over_two_workers_is_held_within_the_bound(
    tmp_path: Path, shared_dir: Path, redis_available: None
) -> None:
    duis, admin = worker_ports()
    config = write_config(tmp_path, duis, admin, receiver=9, latency=0.001)
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[[rules]]\nuser_id = "*"\nsrv = "8.2"\nwindow_seconds = 3600\nlimit = {LIMIT}\n'
        'kind = "user_quarantine"\n'
    )
    prefix = f"duisgw-test-{uuid.uuid4().hex[:8]}:"
    text = config.read_text().replace(
        '[thresholds]\nstore = "memory"',
        f'[thresholds]\nstore = "redis"\nrules_file = "{rules}"\n'
        f'[thresholds.redis]\nurl = "{REDIS_URL}"\nkey_prefix = "{prefix}"\nbatch_size = {BATCH}',
    )
    assert 'store = "redis"' in text
    config.write_text(text)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_ready([admin, admin + 1], process)
        xml = (shared_dir / INVENTORY).read_bytes()
        codes = []
        for _ in range(3 * LIMIT):
            signed, path = sign_request(xml, [tmp_path / "pki"], counter=next_counter())
            async with httpx.AsyncClient() as client:  # a fresh connection: either worker
                r = await client.post(
                    f"http://127.0.0.1:{duis}{path}",
                    content=signed,
                    headers={"content-type": "application/xml"},
                )
            codes.append(response_code(r.content))
        processed, held = codes.count("I0"), codes.count("I99")
        assert processed + held == 3 * LIMIT
        bound = LIMIT + (PROCESSES - 1) * BATCH
        print(f"processed {processed} held {held} (limit {LIMIT}, bound {bound})")
        assert LIMIT <= processed <= bound, codes
        token = read_admin_token(tmp_path / "admin.token")
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}) as client:
            quarantined = 0
            for port in (admin, admin + 1):
                quarantined += len(
                    (await client.get(f"http://127.0.0.1:{port}/admin/quarantine")).json()
                )
        # Both workers share one quarantine file: each lists every held request.
        assert quarantined == 2 * held
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        await delete_keys(prefix)


async def delete_keys(prefix: str) -> None:
    import coredis

    async with coredis.Redis.from_url(REDIS_URL) as client:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(keys)
