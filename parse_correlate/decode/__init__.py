"""Payload decoders for GBCS responses and alerts, driven by the use-case table."""
