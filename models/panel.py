"""A panel: many series of one frequency as a right-aligned numpy matrix.

Vectorised models see a :class:`Panel`, not a frame. Invariants the constructor enforces:
``values`` has shape (series, steps); each row holds one series with its last observation
in the last column and NaN before its first observation (never inside); ``lengths`` counts
the observed values of each row; ``last_ds`` is the time of each row's last observation.
:meth:`Panel.from_frame` builds one from a long frame and :func:`forecast_frame` turns
forecast matrices back into a long frame with the right future timestamps.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import polars as pl

from models.frames import validate_long_frame
from models.frequency import Frequency
from models.quantiles import quantile_column

__all__ = ["Panel", "forecast_frame", "sanitize_forecasts"]


@dataclass(frozen=True)
class Panel:
    """Series of one frequency as a right-aligned matrix (see the module docstring)."""

    series_ids: tuple[str, ...]
    values: np.ndarray
    lengths: np.ndarray
    last_ds: tuple[date | datetime, ...]
    freq: Frequency
    regressors: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n_series, n_steps = self.values.shape
        if len(self.series_ids) != n_series or len(self.last_ds) != n_series:
            raise ValueError("series_ids, last_ds and the rows of values must have one length")
        if self.lengths.shape != (n_series,):
            raise ValueError("lengths must have one entry per series")
        if n_series and (self.lengths.min() < 1 or self.lengths.max() > n_steps):
            raise ValueError("every series needs between 1 and n_steps observations")
        observed = ~np.isnan(self.values)
        expected = np.arange(n_steps)[None, :] >= (n_steps - self.lengths)[:, None]
        if not np.array_equal(observed, expected):
            raise ValueError("values must be right-aligned with NaN only before the first value")

    @property
    def n_series(self) -> int:
        """Number of series."""
        return len(self.series_ids)

    @classmethod
    def from_frame(
        cls,
        frame: pl.DataFrame,
        freq: Frequency,
        *,
        regressors: Sequence[str] = (),
    ) -> Panel:
        """Build a panel from a long frame (``series_id, ds, y`` plus regressor columns).

        Gaps inside a series are not allowed here (the caller fills them); series may start
        and end at different times.
        """
        frame = validate_long_frame(frame, regressors=regressors)
        stats = frame.group_by("series_id", maintain_order=True).agg(
            pl.len().alias("n"), pl.col("ds").last().alias("last")
        )
        n_steps = int(stats["n"].to_numpy().max()) if stats.height else 0
        ids = tuple(str(s) for s in stats["series_id"].to_list())
        lengths = stats["n"].to_numpy().astype(np.int64)
        values = np.full((len(ids), n_steps), np.nan)
        regressor_values = {name: np.full((len(ids), n_steps), np.nan) for name in regressors}
        row = np.repeat(np.arange(len(ids)), lengths)
        ends = np.cumsum(lengths)
        position_in_series = np.arange(frame.height) - np.repeat(ends - lengths, lengths)
        col = n_steps - np.repeat(lengths, lengths) + position_in_series
        values[row, col] = frame["y"].cast(pl.Float64).to_numpy()
        for name in regressors:
            regressor_values[name][row, col] = frame[name].cast(pl.Float64).to_numpy()
        return cls(ids, values, lengths, tuple(stats["last"].to_list()), freq, regressor_values)

    def series(self, index: int) -> np.ndarray:
        """The observed values of one series, without padding."""
        return self.values[index, self.values.shape[1] - int(self.lengths[index]) :]

    def by_length(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (row indices, matrix without padding) for each group of equal length."""
        n_steps = self.values.shape[1]
        for length in np.unique(self.lengths):
            rows = np.flatnonzero(self.lengths == length)
            yield rows, self.values[rows, n_steps - int(length) :]

    def subset(self, rows: Sequence[int] | np.ndarray) -> Panel:
        """A panel of some rows, trimmed to their longest series."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        width = int(lengths.max()) if rows.size else 0
        start = self.values.shape[1] - width
        return Panel(
            tuple(self.series_ids[i] for i in rows),
            self.values[rows, start:],
            lengths,
            tuple(self.last_ds[i] for i in rows),
            self.freq,
            {k: v[rows, start:] for k, v in self.regressors.items()},
        )

    def without_regressors(self) -> Panel:
        """The same series without regressor matrices."""
        return Panel(self.series_ids, self.values, self.lengths, self.last_ds, self.freq)

    def truncate(self, steps: int, *, min_length: int = 1) -> tuple[Panel, np.ndarray]:
        """Drop the last ``steps`` observations of every series (a backtest cutoff).

        Returns the shorter panel and the indices of the rows kept: series left with fewer
        than ``min_length`` observations are dropped.
        """
        if steps < 0:
            raise ValueError(f"cannot truncate a negative number of steps ({steps})")
        lengths = self.lengths - steps
        rows = np.flatnonzero(lengths >= max(min_length, 1))
        kept = lengths[rows]
        width = int(kept.max()) if rows.size else 0
        end = self.values.shape[1] - steps
        shifted: dict[date | datetime, date | datetime] = {}
        last_ds = []
        for i in rows:
            last = self.last_ds[i]
            if last not in shifted:
                shifted[last] = self.freq.shifted(last, [-steps]).item()
            last_ds.append(shifted[last])
        panel = Panel(
            tuple(self.series_ids[i] for i in rows),
            self.values[rows, end - width : end],
            kept,
            tuple(last_ds),
            self.freq,
            {k: v[rows, end - width : end] for k, v in self.regressors.items()},
        )
        return panel, rows

    def to_frame(self) -> pl.DataFrame:
        """The panel back as a long frame (``series_id, ds, y`` plus regressors)."""
        parts = []
        for i, sid in enumerate(self.series_ids):
            n = int(self.lengths[i])
            steps = self.freq.history(self.last_ds[i], n)
            columns: dict[str, object] = {"series_id": [sid] * n, "ds": steps, "y": self.series(i)}
            for name, matrix in self.regressors.items():
                columns[name] = matrix[i, matrix.shape[1] - n :]
            parts.append(pl.DataFrame(columns))
        return pl.concat(parts) if parts else pl.DataFrame()


def sanitize_forecasts(
    mean: np.ndarray, quantiles: Mapping[float, np.ndarray]
) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Clip forecasts at zero and sort quantiles so that they never cross.

    Demand is never negative and a p90 below the p80 is meaningless; every model's output
    goes through here. Non-finite values are left for the caller's fallback check.
    """
    mean = np.maximum(mean, 0.0)
    if not quantiles:
        return mean, {}
    levels = sorted(quantiles)
    stacked = np.maximum(np.stack([quantiles[q] for q in levels]), 0.0)
    stacked = np.sort(stacked, axis=0)
    return mean, {q: stacked[i] for i, q in enumerate(levels)}


