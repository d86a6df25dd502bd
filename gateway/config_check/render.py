"""How `duisgw config check` shows its report: text for a person, JSON for a pipeline.

The errors are the lines start-up would print (`duisgw: cannot start: ...`) and go
to stderr; the rest of the report goes to stdout.
"""

from __future__ import annotations

from itertools import groupby

import msgspec

from gateway.config_check.check import CheckReport, Listener
from gateway.core.trust_report import SignerChoice, UserSigning

_encoder = msgspec.json.Encoder()


def render_json(report: CheckReport) -> str:
    return _encoder.encode(report).decode()


def error_lines(report: CheckReport) -> list[str]:
    return [f"duisgw: {error}" for error in report.errors]


def render_text(report: CheckReport) -> str:
    lines = [f"duisgw config check: {report.config}"]
    if report.state_dir is not None:
        lines.append(f"  state dir    {report.state_dir}")
    if report.versions:
        retired = "".join(
            f"; {v} retired since {d.isoformat()}" for v, d in report.retired_versions.items()
        )
        xsd = "on" if report.xsd_validation else "off (duis.xsd_dir not set)"
        lines.append(f"  versions     {', '.join(report.versions)}{retired}; XSD validation {xsd}")
    if report.listeners:
        lines.append("  listeners    " + "; ".join(_listener(line) for line in report.listeners))
    if report.dcc_signing_certificate_serial is not None:
        lines.append(
            f"  registry     {len(report.users)} Users, {report.devices} devices\n"
            f"  trust        {len(report.certificates)} certificates, "
            f"{len(report.certificates_skipped)} files skipped; DCC signing certificate "
            f"serial {report.dcc_signing_certificate_serial}"
        )
    if report.threshold_rules is not None:
        lines.append(f"  thresholds   {report.threshold_rules}")
    if report.state is not None:
        lines.append(f"  state        {report.state}")
    if report.users:
        lines.append("Users (the certificate each would sign with, per served DUIS version):")
        for user in report.users:
            lines.extend(_user(user))
    if report.certificates:
        lines.append("Certificates (earliest expiry first):")
        for cert in report.certificates:
            mark = "" if cert.validity == "valid" else f"{cert.validity.upper()} "
            lines.append(
                f"  {mark}{cert.not_after.date().isoformat()}  OU {cert.role_code}  "
                f"{cert.key_usage:<16} {cert.trust:<7} {cert.subject_eui64}  "
                f"serial {cert.serial}  {cert.file}"
            )
    if report.certificates_skipped:
        lines.append("Certificate files skipped:")
        lines.extend(f"  {s.file}: {s.reason}" for s in report.certificates_skipped)
    if report.warnings:
        lines.append("Warnings:")
        lines.extend(f"  - {warning}" for warning in report.warnings)
    if report.ok:
        lines.append(
            f"OK: the gateway can start with this configuration ({len(report.warnings)} warnings)"
        )
    else:
        lines.append(f"FAILED: {len(report.errors)} problems (on stderr)")
    return "\n".join(lines)


def _listener(line: Listener) -> str:
    verdict = {True: "free", False: "IN USE", None: "not probed"}[line.free]
    return f"{line.listener} {line.host}:{line.port} {verdict}"


def _user(user: UserSigning) -> list[str]:
    roles = " ".join(user.roles) or "no roles"
    lines = [f"  {user.user_id}  {user.party}  [{roles}]  {user.status}"]
    if not user.roles:
        lines.append("      sends no requests")
        return lines
    # Versions with the same verdict on one line: "5.1 5.3 5.4: OU 87 serial ...".
    for verdict, group in groupby(user.versions, key=_verdict_text):
        versions = " ".join(v.version for v in group)
        lines.append(f"      {versions}: {verdict}")
    return lines


def _verdict_text(verdict: SignerChoice) -> str:
    if not verdict.usable:
        return f"CANNOT SIGN: {verdict.problem}"
    until = verdict.not_after.date().isoformat() if verdict.not_after else "?"
    return f"OU {verdict.role_code} serial {verdict.serial} until {until}"
