"""The long-frame contract every model reads and writes.

A long frame has one row per series and time step: ``series_id`` (string), ``ds`` (date or
datetime, regular per series) and ``y`` (float, the target), plus optional regressor
columns. :func:`validate_long_frame` checks the contract and names what is wrong;
:func:`infer_frequency` finds the regular step of each series.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

__all__ = ["LongFrameError", "infer_frequency", "validate_long_frame"]


class LongFrameError(ValueError):
    """A frame that breaks the long-frame contract; the message names the columns at fault."""


def validate_long_frame(
    frame: pl.DataFrame,
    *,
    id_col: str = "series_id",
    time_col: str = "ds",
    target_col: str = "y",
    regressors: Sequence[str] = (),
) -> pl.DataFrame:
    """Check a long frame and return it sorted by series and time.

    Raises :class:`LongFrameError` naming missing columns, a time column that is not a date
    or datetime, a non-numeric or non-finite target, or duplicated (series, time) pairs.
    """
    needed = [id_col, time_col, target_col, *regressors]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise LongFrameError(
            f"missing column(s) {', '.join(missing)}; the frame has {', '.join(frame.columns)}"
        )
    time_type = frame.schema[time_col]
    if not (time_type == pl.Date or isinstance(time_type, pl.Datetime)):
        raise LongFrameError(f"column '{time_col}' must be a date or datetime, got {time_type}")
    if not frame.schema[target_col].is_numeric():
        raise LongFrameError(
            f"column '{target_col}' must be numeric, got {frame.schema[target_col]}"
        )
    bad_target = frame.filter(~pl.col(target_col).cast(pl.Float64).is_finite().fill_null(False))
    if bad_target.height:
        first = bad_target.row(0, named=True)
        raise LongFrameError(
            f"column '{target_col}' has {bad_target.height} null or non-finite value(s), first "
            f"in series '{first[id_col]}' at {first[time_col]}"
        )
    duplicated = frame.filter(pl.struct(id_col, time_col).is_duplicated())
    if duplicated.height:
        first = duplicated.row(0, named=True)
        raise LongFrameError(
            f"series '{first[id_col]}' has {time_col} {first[time_col]} more than once"
        )
    return frame.sort(id_col, time_col)


def infer_frequency(
    frame: pl.DataFrame, *, id_col: str = "series_id", time_col: str = "ds"
) -> dict[str, str]:
    """Return each series' regular step as a polars duration string (``1d``, ``1h``, ...).

    Monthly and quarterly steps are recognized from calendar months (``1mo``, ``3mo``).
    Raises :class:`LongFrameError` for a series whose steps are not all equal.
    """
    steps: dict[str, str] = {}
    ordered = frame.sort(id_col, time_col)
    for (series,), group in ordered.group_by(id_col, maintain_order=True):
        times = group[time_col]
        if times.len() < 2:
            raise LongFrameError(f"series '{series}' has fewer than 2 points: no step to infer")
        as_dt = times.cast(pl.Datetime("us"))
        months = (as_dt.dt.year() * 12 + as_dt.dt.month()).diff().drop_nulls().unique()
        days_of_month = as_dt.dt.day().unique()
        if days_of_month.len() == 1 and months.len() == 1 and int(months[0]) in (1, 3, 12):
            steps[str(series)] = {1: "1mo", 3: "3mo", 12: "1y"}[int(months[0])]
            continue
        deltas = as_dt.diff().drop_nulls().unique()
        if deltas.len() != 1:
            raise LongFrameError(
                f"series '{series}' is not regular: {deltas.len()} different steps between points"
            )
        seconds = int(deltas[0].total_seconds())
        if seconds % 86_400 == 0:
            steps[str(series)] = f"{seconds // 86_400}d"
        elif seconds % 3_600 == 0:
            steps[str(series)] = f"{seconds // 3_600}h"
        else:
            steps[str(series)] = f"{seconds}s"
    return steps
