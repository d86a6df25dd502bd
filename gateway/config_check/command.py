"""`duisgw config check [--config FILE | --state-dir DIR] [--workers N] [--no-ports] [--json]`.

Exit 0 when the gateway can start with the configuration (warnings or not), 2 when
it cannot (the same status `duisgw serve` exits with), each problem on stderr as the
line start-up prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.core.clock import SystemClock
from gateway.devkit.default import CONFIG_NAME, DEFAULT_STATE_DIR

EXIT_CANNOT_START = 2  # as `duisgw serve` exits on a bad config


def add_arguments(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    config = commands.add_parser("config", help="check a configuration without serving")
    actions = config.add_subparsers(dest="config_action", required=True)
    check = actions.add_parser(
        "check",
        help="load and validate everything start-up would (config, trust, registry, "
        "threshold rules, versions, XSDs, signing key, TLS, ports) without serving",
    )
    check.add_argument("--config", type=Path, help="TOML config file")
    check.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"without --config: check DIR/{CONFIG_NAME} (default: ./duisgw-state)",
    )
    check.add_argument("--workers", type=int, default=1, help="as `duisgw serve --workers N`")
    check.add_argument(
        "--no-ports",
        action="store_true",
        help="do not probe the listen ports (e.g. the gateway is running on them)",
    )
    check.add_argument("--json", action="store_true", help="the report as one JSON object")


def run(args: argparse.Namespace) -> int:
    # Imported here, for this command only: the other `duisgw` commands then start
    # without the daemon's modules (gateway/cli.py does the same for serve). Not a
    # hidden cycle: the import contract reads function-local imports too.
    from gateway.config_check.check import run_check
    from gateway.config_check.render import error_lines, render_json, render_text

    path = args.config if args.config is not None else args.state_dir / CONFIG_NAME
    report = run_check(path, SystemClock(), workers=args.workers, probe_ports=not args.no_ports)
    print(render_json(report) if args.json else render_text(report))
    for line in error_lines(report):
        print(line, file=sys.stderr)
    return 0 if report.ok else EXIT_CANNOT_START
