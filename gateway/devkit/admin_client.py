"""`duisgw quarantine|outbox|thresholds|replay|trust|techspec|reload|status|inbox`: the
operator's commands, over the admin API (`techspec`: gateway/devkit/techspec_client.py).

Each sends the admin token: `DUISGW_ADMIN_TOKEN` if set, else the token file of
the gateway's config (`--config`, or `--state-dir`'s duisgw.toml; default
./duisgw-state), which also gives the admin address unless `--admin` names one.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx

from gateway.core.config import Config, ConfigError
from gateway.devkit import techspec_client
from gateway.devkit.default import CONFIG_NAME, DEFAULT_STATE_DIR
from gateway.edge.admin_auth import TOKEN_ENV, AdminTokenError, admin_token_path, read_admin_token
from gateway.stores.operator_files import load_config

DEFAULT_ADMIN_URL = "http://127.0.0.1:8080"
CALL_TIMEOUT_SECONDS = 10.0
# Releasing a synchronous request waits for its device.
RELEASE_TIMEOUT_SECONDS = 60.0


class AdminAccess:
    """Where the admin API is and the token it takes."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}


def admin_access(args: argparse.Namespace, environ: Mapping[str, str]) -> AdminAccess:
    """From --admin, --config/--state-dir and the environment (flags win over it).

    AdminTokenError when no token can be found.
    """
    env_token = environ.get(TOKEN_ENV, "").strip()
    explicit = args.config is not None or args.state_dir is not None
    config_path = args.config or (args.state_dir or DEFAULT_STATE_DIR) / CONFIG_NAME
    config: Config | None = None
    needs_config = explicit or not (env_token and args.admin)
    if needs_config and (explicit or config_path.exists()):
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise AdminTokenError(str(exc)) from None
    base = args.admin or (_admin_url(config) if config is not None else DEFAULT_ADMIN_URL)
    if env_token and not explicit:
        return AdminAccess(base, env_token)
    if config is None:
        raise AdminTokenError(
            f"no admin token: set {TOKEN_ENV}, or give --config or --state-dir "
            f"(there is no {config_path})"
        )
    return AdminAccess(base, read_admin_token(admin_token_path(config)))


def _admin_url(config: Config) -> str:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.admin.host, config.admin.host)
    return f"http://{f'[{host}]' if ':' in host else host}:{config.admin.port}"


