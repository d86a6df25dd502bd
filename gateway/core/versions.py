"""The version registry: schemaVersion -> the handler set (MMC + P&C) of that version.

Several versions are live at once (consultation ¶105-106, ¶128); each request is
interpreted under the version it names. The config lists the live versions and,
optionally, the date from which each is retired.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation

import msgspec

from mmc.catalogue import Catalogue, UnknownVersion, load_catalogue
from parse_correlate.handlers import HandlerSet, handlers_for


class VersionRoute(msgspec.Struct, frozen=True):
    version: str
    catalogue: Catalogue
    handlers: HandlerSet


class VersionConfigError(ValueError):
    """The configured versions cannot be served."""


def normalise_version(text: str) -> str | None:
    """schemaVersion is an xs:decimal: '5.40' and '5.4' name the same version."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    normal = format(value.normalize(), "f")
    return normal if "." in normal else normal + ".0"


class VersionRegistry:
    def __init__(self, routes: Mapping[str, VersionRoute], retired_from: Mapping[str, dt.date]):
        self._routes = dict(routes)
        self._retired_from = dict(retired_from)
        self._lookup_cache: dict[str, str | None] = {}

    @classmethod
    def build(cls, versions: Sequence[str], retired_from: Mapping[str, dt.date]) -> VersionRegistry:
        routes: dict[str, VersionRoute] = {}
        for version in versions:
            try:
                catalogue = load_catalogue(version)
            except UnknownVersion:
                raise VersionConfigError(
                    f"duis.versions: no catalogue for DUIS version {version!r}"
                ) from None
            routes[version] = VersionRoute(version, catalogue, handlers_for(version))
        unknown = set(retired_from) - set(routes)
        if unknown:
            raise VersionConfigError(
                f"duis.retired_from names versions not served: {', '.join(sorted(unknown))}"
            )
        return cls(routes, retired_from)

    def served(self, today: dt.date) -> tuple[str, ...]:
        """The versions a request may name on `today`: configured and not yet retired."""
        return tuple(v for v in self._routes if not self._retired(v, today))

    def retired(self, today: dt.date) -> dict[str, dt.date]:
        """Configured versions refused from `today` on, with the date each was retired."""
        return {v: d for v, d in self._retired_from.items() if self._retired(v, today)}

    def xsd_files(self) -> dict[str, str]:
        """Every configured version's XSD file, retired or not.

        Start-up loads them all: a version retired since then (or by a config loaded
        after its date) is refused per request by `route`, never by a start that fails.
        """
        return {v: route.catalogue.xsd_file for v, route in self._routes.items()}

    def route(self, schema_version: str, now: dt.datetime) -> VersionRoute | None:
        version = self._lookup_cache.get(schema_version, "")
        if version == "":
            version = normalise_version(schema_version)
            if len(self._lookup_cache) < 64:  # bounded: hostile values must not grow it
                self._lookup_cache[schema_version] = version
        if version is None or version not in self._routes:
            return None
        if self._retired(version, now.date()):
            return None
        return self._routes[version]

    def _retired(self, version: str, today: dt.date) -> bool:
        retired = self._retired_from.get(version)
        return retired is not None and today >= retired
