"""Parse and Correlate: GBCS framing, MMC output and Pre-Command correlation (sans-IO)."""
