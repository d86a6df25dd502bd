"""`duisgw`: serve the gateway, send requests as a User, and run Parse and Correlate."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import os
import sys
from pathlib import Path

import httpx
import trio

from gateway.config_check import command as config_check
from gateway.core.config import Config, ConfigError, StartupError
from gateway.core.sd_notify import NotifyConfigError, status
from gateway.devkit import admin_client
from gateway.devkit.client import ClientError, fresh_counter, post, sign_request
from gateway.devkit.default import DEFAULT_STATE_DIR, ensure_default_state
from gateway.edge.admin_auth import admin_token_path
from gateway.edge.log_format import (
    LOG_FORMATS,
    LogFormat,
    configure_logging,
    default_log_format,
    json_line,
)
from gateway.stores.operator_files import load_config
from gateway.stores.private_files import PRIVATE_UMASK
from parse_correlate import cli as pc_cli

log = logging.getLogger("duisgw")


def main(argv: list[str] | None = None) -> int:
    return _run(build_parser().parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="duisgw", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (embedded default if no --config)")
    serve.add_argument("--config", type=Path, help="TOML config file")
    serve.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="embedded default's state directory (default: ./duisgw-state)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the DUIS port (SO_REUSEPORT)",
    )
    serve.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="text, or one JSON object per line (default: text on a terminal, json otherwise)",
    )
    serve.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    serve.add_argument("--worker-count", type=int, default=1, help=argparse.SUPPRESS)

    send = commands.add_parser("send", help="sign a DUIS request file and post it")
    send.add_argument("file", type=Path)
    send.add_argument("--as", dest="as_user", help="sign and send as this User ID (EUI-64)")
    send.add_argument("--url", default="http://127.0.0.1:8079", help="gateway base URL")
    send.add_argument(
        "--keys",
        type=Path,
        action="append",
        help="directory of <name>.cert.pem/<name>.key.pem (default: the "
        "embedded default's pki/); repeatable",
    )
    send.add_argument("--counter", type=int, help="RequestID counter (default: fresh)")
    send.add_argument(
        "--keep-counter",
        action="store_true",
        help="keep the file's RequestID counter (e.g. a SignedPreCommand)",
    )
    send.add_argument("--print-request", action="store_true", help="print the signed request")
    send.add_argument("--save-request", type=Path, help="write the signed request here")
    send.add_argument("--save-response", type=Path, help="write the response body here")

    estate = commands.add_parser("estate", help="the simulated device estate as its own service")
    estate_commands = estate.add_subparsers(dest="estate_command", required=True)
    estate_serve = estate_commands.add_parser(
        "serve", help="serve the simulated estate on the estate link (docs/estate-link.md)"
    )
    estate_serve.add_argument(
        "--listen", required=True, help="HOST:PORT to listen on (port 0: any free port)"
    )
    estate_serve.add_argument(
        "--config", type=Path, help="gateway TOML config: [registry], [simulator], [estate]"
    )
    estate_serve.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="embedded default's state directory when there is no --config",
    )

    admin_client.add_arguments(commands)
    config_check.add_arguments(commands)
    pc = commands.add_parser("pc", help="Parse and Correlate for Users (GBCS -> MMC output)")
    pc_cli.add_arguments(pc)
    return parser


def _run(args: argparse.Namespace) -> int:
    quiet = args.command not in ("serve", "estate")  # client commands print results, not logs
    log_format: LogFormat = "text"
    if args.command == "serve":
        log_format = args.log_format or default_log_format(sys.stderr)
        args.log_format = log_format  # the workers of `--workers N` are told it as chosen
    configure_logging(
        log_format,
        logging.DEBUG if args.verbose else (logging.WARNING if quiet else logging.INFO),
    )
    if args.command == "serve":
        return _serve(args)
    if args.command == "estate":
        return _estate_serve(args)
    if args.command == "send":
        return _send(args)
    if args.command == "pc":
        return pc_cli.run(args)
    if args.command == "config":
        return config_check.run(args)
    return admin_client.run(args)


def _say(log_format: LogFormat, level: str, event: str | None, message: str) -> None:
    """A start-up failure on stderr, one line: `duisgw: event: message`, or JSON."""
    if log_format == "json":
        line = json_line(level, "duisgw", event or "cannot start", reason=message)
    else:
        line = f"duisgw: {event}: {message}" if event else f"duisgw: {message}"
    print(line, file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace) -> int:
    # Imported here, for serving only: the client commands (send, pc, the admin ones)
    # then start without the daemon's modules (about 0.5 s instead of 0.9 s here).
    # Not a hidden cycle: the layers contract and tools/import_cycles.py read these too.
    from gateway.compose import serve
    from gateway.edge.service_notifier import ServiceNotifier
    from gateway.edge.workers import WorkerConfigError, run_workers

    # Whatever the daemon (and its workers) create holds messages or keys: owner only.
    os.umask(PRIVATE_UMASK)
    log_format: LogFormat = args.log_format
    banner = log_format == "text" and args.worker_count == 1
    if args.config is None:
        config_path = ensure_default_state(args.state_dir, dt.datetime.now(dt.UTC))
        if banner:
            print(f"embedded default state in {args.state_dir.resolve()}", file=sys.stderr)
    else:
        config_path = args.config
    try:
        notifier = ServiceNotifier.from_environ(os.environ)
    except NotifyConfigError as exc:
        _say(log_format, "error", "cannot start", str(exc))
        return 2
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _say(log_format, "error", "config error", str(exc))
        notifier.send(status(f"config error: {exc}"))
        return 2
    if banner:
        _print_banner(config_path, config)
    if args.workers > 1:
        try:
            return run_workers(config_path, config, args.workers, log_format, notifier)
        except WorkerConfigError as exc:
            _say(log_format, "error", None, str(exc))
            return 2
    worker = (args.worker_index, args.worker_count)
    failures: list[BaseException] = []
    try:
        trio.run(functools.partial(serve, config, worker=worker, notifier=notifier))
    except* StartupError as group:  # trio wraps errors from its nurseries in groups
        failures.extend(_leaves(group))
    except* KeyboardInterrupt:
        pass
    for failure in failures:
        _say(log_format, "error", "cannot start", str(failure))
        notifier.send(status(f"cannot start: {failure}"))
    notifier.close()
    return 2 if failures else 0


def _estate_serve(args: argparse.Namespace) -> int:
    from gateway.devkit.estate_server import run_estate_until_terminated

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        print(
            f"duisgw estate serve: --listen must be HOST:PORT, not {args.listen!r}", file=sys.stderr
        )
        return 2
    if args.config is None:
        config_path = ensure_default_state(args.state_dir, dt.datetime.now(dt.UTC))
    else:
        config_path = args.config
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"duisgw estate serve: config error: {exc}", file=sys.stderr)
        return 2
    failures: list[BaseException] = []
    try:
        trio.run(run_estate_until_terminated, config, host.strip("[]"), int(port))
    except* (StartupError, OSError) as group:
        failures.extend(_leaves(group))
    except* KeyboardInterrupt:
        pass
    for failure in failures:
        print(f"duisgw estate serve: cannot start: {failure}", file=sys.stderr)
    return 2 if failures else 0


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _print_banner(config_path: Path, config: Config) -> None:
    scheme = "https" if config.tls else "http"
    pki = Path(config.trust.certificate_dirs[0]) if config.trust.certificate_dirs else None
    print(
        f"duisgw: config {config_path.resolve()}\n"
        f"  DUIS    {scheme}://{config.listen.host}:{config.listen.port}/api/v1/service{{S,T,D}}\n"
        f"  admin   http://{config.admin.host}:{config.admin.port}/healthz /readyz /metrics\n"
        f"          other routes need the bearer token in {admin_token_path(config)}\n"
        f"  users   {config.registry.users_file}\n"
        f"  devices {config.registry.inventory_file}\n"
        f"  PKI     {pki}\n"
        f"  versions {', '.join(config.duis.versions)}\n"
        "send a request:\n"
        "  duisgw send ../shared/duis/samples/requests/8.2_READ_INVENTORY_REQUEST_DUIS.XML",
        file=sys.stderr,
        flush=True,
    )


def _send(args: argparse.Namespace) -> int:
    keys = args.keys or [DEFAULT_STATE_DIR / "pki"]
    counter = None if args.keep_counter else (args.counter or fresh_counter())
    try:
        signed, path = sign_request(
            args.file.read_bytes(), keys, counter=counter, as_user=args.as_user
        )
    except (OSError, ValueError, ClientError) as exc:
        print(f"duisgw send: {exc}", file=sys.stderr)
        return 2
    if args.print_request:
        print(signed.decode())
    if args.save_request:
        args.save_request.write_bytes(signed)
    url = args.url.rstrip("/") + path
    try:
        response = post(url, signed)
    except httpx.HTTPError as exc:
        print(f"duisgw send: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"HTTP {response.status_code} from {url}", file=sys.stderr)
    print(response.text)
    if args.save_response:
        args.save_response.write_bytes(response.content)
    return 0 if response.status_code < 500 else 1


if __name__ == "__main__":
    sys.exit(main())
