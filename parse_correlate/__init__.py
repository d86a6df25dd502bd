"""Parse and Correlate: GBCS framing, MMC output and Pre-Command correlation (sans-IO).

Imports mmc only (the arrow is one way: parse_correlate -> mmc). Its own modules:
device_response_check, inputs, precommand_report and response_correlation serve the
ones named here.
"""

__all__ = [
    "cli",
    "commands",
    "correlate",
    "decode",
    "device_response_check",
    "gbcs",
    "gbcs_bytes",
    "gbcs_codes",
    "gbcs_mac",
    "handlers",
    "integrity",
    "mmc_output",
    "parse_command",
]
