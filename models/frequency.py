"""Regular frequencies and the seasonal periods that follow from them.

A :class:`Frequency` is built from a polars duration string (``1h``, ``1d``, ``7d``, ``1mo``,
``3mo``) or a planner's word (``hourly``, ``daily``, ``weekly``, ``monthly``, ``quarterly``).
It knows its seasonal periods (hourly: 24 and 168; daily: 7 and 365; weekly: 52; monthly:
12; quarterly: 4), the main one used by seasonal models, and how to step dates forward.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

__all__ = ["FREQUENCY_KINDS", "Frequency"]

FREQUENCY_KINDS = ("hourly", "daily", "weekly", "monthly", "quarterly")

_WORDS = {"hourly": "1h", "daily": "1d", "weekly": "1w", "monthly": "1mo", "quarterly": "3mo"}
_DAYS_PER_MONTH = 365.25 / 12
_UNIT_DAYS = {
    "ns": 1 / 86_400e9,
    "us": 1 / 86_400e6,
    "ms": 1 / 86_400e3,
    "s": 1 / 86_400,
    "m": 1 / 1_440,
    "h": 1 / 24,
    "d": 1.0,
    "w": 7.0,
    "mo": _DAYS_PER_MONTH,
    "q": 3 * _DAYS_PER_MONTH,
    "y": 365.25,
}
_ALIASES = {"h": "1h", "d": "1d", "w": "1w", "7d": "1w", "mo": "1mo", "m": "1mo", "q": "3mo"}


@dataclass(frozen=True)
class Frequency:
    """A regular step between observations, with its seasonal periods.

    ``every`` is a polars duration string; ``kind`` is one of :data:`FREQUENCY_KINDS`
    (steps that fit none, for example ``15m``, get kind ``other`` and no seasonality).
    """

    every: str
    kind: str
    seasonal_periods: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Frequency:
        """Build from ``1d``, ``daily``, ``1h``, ``weekly``, ``1mo``, ``3mo``, ... ."""
        key = text.strip().lower()
        every = _WORDS.get(key) or _ALIASES.get(key) or key
        if every in {"1h", "60m"}:
            return cls("1h", "hourly", (24, 168))
        if every in {"1d", "24h"}:
            return cls("1d", "daily", (7, 365))
        if every in {"1w", "7d"}:
            return cls("1w", "weekly", (52,))
        if every == "1mo":
            return cls("1mo", "monthly", (12,))
        if every in {"3mo", "1q"}:
            return cls("3mo", "quarterly", (4,))
        try:
            pl.datetime_range(datetime(2000, 1, 1), datetime(2000, 1, 2), every, eager=True)
        except Exception as exc:
            raise ValueError(
                f"unknown frequency '{text}': use hourly, daily, weekly, monthly, quarterly "
                "or a polars duration such as 1h, 1d, 1w, 1mo, 3mo"
            ) from exc
        return cls(every, "other", ())

    @property
    def season_length(self) -> int:
        """The main seasonal period (1 when there is none): 7 for daily, 24 for hourly."""
        return self.seasonal_periods[0] if self.seasonal_periods else 1

    @property
    def step_days(self) -> float:
        """The step's length in days (months and years at their average length)."""
        every = "7d" if self.every == "1w" else self.every
        digits = "".join(c for c in every if c.isdigit())
        count, unit = int(digits or 1), every[len(digits) :]
        return count * _UNIT_DAYS.get(unit, 1.0)

    @property
    def steps_per_month(self) -> float:
        """Steps in an average month: 30.4375 for daily data, 1 for monthly, 1/3 quarterly."""
        return _DAYS_PER_MONTH / self.step_days

    def future(self, last: date | datetime, steps: int) -> pl.Series:
        """Return the ``steps`` timestamps after ``last``, of the same type as ``last``."""
        if steps < 1:
            raise ValueError(f"horizon must be at least 1 step, got {steps}")
        return self.shifted(last, range(1, steps + 1))

    def history(self, last: date | datetime, length: int) -> pl.Series:
        """Return the ``length`` timestamps ending at ``last`` (inclusive), oldest first."""
        return self.shifted(last, range(1 - length, 1))

    def shifted(self, anchor: date | datetime, steps: Iterable[int]) -> pl.Series:
        """Return ``anchor`` moved by each number of steps (negative steps go back)."""
        every = "7d" if self.every == "1w" else self.every
        digits = "".join(c for c in every if c.isdigit())
        count, unit = int(digits or 1), every[len(digits) :]
        offsets = pl.Series([f"{count * k}{unit}" for k in steps], dtype=pl.String)
        return pl.select(pl.lit(anchor).dt.offset_by(pl.lit(offsets)).alias("ds")).to_series()
