"""`duisgw_checks_cpu_seconds`: the serving thread's CPU in each request's checks.

bench.compare sets it against the same checks timed alone (issue 15), so it must count
every request that reached the checks, refused ones included, and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from tests.harness import default_config, response_code, running_gateway

INVENTORY = "duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML"


async def test_every_checked_request_is_timed_and_only_those(
    tmp_path: Path, shared_dir: Path
) -> None:
    async with running_gateway(default_config(tmp_path), [tmp_path / "pki"]) as gw:
        registry = gw.metrics.registry

        def sample(suffix: str) -> float:
            return registry.get_sample_value("duisgw_checks_cpu_seconds" + suffix) or 0.0

        answer = await gw.send((shared_dir / INVENTORY).read_bytes())
        assert answer.status_code == 200 and response_code(answer.content) == "I0"
        assert sample("_count") == 1
        first = sample("_sum")
        assert first > 0.0

        # Refused by the checks themselves (not XML): timed as well.
        refused = await gw.post("/api/v1/serviceS", b"not xml at all")
        assert refused.status_code == 400
        assert sample("_count") == 2
        assert sample("_sum") >= first

        # Refused before the pipeline (no such endpoint): never reaches the checks.
        missing = await gw.post("/api/v1/nowhere", b"<x/>")
        assert missing.status_code == 404
        assert sample("_count") == 2
