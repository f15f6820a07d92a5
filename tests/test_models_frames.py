"""The long-frame contract of models/."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from models.frames import LongFrameError, infer_frequency, validate_long_frame


def _frame(**overrides):
    data = {
        "series_id": ["b", "a", "a"],
        "ds": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 1)],
        "y": [1.0, 2.0, 3.0],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def test_valid_frame_comes_back_sorted():
    out = validate_long_frame(_frame())
    assert out["series_id"].to_list() == ["a", "a", "b"]
    assert out["ds"].to_list()[0] == date(2026, 1, 1)


def test_missing_columns_are_named():
    with pytest.raises(LongFrameError, match="missing column\\(s\\) y, price"):
        validate_long_frame(_frame().drop("y"), regressors=["price"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ds": ["2026-01-01", "2026-01-02", "2026-01-01"]}, "must be a date or datetime"),
        ({"y": ["1", "2", "3"]}, "must be numeric"),
        ({"y": [1.0, float("nan"), 3.0]}, "non-finite"),
        ({"y": [1.0, None, 3.0]}, "null or non-finite"),
        ({"series_id": ["a", "a", "a"], "ds": [date(2026, 1, 1)] * 3}, "more than once"),
    ],
)
def test_contract_violations_are_explained(overrides, message):
    with pytest.raises(LongFrameError, match=message):
        validate_long_frame(_frame(**overrides))


def test_frequencies_are_inferred_per_series():
    start = datetime(2026, 1, 1)
    frame = pl.concat(
        [
            pl.DataFrame(
                {"series_id": "hourly", "ds": [start + timedelta(hours=h) for h in range(5)]}
            ),
            pl.DataFrame(
                {"series_id": "daily", "ds": [start + timedelta(days=d) for d in range(5)]}
            ),
            pl.DataFrame(
                {"series_id": "weekly", "ds": [start + timedelta(weeks=w) for w in range(5)]}
            ),
            pl.DataFrame(
                {"series_id": "monthly", "ds": [datetime(2026, m, 1) for m in range(1, 6)]}
            ),
            pl.DataFrame(
                {"series_id": "quarterly", "ds": [datetime(2026, m, 1) for m in (1, 4, 7, 10)]}
            ),
        ]
    )
    assert infer_frequency(frame) == {
        "hourly": "1h",
        "daily": "1d",
        "weekly": "7d",
        "monthly": "1mo",
        "quarterly": "3mo",
    }


def test_irregular_series_is_rejected():
    frame = pl.DataFrame(
        {"series_id": "x", "ds": [date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 5)]}
    )
    with pytest.raises(LongFrameError, match="not regular"):
        infer_frequency(frame)
