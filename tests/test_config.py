"""Config errors are refused at start-up with a message naming the key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.core.config import ConfigError
from gateway.devkit.default import ensure_default_state
from gateway.stores.operator_files import load_config


@pytest.fixture
def default_text(tmp_path: Path) -> tuple[Path, str]:
    path = ensure_default_state(tmp_path, dt.datetime.now(dt.UTC))
    return path, path.read_text()


def test_default_config_loads_and_resolves_paths(default_text: tuple[Path, str]) -> None:
    path, _ = default_text
    config = load_config(path)
    assert config.listen.port == 8079
    assert Path(config.registry.users_file).is_absolute()
    assert Path(config.trust.dcc_signing_key).exists()


# Broken configs and a word the refusal must name (tests/test_config_check.py runs
# `duisgw config check` over the same table).
BROKEN_CONFIGS: list[tuple[Callable[[str], str], str]] = [
    (lambda t: t.replace("[listen]", "[listen]\nprot = 1"), "prot"),
    (lambda t: t.replace("port = 8079", "port = 99999"), "$.listen.port"),
    (lambda t: t.replace('store = "memory"', 'store = "etcd"'), "$.thresholds.store"),
    (
        lambda t: t.replace('dcc_eui64 = "90-B3-D5-1F-30-00-00-02"', 'dcc_eui64 = "nope"'),
        "$.duis.dcc_eui64",
    ),
    (lambda t: t + "\n[limits]\nmax_body_bytes = 10\n", "$.limits.max_body_bytes"),
    (lambda t: t + "\n[limits]\nsend_timeout_seconds = 0\n", "$.limits.send_timeout_seconds"),
    (
        lambda t: t + "\n[limits]\nmax_connections_per_peer = 0\n",
        "$.limits.max_connections_per_peer",
    ),
    # The h11 path is gone: an old config says so instead of "unknown field".
    (lambda t: t + '\n[http]\nparser = "httptools"\n', "httptools is the only HTTP parser"),
    (lambda t: t + '\n[http]\nparser = "h11"\n', "delete the [http] table"),
    (lambda t: t.replace("[registry]\n", "[registry]\nusers = 1\n"), "users"),
    (lambda t: t.replace('users_file = "users.toml"\n', ""), "users_file"),
]


@pytest.mark.parametrize(("edit", "named"), BROKEN_CONFIGS)
def test_bad_config_names_the_key(
    tmp_path: Path, default_text: tuple[Path, str], edit: Callable[[str], str], named: str
) -> None:
    _, text = default_text
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(text))
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert named in str(caught.value)


def test_edge_limits_are_read_from_the_config(
    tmp_path: Path, default_text: tuple[Path, str]
) -> None:
    _, text = default_text
    path = tmp_path / "limits.toml"
    path.write_text(text + "\n[limits]\nsend_timeout_seconds = 2.5\nmax_connections_per_peer = 7\n")
    limits = load_config(path).limits
    assert (limits.send_timeout_seconds, limits.max_connections_per_peer) == (2.5, 7)


def test_unreadable_and_non_toml_configs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[listen\nport=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def test_serve_refuses_clearly_when_it_cannot_start(
    tmp_path: Path, default_text: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A taken port or a missing file: one line naming it, exit 2, no traceback."""
    import socket

    from gateway.cli import main

    _, text = default_text
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = tmp_path / "busy.toml"
        busy.write_text(
            text.replace("port = 8079", f"port = {port}").replace("port = 8080", "port = 0")
        )
        assert main(["serve", "--config", str(busy)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    missing = tmp_path / "missing.toml"
    missing.write_text(text.replace('users_file = "users.toml"', 'users_file = "nowhere.toml"'))
    assert main(["serve", "--config", str(missing)]) == 2
    assert "nowhere.toml" in capsys.readouterr().err
