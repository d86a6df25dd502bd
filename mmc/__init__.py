"""Message Mapping Catalogues: one per DUIS version, with the codecs and builders they need.

The bottom layer: imports nothing of the project's. parse_correlate builds on it.
"""

__all__ = ["applicability", "catalogue", "codec", "identifiers", "limited_attributes", "responses"]
