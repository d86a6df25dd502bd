"""Message Mapping Catalogues: one per DUIS version, with the codecs and builders they need."""
