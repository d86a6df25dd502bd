"""The operator's files, read at start-up and on reload: config, registry, XSDs, rules.

Reading is here; what the bytes mean is decided in the core (`gateway.core.config`,
`gateway.core.registry`, `gateway.core.ingest`, `thresholds.config`), so a file's
fault and a value's fault are reported the same way wherever the bytes came from.
Certificates and keys are gateway/stores/certfiles.py.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from gateway.core.config import Config, ConfigError, decode_config
from gateway.core.ingest import SchemaSet
from gateway.core.registry import (
    Format,
    Inventory,
    RegistryError,
    UserRegistry,
    decode_inventory,
    decode_users,
)
from thresholds.config import ThresholdConfigError, decode_threshold_config


def load_config(path: Path) -> Config:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    return decode_config(raw, path)


def load_users(path: Path) -> UserRegistry:
    data, fmt = _registry_file(path)
    return decode_users(data, fmt=fmt, source=str(path))


def load_inventory(path: Path) -> Inventory:
    data, fmt = _registry_file(path)
    return decode_inventory(data, fmt=fmt, source=str(path))


def _registry_file(path: Path) -> tuple[bytes, Format]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise RegistryError(f"{path}: expected a .toml or .json file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return data, "toml" if suffix == ".toml" else "json"


def load_schemas(xsd_dir: Path, files_by_version: dict[str, str]) -> SchemaSet:
    """The XSDs of the versions whose file is in `xsd_dir` (the others are not checked)."""
    schemas: dict[str, etree.XMLSchema] = {}
    for version, name in files_by_version.items():
        path = xsd_dir / name
        if path.exists():
            # Parsed from the file, so the XSD's includes resolve beside it.
            schemas[version] = etree.XMLSchema(etree.parse(str(path)))
    return SchemaSet(schemas)


def read_threshold_rules(config: Config) -> bytes | None:
    """The rules file's bytes (None: no file configured), checked to decode.

    Which rules are in force is decided later, against the stored run-time rules
    (gateway/stores/threshold_state.py); a bad file stops start-up either way.
    """
    path = config.thresholds.rules_file
    if path is None:
        return None
    raw = Path(path).read_bytes()
    try:
        decode_threshold_config(raw)
    except ThresholdConfigError as exc:
        raise ThresholdConfigError(f"thresholds.rules_file {path}: {exc}") from None
    return raw
