"""The fast ISO 8601 decoder against polars' general parser (the oracle)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.timestamps import parse_iso_timestamps

instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31))
offsets = st.sampled_from(["Z", "+00:00", "+09:00", "-05:30", "+14:00", ""])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(instants, offsets), min_size=1, max_size=50))
def test_fast_path_equals_the_general_parser(values):
    text = pl.Series("t", [f"{moment:%Y-%m-%dT%H:%M:%S}{suffix}" for moment, suffix in values])
    aware = text.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC", strict=False, time_unit="us"
    )
    naive = text.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us")
    oracle = aware.fill_null(naive.dt.replace_time_zone("UTC"))
    assert parse_iso_timestamps(text).to_list() == oracle.to_list()


def test_impossible_and_odd_values_are_null_or_left_to_the_fallbacks():
    text = pl.Series(
        [
            "2025-02-29T10:00:00Z",  # not a leap year
            "2024-02-29T10:00:00Z",  # a leap year
            "2025-04-31T10:00:00Z",
            "2025-01-01T24:00:00Z",
            "2025-01-01T10:60:00Z",
            "2025-01-01T10:00:00+25:00",
            "2025-01-01T10:00:00X",
            "2025-1-01T10:00:00Z",
            None,
            "",
            "2025-01-01 10:00:00.250",
        ]
    )
    parsed = parse_iso_timestamps(text, ("%Y-%m-%d %H:%M:%S%.f",)).to_list()
    assert parsed[0] is None
    assert parsed[1] == datetime(2024, 2, 29, 10, tzinfo=UTC)
    assert parsed[2:5] == [None] * 3
    # What the fast path refuses goes to the general parser, whatever it makes of it.
    general = text.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC", strict=False, time_unit="us"
    )
    assert parsed[5:8] == general[5:8].to_list()
    assert parsed[8] is None and parsed[9] is None
    assert parsed[10] == datetime(2025, 1, 1, 10, 0, 0, 250_000, tzinfo=UTC)
