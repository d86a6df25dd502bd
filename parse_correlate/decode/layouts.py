"""Readers that place a use case's values in its MMC element (sans-IO)."""

from __future__ import annotations

from parse_correlate.decode.readers import Reader

LAYOUTS: dict[int, Reader] = {}
