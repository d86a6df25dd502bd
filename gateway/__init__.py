"""The duis-gateway daemon: trio edges around the sans-IO cores in mmc/, parse_correlate/, thresholds/."""
