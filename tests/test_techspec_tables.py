"""The TS Applicability Tables as data: the shipped example, and refusals of bad files."""

from __future__ import annotations

import datetime as dt
import tomllib

import msgspec
import pytest

from gateway.core.techspec.tables import TablesError, decode_tables, table_warnings
from gateway.core.techspec.versions import GbcsVersion, Period, TsVersion
from tests.techspec_data import CONSULTATION, consultation, extended


def test_the_consultation_example_tables_ship_with_their_dates() -> None:
    tables = consultation()
    smets11 = tables.validity(TsVersion("SMETS", 1, 1))
    smets20 = tables.validity(TsVersion("SMETS", 2, 0))
    chts10 = tables.validity(TsVersion("CHTS", 1, 0))
    assert smets11 is not None and smets20 is not None and chts10 is not None
    assert smets11.installation == Period(dt.date(2012, 12, 18), dt.date(2017, 12, 12))
    assert smets11.maintenance == Period(dt.date(2012, 12, 18))  # "Not yet determined"
    assert smets11.gbcs == {}  # "Not applicable"
    for validity in (smets20, chts10):
        assert validity.installation == Period(dt.date(2016, 9, 30))
        assert validity.maintenance == Period(dt.date(2016, 9, 30))
        assert validity.gbcs == {GbcsVersion(1, 0): Period(dt.date(2016, 9, 30))}
    assert [str(v.version) for v in tables] == ["CHTS v1.0", "SMETS v1.1", "SMETS v2.0"]
    assert table_warnings(tables) == []


def test_json_is_accepted_too() -> None:
    as_json = msgspec.json.encode(tomllib.loads(CONSULTATION.decode()))
    tables = decode_tables(as_json, fmt="json")
    assert [str(v.version) for v in tables] == [str(v.version) for v in consultation()]


BAD = {
    "unknown key": (
        '[[technical_specifications]]\nspec = "SMETS"\nversion = "2.0"\n'
        "installation = { start = 2016-09-30 }\nmaintenance = { start = 2016-09-30 }\n"
        "colour = 1\n",
        "colour",
    ),
    "end before start": (
        '[[technical_specifications]]\nspec = "SMETS"\nversion = "2.0"\n'
        "installation = { start = 2016-09-30, end = 2016-01-01 }\n"
        "maintenance = { start = 2016-09-30 }\n",
        "before it starts",
    ),
    "twice": (
        '[[technical_specifications]]\nspec = "CHTS"\nversion = "1.0"\n'
        "installation = { start = 2016-09-30 }\nmaintenance = { start = 2016-09-30 }\n" * 2,
        "CHTS v1.0 twice",
    ),
    "bad version": (
        '[[technical_specifications]]\nspec = "SMETS"\nversion = "two"\n'
        "installation = { start = 2016-09-30 }\nmaintenance = { start = 2016-09-30 }\n",
        "version",
    ),
    "matrix names unknown version": (
        CONSULTATION.decode() + '[[compatibility]]\nsmets = "9.0"\nchts = "1.0"\n',
        "SMETS v9.0 is not in technical_specifications",
    ),
    "matrix names irrelevant GBCS": (
        CONSULTATION.decode()
        + '[[compatibility]]\nsmets = "2.0"\nsmets_gbcs = "7.0"\nchts = "1.0"\n',
        "GBCS v7.0 is not a relevant GBCS version of SMETS v2.0",
    ),
    "product meets the wrong spec": (
        CONSULTATION.decode()
        + '[[products]]\nmanufacturer = "AB"\nmodel = "M"\nfirmware_version = "1"\n'
        'device_type = "CHF"\ntechnical_specification = "SMETS 2.0"\n',
        "a CHF meets CHTS, not SMETS v2.0",
    ),
    "not toml": ("[[technical_specifications", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_tables_file_is_refused_with_a_reason(case: str) -> None:
    text, expected = BAD[case]
    with pytest.raises(TablesError) as refused:
        decode_tables(text.encode(), fmt="toml", source="mod.toml")
    assert expected in str(refused.value)
    assert str(refused.value).startswith("mod.toml: ")


def test_a_superseded_sub_version_without_an_end_is_warned_about() -> None:
    """¶111: the previous Sub-Version stops being valid after a period of time."""
    text = CONSULTATION.decode() + (
        '[[technical_specifications]]\nspec = "SMETS"\nversion = "2.1"\n'
        "installation = { start = 2018-07-01 }\nmaintenance = { start = 2018-07-01 }\n"
    )
    tables = decode_tables(text.encode(), fmt="toml")
    assert tables.later_sub_versions(TsVersion("SMETS", 2, 0)) == (TsVersion("SMETS", 2, 1),)
    (warning,) = table_warnings(tables)
    assert "SMETS v2.0 is superseded by SMETS v2.1" in warning and "¶111" in warning
    assert table_warnings(extended()) == []  # there SMETS v2.0 has its end dates
