"""The duis-gateway daemon: trio edges around the sans-IO cores.

The cores live in mmc/, parse_correlate/ and thresholds/.
"""
