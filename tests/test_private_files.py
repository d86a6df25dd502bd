"""Files holding messages or credentials are 0600 in a 0700 state directory, including
what an earlier version left readable and SQLite's -wal and -shm files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.stores.private_files import (
    append_private,
    prepare_private_sqlite,
    tighten_state_dir,
    write_private_atomically,
)
from tests.harness import default_config, next_counter, response_code, running_gateway

ECS17B = "duis/samples/requests/ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML"
PRIVATE_SUFFIXES = (".sqlite", "-wal", "-shm", ".jsonl", ".token")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private_file_modes(directory: Path) -> dict[str, int]:
    return {p.name: mode(p) for p in directory.iterdir() if p.name.endswith(PRIVATE_SUFFIXES)}


def as_an_earlier_version_left_it(state: Path) -> None:
    state.chmod(0o755)
    (state / "thresholds-audit.jsonl").write_text("{}\n")


async def test_a_running_gateway_keeps_its_state_private(tmp_path: Path, shared_dir: Path) -> None:
    old = os.umask(0o022)  # what a login shell usually has: files 0644
    try:
        config = default_config(tmp_path)
        as_an_earlier_version_left_it(tmp_path)
        async with running_gateway(config, [tmp_path / "pki"]) as gw:
            # Acknowledged: the request is journaled, its replay counter committed.
            ack = await gw.send((shared_dir / ECS17B).read_bytes(), counter=next_counter())
            assert response_code(ack.content) == "I99"
            modes = private_file_modes(tmp_path)
            journals = {"replay.sqlite", "outbox.sqlite", "jobs.sqlite", "quarantine.sqlite"}
            assert journals | {"thresholds.sqlite", "techspec.sqlite"} <= set(modes)
            assert {"jobs.sqlite-wal", "jobs.sqlite-shm", "thresholds-audit.jsonl"} <= set(modes)
            assert {name: m for name, m in modes.items() if m != 0o600} == {}
            assert mode(tmp_path) == 0o700
    finally:
        os.umask(old)


def test_helpers_create_0600_and_tighten_what_is_looser(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        append_private(tmp_path / "a.jsonl", b"1\n")
        append_private(tmp_path / "a.jsonl", b"2\n")
        assert (tmp_path / "a.jsonl").read_bytes() == b"1\n2\n"
        write_private_atomically(tmp_path / "b.jsonl", b"x")
        loose = tmp_path / "c.sqlite"
        loose.write_bytes(b"")
        (tmp_path / "c.sqlite-wal").write_bytes(b"")
        prepare_private_sqlite(loose)
        prepare_private_sqlite(tmp_path / "new.sqlite")
        (tmp_path / "old.jsonl").write_text("")
        (tmp_path / "duisgw.toml").write_text("")  # configuration: left as it is
        tmp_path.chmod(0o755)
        tighten_state_dir([tmp_path])
        for name in ("a.jsonl", "b.jsonl", "c.sqlite", "c.sqlite-wal", "new.sqlite", "old.jsonl"):
            assert mode(tmp_path / name) == 0o600, name
        assert mode(tmp_path / "duisgw.toml") == 0o644
        assert mode(tmp_path) == 0o700
    finally:
        os.umask(old)