def forecast_frame(
    panel: Panel,
    mean: np.ndarray,
    quantiles: Mapping[float, np.ndarray],
    *,
    rows: Sequence[int] | np.ndarray | None = None,
) -> pl.DataFrame:
    """Return the long forecast frame ``series_id, ds, h, mean, p..`` for (some) panel rows.

    ``mean`` and each quantile matrix have shape (rows, horizon).
    """
    rows = np.arange(panel.n_series) if rows is None else np.asarray(rows, dtype=np.int64)
    horizon = mean.shape[1]
    futures: dict[date | datetime, pl.Series] = {}
    for i in rows:  # series mostly share their last timestamp: step each one only once
        last = panel.last_ds[i]
        if last not in futures:
            futures[last] = panel.freq.future(last, horizon)
    ds_parts = [futures[panel.last_ds[i]] for i in rows]
    ds = pl.concat(ds_parts) if ds_parts else pl.Series("ds", [], dtype=pl.Date)
    columns: dict[str, object] = {
        "series_id": np.repeat(np.array([panel.series_ids[i] for i in rows]), horizon),
        "ds": ds,
        "h": np.tile(np.arange(1, horizon + 1, dtype=np.int32), len(rows)),
        "mean": mean.reshape(-1),
    }
    for level in sorted(quantiles):
        columns[quantile_column(level)] = quantiles[level].reshape(-1)
    return pl.DataFrame(columns).with_columns(pl.col("series_id").cast(pl.String))
