"""`duisgw techspec ...`: the Technical Specification tables, the SM WAN coverage database
and the Install and Leave cases, over the admin API (/admin/techspec).

    duisgw techspec tables show [--document] | set FILE [--reason R] [--by NAME] | audit
    duisgw techspec tables example          the consultation's example tables (no call)
    duisgw techspec coverage show [--document] | set FILE [--reason R] [--by NAME] | audit
    duisgw techspec report [--warn-within-days N]
    duisgw techspec install-leave list | show HUB | close HUB [--reason ...]

`set` sends the file as TOML, or as JSON when its name ends in .json; `--by` defaults to
the login name. The admin client (gateway/devkit/admin_client.py) sends the token and
prints the answer.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import httpx

from gateway.core.techspec import example_tables_document
from gateway.core.techspec.install_leave import CloseReason

BASE = "/admin/techspec"


def add_arguments(commands: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:  # type: ignore[type-arg]
    """Add `techspec` to the duisgw commands; return the leaves that call the admin API."""
    techspec = commands.add_parser(
        "techspec", help="Technical Specification tables, SM WAN coverage, Install and Leave"
    )
    groups = techspec.add_subparsers(dest="topic", required=True)
    leaves: list[argparse.ArgumentParser] = []
    for topic, what in (("tables", "TS Applicability Tables"), ("coverage", "coverage database")):
        group = groups.add_parser(topic, help=f"the {what} in force").add_subparsers(
            dest="action", required=True
        )
        show = group.add_parser("show", help=f"the {what} revision in force")
        show.add_argument("--document", action="store_true", help="include the document")
        replace = group.add_parser("set", help=f"replace the {what} (audited)")
        replace.add_argument("file", type=Path, help="TOML, or JSON if the name ends in .json")
        replace.add_argument("--reason", default="", help="why, e.g. the SEC modification")
        replace.add_argument("--by", help="operator name for the audit (default: login name)")
        audit = group.add_parser("audit", help="every revision, newest first")
        leaves += [show, replace, audit]
        if topic == "tables":
            group.add_parser("example", help="print the consultation's example tables (TOML)")
    report = groups.add_parser(
        "report", help="devices whose version lost its MVP or whose MVP ends soon"
    )
    report.add_argument("--warn-within-days", type=int, help="default: the config's (90)")
    cases = groups.add_parser("install-leave", help="hubs installed without SM WAN")
    actions = cases.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="open cases, most urgent first")
    show_case = actions.add_parser("show", help="a hub's case and its history")
    show_case.add_argument("hub_id")
    close = actions.add_parser("close", help="close a hub's case")
    close.add_argument("hub_id")
    close.add_argument("--reason", choices=get_args(CloseReason), default="operator")
    return [*leaves, report, listing, show_case, close]


def offline(args: argparse.Namespace) -> int | None:
    """Commands that need no gateway: the exit status, or None to call the admin API."""
    if args.topic == "tables" and args.action == "example":
        sys.stdout.write(example_tables_document().decode())
        return 0
    return None


def call(
    args: argparse.Namespace, client: httpx.Client, login_name: Callable[[], str]
) -> httpx.Response:
    """`login_name`: who `set` is by when `--by` is not given."""
    topic, action = args.topic, getattr(args, "action", None)
    if topic == "report":
        days = args.warn_within_days
        return client.get(
            f"{BASE}/report", params={} if days is None else {"warn_within_days": days}
        )
    if topic == "install-leave":
        if action == "list":
            return client.get(f"{BASE}/install-leave")
        if action == "show":
            return client.get(f"{BASE}/install-leave/{args.hub_id}")
        return client.post(
            f"{BASE}/install-leave/{args.hub_id}/close", params={"reason": args.reason}
        )
    path = f"{BASE}/{topic}"
    if action == "show":
        return client.get(path, params={"document": 1} if args.document else {})
    if action == "audit":
        return client.get(f"{path}/audit")
    json_file = args.file.suffix.lower() == ".json"
    return client.put(
        path,
        content=args.file.read_bytes(),
        params={"reason": args.reason, "by": args.by or login_name()},
        headers={"Content-Type": "application/json" if json_file else "application/toml"},
    )
