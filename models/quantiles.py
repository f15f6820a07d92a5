"""Quantile levels and the names of their columns.

A forecast frame carries one column per quantile level, named ``p`` followed by the percent:
``p05`` for 0.05, ``p50`` for the median, ``p2_5`` for 0.025 and ``p97_5`` for 0.975. The
names sort and read the way planners say them ("the p90").
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "DEFAULT_QUANTILES",
    "interval_bounds",
    "quantile_column",
    "quantile_from_column",
    "validate_quantiles",
]

#: Levels every forecast carries unless asked otherwise: the 80, 90 and 95 percent central
#: intervals, quartiles, the median and the p99 procurement looks at.
DEFAULT_QUANTILES: tuple[float, ...] = (
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    0.9,
    0.95,
    0.975,
    0.99,
)


def quantile_column(level: float) -> str:
    """Return the column name of a quantile level in (0, 1): 0.9 -> ``p90``, 0.025 -> ``p2_5``."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"quantile level must be strictly between 0 and 1, got {level}")
    percent = round(level * 100, 6)
    if percent == int(percent):
        return f"p{int(percent):02d}"
    return "p" + f"{percent:g}".replace(".", "_")


def quantile_from_column(column: str) -> float:
    """Inverse of :func:`quantile_column`: ``p97_5`` -> 0.975."""
    if not column.startswith("p"):
        raise ValueError(f"'{column}' is not a quantile column (expected p05, p50, p97_5, ...)")
    return round(float(column[1:].replace("_", ".")) / 100, 8)


def validate_quantiles(levels: Sequence[float]) -> tuple[float, ...]:
    """Return the levels sorted and deduplicated; raise if any is outside (0, 1)."""
    for level in levels:
        quantile_column(level)
    return tuple(sorted(set(float(level) for level in levels)))


def interval_bounds(coverage: float) -> tuple[float, float]:
    """Return the quantile levels of a central interval: 0.9 -> (0.05, 0.95)."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"interval coverage must be strictly between 0 and 1, got {coverage}")
    tail = round((1.0 - coverage) / 2, 8)
    return tail, round(1.0 - tail, 8)
