"""deploy/duisgw.service: systemd accepts it, and it runs the daemon as the code expects.

`systemd-analyze verify` loads the unit as systemd would (offline: no running systemd
is needed) and checks that ExecStart= names an executable, so the unit is verified with
its ExecStart= binary pointed at this environment's `duisgw`; every other line is the
file's own. verify exits 0 even when it ignores a line it cannot parse, so the test
fails on any message that names the unit. Without systemd-analyze the test skips
(Debian: `apt-get install systemd`; .ci/run installs it), and under CI it fails.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import build_parser
from tests.conftest import PROJECT_ROOT

UNIT = PROJECT_ROOT / "deploy" / "duisgw.service"
INSTALLED_BINARY = "/opt/duisgw/venv/bin/duisgw"  # README: "Running in production"
VERIFY_TIMEOUT_SECONDS = 120


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        reason = "systemd-analyze not installed (Debian: apt-get install systemd)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}, and CI is set: .ci/run installs it")
        pytest.skip(reason)
    return path


def verify(systemd_analyze: str, folder: Path, text: str) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on a unit file holding `text`."""
    unit = folder / "duisgw.service"
    unit.write_text(text)
    return subprocess.run(
        [systemd_analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT_SECONDS,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )


def test_systemd_analyze_verify_accepts_the_unit(systemd_analyze: str, tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert INSTALLED_BINARY in text
    duisgw = Path(sys.executable).with_name("duisgw")
    assert duisgw.exists(), "the project is installed in this environment"
    done = verify(systemd_analyze, tmp_path, text.replace(INSTALLED_BINARY, str(duisgw)))
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "duisgw" in line]
    assert done.returncode == 0 and complaints == [], done.stdout + done.stderr


def test_verify_catches_a_line_systemd_would_ignore(systemd_analyze: str, tmp_path: Path) -> None:
    """The control for the test above: a bad line is reported, though verify exits 0."""
    duisgw = Path(sys.executable).with_name("duisgw")
    text = UNIT.read_text().replace(INSTALLED_BINARY, str(duisgw))
    done = verify(
        systemd_analyze, tmp_path, text.replace("Restart=on-failure", "Restart=sometimes")
    )
    assert "restart specifier" in done.stderr


def test_exec_start_is_a_command_duisgw_accepts() -> None:
    (exec_start,) = directives(UNIT.read_text())["ExecStart"]
    binary, *arguments = shlex.split(exec_start)
    assert binary == INSTALLED_BINARY
    args = build_parser().parse_args(arguments)
    assert args.command == "serve"
    assert args.log_format == "json"
    assert args.config == Path("/etc/duisgw/duisgw.toml")


def test_the_unit_asks_for_what_the_daemon_provides() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["KillMode"] == ["mixed"]  # the --workers supervisor passes SIGTERM on once
    assert unit["Restart"] == ["on-failure"] and unit["WatchdogSec"]
    assert unit["ProtectSystem"] == ["strict"] and unit["StateDirectory"] == ["duisgw"]
    assert unit["NoNewPrivileges"] == ["yes"] and unit["LimitNOFILE"]
