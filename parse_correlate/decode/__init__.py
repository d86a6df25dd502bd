"""Payload decoders for GBCS responses and alerts, driven by the use-case table."""

__all__ = ["alerts", "dlms", "errors", "layouts", "nodes", "readers", "usecases"]
