"""`duisgw config check`: passes on the embedded default, and refuses every broken
config with the line `duisgw serve` prints for it, without serving or writing."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.ports import free_ports
from bench.redis_process import RedisProcess
from gateway.cli import main
from gateway.devkit.default import ensure_default_state
from tests.test_config import BROKEN_CONFIGS

DCC_KEY = "pki/dsp-xml-sign-90B3D51F30000002-ds.key.pem"
LOAD_CONTROLLER = "90-B3-D5-1F-30-01-00-08"
REDIS_URL = "redis://127.0.0.1:6379/0"
FAILURE_LINE = re.compile(r"duisgw: (cannot start|config error): ")


@pytest.fixture
def default_config(tmp_path: Path) -> Path:
    """The embedded default on ports nothing listens on (so the port probe passes)."""
    path = ensure_default_state(tmp_path / "state", dt.datetime.now(dt.UTC))
    duis, admin = free_ports(), free_ports()
    text = path.read_text().replace("port = 8079", f"port = {duis}")
    path.write_text(text.replace("port = 8080", f"port = {admin}"))
    return path


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["config", "check", *args])
    out, err = capsys.readouterr()
    return code, out, err


def serve_refusal(capsys: pytest.CaptureFixture[str], config: Path) -> tuple[int, str]:
    """What `duisgw serve` says for this config: its exit status and its failure lines
    (without the banner it prints before it starts)."""
    code = main(["serve", "--config", str(config), "--log-format", "text"])
    err = capsys.readouterr().err
    return code, "\n".join(line for line in err.splitlines() if FAILURE_LINE.match(line))


def test_the_embedded_default_passes(
    default_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(capsys, "--config", str(default_config))
    assert code == 0, err
    assert err == ""
    assert out.splitlines()[-1].startswith("OK: the gateway can start")
    for user in ("supplier-1", "network-operator", "supplier-2", "load-controller"):
        assert user in out
    # The dev PKI gives every User a signer under every served version (the load
    # controller signs 5.0 with its OU 7F certificate): nobody is reported.
    assert "cannot sign" not in out


def test_a_user_without_a_signer_for_a_version_is_named(
    default_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without its OU 7F certificate the load controller has only OU 08, which no 5.0
    # signer rule accepts (02, 03, 7F); from 5.1 on it signs with OU 87.
    for name in ("load-controller-7F-ds.cert.pem", "load-controller-7F-ka.cert.pem"):
        (default_config.parent / "pki" / name).unlink()
    code, out, _ = check(capsys, "--config", str(default_config))
    assert code == 0
    assert f"User {LOAD_CONTROLLER} (load-controller) cannot sign DUIS 5.0 requests" in out
    assert "cannot sign DUIS 5.1" not in out


def test_json_report_lists_users_certificates_and_listeners(
    default_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check(capsys, "--config", str(default_config), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True and report["errors"] == []
    assert report["versions"] == ["5.0", "5.1", "5.3", "5.4"]
    users = {u["user_id"]: u for u in report["users"]}
    supplier = users["90-B3-D5-1F-30-01-00-00"]
    assert {v["version"]: v["role_code"] for v in supplier["versions"]} == {
        "5.0": "02",
        "5.1": "87",
        "5.3": "87",
        "5.4": "87",
    }
    assert users["90-B3-D5-1F-30-00-00-02"]["roles"] == []  # the DCC's own ID sends nothing
    assert users["90-B3-D5-1F-30-00-00-02"]["missing_signer"] is False
    assert all(dt.datetime.fromisoformat(c["not_after"]) for c in report["certificates"])
    assert {listener["free"] for listener in report["listeners"]} == {True}


@pytest.mark.parametrize(("edit", "named"), BROKEN_CONFIGS)
def test_each_broken_config_fails_with_the_line_serve_prints(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[str], str],
    named: str,
) -> None:
    pristine = ensure_default_state(tmp_path, dt.datetime.now(dt.UTC))  # the table edits it
    bad = pristine.with_name("bad.toml")
    bad.write_text(edit(pristine.read_text()))
    code, _, err = check(capsys, "--config", str(bad))
    assert code == 2
    assert named in err
    assert (code, err.strip()) == serve_refusal(capsys, bad)


START_UP_FAILURES: list[tuple[Callable[[str], str], str]] = [
    (lambda t: t.replace('users_file = "users.toml"', 'users_file = "nowhere.toml"'), "nowhere"),
    (lambda t: t.replace(DCC_KEY, "pki/missing.key.pem"), "trust.dcc_signing_"),
    (lambda t: t.replace('versions = ["5.0"', 'versions = ["9.9"'), "no catalogue for DUIS"),
    (lambda t: t.replace("# xsd_dir", "xsd_dir = 'empty'\n#"), "duis.xsd_dir: no XSD"),
    (
        lambda t: t.replace('store = "memory"', 'store = "memory"\nrules_file = "rules.toml"'),
        "thresholds.rules_file",
    ),
    (lambda t: t.replace("ca_anchors = []", "ca_anchors = ['users.toml']"), "users.toml"),
    (
        lambda t: t.replace(
            '# [techspec.wan_available_alert]\n# dcc_alert_code = "N..."',
            '[techspec.wan_available_alert]\ndcc_alert_code = "N998"',
        ),
        "DCCAlertCode 'N998' is not defined in DUIS",
    ),
    (lambda t: tls(t, private_key="pki/tls/missing.key.pem"), "tls: cannot load"),
    (lambda t: tls(t, private_key="pki/tls/tls-ca.key.pem"), "tls: cannot load"),  # not its key
]


def tls(text: str, private_key: str) -> str:
    """The default config with its [tls] table uncommented and another private key."""
    text = text.replace("# [tls]\n# certificate", "[tls]\ncertificate")
    text = text.replace(
        '# private_key = "pki/tls/tls-server.key.pem"', f'private_key = "{private_key}"'
    )
    return text.replace("# client_ca", "client_ca")


@pytest.mark.parametrize(("edit", "named"), START_UP_FAILURES)
def test_start_up_failures_are_the_lines_serve_prints(
    default_config: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[str], str],
    named: str,
) -> None:
    folder = default_config.parent
    (folder / "empty").mkdir()
    (folder / "rules.toml").write_text("[[rules]]\nsrv = 1\n")
    bad = folder / "bad.toml"
    bad.write_text(edit(default_config.read_text()))
    code, _, err = check(capsys, "--config", str(bad))
    assert code == 2 and named in err, err
    assert err.startswith("duisgw: cannot start: ")
    assert (code, err.strip()) == serve_refusal(capsys, bad)


def test_a_port_in_use_is_refused_unless_not_probed(
    default_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = default_config.read_text()
        busy = default_config.with_name("busy.toml")
        duis = next(line for line in text.splitlines() if line.startswith("port = "))
        busy.write_text(text.replace(duis, f"port = {port}", 1))
        code, out, err = check(capsys, "--config", str(busy))
        assert code == 2
        assert err.strip() == f"duisgw: cannot start: cannot listen on 127.0.0.1:{port}: " + (
            "Address already in use"
        )
        assert f"duis 127.0.0.1:{port} IN USE" in out
        assert (code, err.strip()) == serve_refusal(capsys, busy)
        code, out, _ = check(capsys, "--config", str(busy), "--no-ports")
        assert code == 0 and f"duis 127.0.0.1:{port} not probed" in out


def test_worker_layout_is_checked(default_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = default_config.read_text()
    listen, admin = re.findall(r"^port = (\d+)$", text, re.M)
    clash = default_config.with_name("clash.toml")
    # Worker i's admin listener is on admin.port + i: worker 1's would be the DUIS port.
    clash.write_text(text.replace(f"port = {listen}", f"port = {int(admin) + 1}"))
    code, _, err = check(capsys, "--config", str(clash), "--workers", "2", "--no-ports")
    assert code == 2 and "include the DUIS port" in err
    code, _, err = check(capsys, "--config", str(default_config), "--workers", "2", "--no-ports")
    assert code == 0, err


def test_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = ensure_default_state(tmp_path / "state", dt.datetime.now(dt.UTC))
    elsewhere = source.with_name("elsewhere.toml")
    text = source.read_text().replace('state_dir = "."', 'state_dir = "fresh"')
    elsewhere.write_text(text.replace("port = 8079", "port = 0").replace("port = 8080", "port = 0"))
    code, out, err = check(capsys, "--config", str(elsewhere))
    assert code == 0, err
    assert not (source.parent / "fresh").exists()
    assert not (source.parent / "admin.token").exists()
    assert "not probed" in out  # port 0: any free port, nothing to probe


def test_an_unreadable_admin_token_is_refused(
    default_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = default_config.parent / "admin.token"
    token.write_text("short\n")
    token.chmod(0o600)
    code, _, err = check(capsys, "--config", str(default_config))
    assert code == 2 and "the admin token in" in err and "at least 32 characters" in err


def test_without_config_it_checks_the_state_dirs_config(
    default_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check(capsys, "--state-dir", str(default_config.parent))
    assert code == 0 and str(default_config) in out.splitlines()[0]
    code, _, err = check(capsys, "--state-dir", str(default_config.parent / "nothing"))
    assert code == 2 and "duisgw: config error: cannot read config" in err


def redis_config(config: Path, url: str) -> Path:
    path = config.with_name("redis.toml")
    store = f'store = "redis"\n[thresholds.redis]\nurl = "{url}"\nkey_prefix = "{uuid.uuid4()}:"'
    path.write_text(config.read_text().replace('store = "memory"', store))
    return path


def test_redis_that_does_not_answer_is_a_warning_without_its_password(
    default_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = redis_config(default_config, f"redis://ops:s3cret@127.0.0.1:{free_ports()}/0")
    code, out, err = check(capsys, "--config", str(nobody))
    assert code == 0, err  # the gateway starts without Redis (and answers 503 meanwhile)
    assert "Redis at redis://***@127.0.0.1:" in out and "does not answer" in out
    assert "s3cret" not in out


def test_redis_that_answers_is_no_warning(
    default_config: Path, capsys: pytest.CaptureFixture[str], redis_available: None
) -> None:
    code, out, _ = check(capsys, "--config", str(redis_config(default_config, REDIS_URL)))
    assert code == 0 and "Redis" not in out.split("Warnings:")[-1]


def state_config(config: Path, url: str) -> Path:
    """The default with `[state] backend = "redis"` (threshold counts follow it)."""
    path = config.with_name("state-redis.toml")
    text = config.read_text().replace('store = "memory"\n', "")
    path.write_text(
        text + f'\n[state]\nbackend = "redis"\n[state.redis]\nurl = "{url}"\nkey_prefix = "cc"\n'
    )
    return path


def test_the_state_backend_is_reported_with_what_an_acknowledgement_waits_for(
    default_config: Path, capsys: pytest.CaptureFixture[str], redis_server: RedisProcess
) -> None:
    code, out, err = check(capsys, "--config", str(default_config))
    assert code == 0 and "state        sqlite" in out, err
    code, out, err = check(capsys, "--config", str(state_config(default_config, redis_server.url)))
    assert code == 0, err
    assert f"state        redis (single: {redis_server.url}, key prefix cc)" in out
    assert "acknowledgements wait for Redis's fsync (appendfsync always)" in out
    assert "thresholds   redis store" in out  # the counts share the state's Redis
    assert "each node counts on its own" not in out
    pinned = state_config(default_config, redis_server.url)
    pinned.write_text(
        pinned.read_text().replace("[thresholds]\n", '[thresholds]\nstore = "memory"\n')
    )
    code, out, err = check(capsys, "--config", str(pinned))
    assert code == 0 and "each node counts on its own" in out, err


def test_a_redis_that_would_lose_acknowledgements_fails_the_check_as_serve_does(
    default_config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lax = RedisProcess(tmp_path / "lax", extra=("--appendfsync", "everysec"))
    lax.start()
    try:
        config = state_config(default_config, lax.url)
        code, _, err = check(capsys, "--config", str(config))
        assert code != 0 and "durability = always needs appendfsync always" in err
        serve_code, lines = serve_refusal(capsys, config)
        assert serve_code != 0 and "durability = always needs appendfsync always" in lines
    finally:
        lax.stop()
    gone = state_config(default_config, lax.url)  # stopped: nothing answers there now
    code, _, err = check(capsys, "--config", str(gone))
    assert code != 0 and "[state.redis]" in err
