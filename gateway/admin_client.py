"""`duisgw quarantine|outbox|thresholds|replay|reload`: the operator's commands, over the
admin API."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:8080"


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
    for name in ("show", "release", "delete"):
        q.add_parser(name).add_argument("ref", type=int)

    outbox = commands.add_parser("outbox", help="pending and dead-lettered deliveries")
    o = outbox.add_subparsers(dest="action", required=True)
    o.add_parser("pending").add_argument("--user-id")
    o.add_parser("dead-letters")
    o.add_parser("retry").add_argument("message_id")

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

    inbox = commands.add_parser("inbox", help="what reached the dev inbox (embedded default)")
    inbox.add_argument("--user-id")
    inbox.add_argument("--xml", action="store_true", help="print each document in full")
    leaves = [commands.add_parser("reload", help="reload trust and registry"), inbox]
    for group in (q, o, t, r):
        leaves.extend(group.choices.values())
    for leaf in leaves:
        leaf.add_argument("--admin", default=DEFAULT_ADMIN_URL, help="admin base URL")


def run(args: argparse.Namespace) -> int:
    base = args.admin.rstrip("/")
    try:
        response = _call(args, base)
    except httpx.HTTPError as exc:
        print(f"duisgw {args.command}: {base}: {exc}", file=sys.stderr)
        return 1
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


def _call(args: argparse.Namespace, base: str) -> httpx.Response:
    command, action = args.command, getattr(args, "action", None)
    if command == "reload":
        return httpx.post(f"{base}/admin/reload")
    if command == "inbox":
        params = {"user_id": args.user_id} if args.user_id else {}
        return httpx.get(f"{base}/inbox", params=params)
    if command == "quarantine":
        if action == "list":
            params = {
                k: v
                for k, v in (
                    ("user_id", args.user_id),
                    ("srv", args.srv),
                    ("min_age_seconds", args.min_age_seconds),
                    ("state", args.state),
                )
                if v is not None
            }
            return httpx.get(f"{base}/admin/quarantine", params=params)
        if action == "show":
            return httpx.get(f"{base}/admin/quarantine/{args.ref}")
        return httpx.post(f"{base}/admin/quarantine/{args.ref}/{action}", timeout=60)
    if command == "outbox":
        if action == "pending":
            params = {"user_id": args.user_id} if args.user_id else {}
            return httpx.get(f"{base}/admin/outbox/pending", params=params)
        if action == "dead-letters":
            return httpx.get(f"{base}/admin/outbox/dead-letters")
        return httpx.post(f"{base}/admin/outbox/dead-letters/{args.message_id}/retry")
    if command == "replay":
        if action == "show":
            return httpx.get(f"{base}/admin/replay/{args.user_id}")
        body = {"operator": args.by or _login_name(), "to": args.to, "reason": args.reason}
        return httpx.post(f"{base}/admin/replay/{args.user_id}/reset", json=body)
    if action == "show":
        return httpx.get(f"{base}/admin/thresholds")
    if action == "audit":
        return httpx.get(f"{base}/admin/thresholds/audit")
    return httpx.put(f"{base}/admin/thresholds", content=args.file.read_bytes())


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name to be found: the audit needs one anyway
        return "unknown"