def add_arguments(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    quarantine = commands.add_parser(
        "quarantine", help="list, show, release or delete held requests"
    )
    q = quarantine.add_subparsers(dest="action", required=True)
    listing = q.add_parser(
        "list", help="held requests (filters: --user-id, --srv, --min-age-seconds)"
    )
    listing.add_argument("--user-id")
    listing.add_argument("--srv")
    listing.add_argument("--min-age-seconds", type=float)
    listing.add_argument(
        "--state",
        default="held",
        help="held, releasing, released or deleted (expired ones are deleted)",
    )
    listing.add_argument("--after-ref", type=int, help="the next page: refs after this one")
    listing.add_argument("--limit", type=int, help="at most this many (1-1000)")
    q.add_parser("show").add_argument("ref", type=int)
    for name in ("release", "delete"):
        decide = q.add_parser(name)
        decide.add_argument("ref", type=int)
        decide.add_argument("--reason", help="why, for the quarantine's audit trail")

    outbox = commands.add_parser("outbox", help="pending and dead-lettered deliveries")
    o = outbox.add_subparsers(dest="action", required=True)
    o.add_parser("pending").add_argument("--user-id")
    o.add_parser("dead-letters")
    for name, what in (
        ("retry", "make a dead letter pending again"),
        ("discard", "give up a dead letter for good"),
    ):
        letter = o.add_parser(name, help=what)
        letter.add_argument("message_id")
        letter.add_argument("--reason", help="why, for the gateway's log")

    thresholds = commands.add_parser("thresholds", help="show or replace the threshold rules")
    t = thresholds.add_subparsers(dest="action", required=True)
    t.add_parser("show")
    t.add_parser("set").add_argument("file", type=Path, help="TOML rules file")
    t.add_parser("audit", help="every change of the rules in force, newest first")

    replay = commands.add_parser(
        "replay", help="show or reset an originator's RequestID counter (audited)"
    )
    r = replay.add_subparsers(dest="action", required=True)
    r.add_parser("show", help="last counter, open Pre-Commands, recent resets").add_argument(
        "user_id"
    )
    reset = r.add_parser("reset", help="forget the last counter, or set it with --to")
    reset.add_argument("user_id")
    reset.add_argument("--to", type=int, help="the next counter must be above this")
    reset.add_argument("--by", help="operator name for the audit trail (default: login name)")
    reset.add_argument("--reason", default="", help="why, for the audit trail")

    trust = commands.add_parser(
        "trust", help="certificates, and each User's signing certificate per version"
    )
    tr = trust.add_subparsers(dest="action", required=True)
    tr.add_parser("certificates", help="every Organisation certificate with its validity")
    signers = tr.add_parser("signers", help="each User's signer under each served version")
    signers.add_argument(
        "--missing", action="store_true", help="only Users some served version would refuse"
    )

    techspec_leaves = techspec_client.add_arguments(commands)
    inbox = commands.add_parser("inbox", help="what reached the dev inbox (embedded default)")
    inbox.add_argument("--user-id")
    inbox.add_argument("--xml", action="store_true", help="print each document in full")
    leaves = [
        commands.add_parser("reload", help="reload trust and registry"),
        commands.add_parser("status", help="versions, counts, skipped certificates, outbox"),
        inbox,
        *techspec_leaves,
    ]
    for group in (q, o, t, r, tr):
        leaves.extend(group.choices.values())
    for leaf in leaves:
        leaf.add_argument(
            "--admin", help=f"admin base URL (default: the config's, else {DEFAULT_ADMIN_URL})"
        )
        leaf.add_argument("--config", type=Path, help="the gateway's config (token, address)")
        leaf.add_argument(
            "--state-dir",
            type=Path,
            help=f"the embedded default's state directory (default: {DEFAULT_STATE_DIR})",
        )


def run(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    if args.command == "techspec" and (status := techspec_client.offline(args)) is not None:
        return status
    try:
        access = admin_access(args, environ)
    except AdminTokenError as exc:
        print(f"duisgw {args.command}: {exc}", file=sys.stderr)
        return 2
    try:
        with httpx.Client(
            base_url=access.base_url,
            headers=access.headers,
            timeout=CALL_TIMEOUT_SECONDS,
            trust_env=False,  # the admin API is ours: no proxy from the environment
        ) as client:
            response = _call(args, client)
    except httpx.HTTPError as exc:
        print(f"duisgw {args.command}: {access.base_url}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the file to send (thresholds set, techspec ... set)
        print(f"duisgw {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "inbox" and response.status_code == 200:
        for message in response.json():
            print(
                f"{message['received_at']}  {message['user_id']}  {message['kind']:8}  "
                f"{message['response_code'] or '-':5}  {message['request_id'] or '-'}"
            )
            if args.xml:
                print(message["xml"])
        return 0
    print(response.text)
    return 0 if response.status_code < 400 else 1


def _call(args: argparse.Namespace, client: httpx.Client) -> httpx.Response:
    command, action = args.command, getattr(args, "action", None)
    if command == "reload":
        return client.post("/admin/reload")
    if command == "status":
        return client.get("/admin/status")
    if command == "inbox":
        params = {"user_id": args.user_id} if args.user_id else {}
        return client.get("/inbox", params=params)
    if command == "quarantine":
        if action == "list":
            params = {
                k: v
                for k, v in (
                    ("user_id", args.user_id),
                    ("srv", args.srv),
                    ("min_age_seconds", args.min_age_seconds),
                    ("state", args.state),
                    ("after_ref", args.after_ref),
                    ("limit", args.limit),
                )
                if v is not None
            }
            return client.get("/admin/quarantine", params=params)
        if action == "show":
            return client.get(f"/admin/quarantine/{args.ref}")
        return client.post(
            f"/admin/quarantine/{args.ref}/{action}",
            json=None if args.reason is None else {"reason": args.reason},
            timeout=RELEASE_TIMEOUT_SECONDS,
        )
    if command == "trust":
        if action == "certificates":
            return client.get("/admin/trust/certificates")
        return client.get(
            "/admin/trust/signers", params={"missing": "true"} if args.missing else {}
        )
    if command == "outbox":
        if action == "pending":
            params = {"user_id": args.user_id} if args.user_id else {}
            return client.get("/admin/outbox/pending", params=params)
        if action == "dead-letters":
            return client.get("/admin/outbox/dead-letters")
        body = {"reason": args.reason} if args.reason else None
        return client.post(f"/admin/outbox/dead-letters/{args.message_id}/{action}", json=body)
    if command == "techspec":
        return techspec_client.call(args, client, _login_name)
    if command == "replay":
        if action == "show":
            return client.get(f"/admin/replay/{args.user_id}")
        body = {"operator": args.by or _login_name(), "to": args.to, "reason": args.reason}
        return client.post(f"/admin/replay/{args.user_id}/reset", json=body)
    if action == "show":
        return client.get("/admin/thresholds")
    if action == "audit":
        return client.get("/admin/thresholds/audit")
    return client.put(
        "/admin/thresholds",
        content=args.file.read_bytes(),
        headers={"Content-Type": "application/toml"},
    )


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name to be found: the audit needs one anyway
        return "unknown"
