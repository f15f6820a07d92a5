"""Quantiles calibrated at every level of the hierarchy, after reconciliation.

The engine calibrates each series' quantiles on backtest errors pooled over all series, and
reconciliation then moves the means. Aggregates (pools, accelerators, the fleet) add up
errors that are correlated across their children (a fleet-wide growth surprise hits every
team at once), so their intervals come out too narrow while the teams' are right. Here the
reconciliation is repeated on the backtest windows, the reconciled errors are measured level
by level, and each node's quantiles are rebuilt so that on those windows every level covers
its nominal probabilities. Studentized split conformal, per level group and horizon bucket:

1. **Backtest forecasts**: the engine's chosen model's backtest mean of every node (actual
   minus its residual), reconciled with the run's method (:func:`backtest_frame` gives the
   base; the caller reconciles it with time ``step``).
2. **Spread** of node ``i`` at step ``h``: ``sigma_i(h) = (p90 - p10) / (2 * 1.2816)`` of
   its final reconciled forecast (the model's own widening with the horizon, events and
   cold start included). In a backtest window it is carried back by the node's demand level
   then (mean of the 28 days before the window's cutoff) over its level now.
3. **Scores** ``z = (actual - reconciled backtest mean) / spread``; for each level group,
   horizon bucket and probability ``q``, ``c_q`` is the ``q``-quantile of the scores.
4. **Final quantiles**: ``reconciled mean + c_q * sigma_i(h)`` where that is wider than the
   engine's quantile (upper quantiles only move up, lower ones only down, the median stays),
   clipped at zero and sorted (so they never cross). The mean is not touched: coherence
   holds. Only widening, because three backtest windows can show a calmer past than the
   future will be: on the sample fleet, letting them also narrow the long horizons cut the
   held-out coverage of every level (80% intervals covered 45-63% at 4-6 months ahead).

A level with fewer than ``min_pairs`` scored (node, window) pairs (the single fleet node has
as many as there are windows) joins the level below it, so that no correction rests on a
handful of windows; the table says which levels were pooled. Nodes without their own
backtest (too young) and nodes without spread (a zero or constant forecast) are not scored
but still get their group's correction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from models.quantiles import quantile_column

__all__ = ["LevelCalibration", "backtest_frame", "calibrate_levels", "level_groups"]

#: z of the 90% quantile of a normal: (p90 - p10) / (2 * Z90) is a standard deviation.
Z90 = 1.2815515655446004
#: Days of demand averaged for a node's level at a window's cutoff and at the end.
LEVEL_DAYS = 28


@dataclass(frozen=True)
class LevelCalibration:
    """Recalibrated forecast, the corrections used, and what was pooled."""

    forecast: pl.DataFrame
    table: pl.DataFrame  # group, levels, horizon_bucket, quantile, correction, n_scores
    notes: tuple[str, ...]


def backtest_frame(
    history: pl.DataFrame,
    residuals: pl.DataFrame,
    *,
    history_end: date,
    horizon: int,
    removed: Sequence[int],
) -> pl.DataFrame:
    """Backtest base forecasts of every node at every window step.

    ``history`` is ``series_id, ds, y`` for every node; ``residuals`` the engine's
    ``series_id, step, residual`` (step ``w * horizon + h - 1``; windows oldest first, each
    ending ``removed[w]`` days before ``history_end``), imputed for nodes without a backtest
    if the caller wants every node reconciled. Returns ``series_id, step, window, h, ds,
    actual, mean, own`` where ``mean = actual - residual`` and ``own`` marks a node's own
    (not imputed) residual; a node without a residual at a step gets ``mean = actual``.
    """
    steps = pl.DataFrame(
        [
            (w * horizon + h - 1, w, h, history_end - timedelta(days=cut - h))
            for w, cut in enumerate(removed)
            for h in range(1, horizon + 1)
        ],
        schema={"step": pl.Int32, "window": pl.Int32, "h": pl.Int32, "ds": pl.Date},
        orient="row",
    )
    nodes = history.select("series_id").unique()
    return (
        nodes.join(steps, how="cross")
        .join(
            history.select("series_id", "ds", pl.col("y").alias("actual")),
            on=["series_id", "ds"],
            how="left",
        )
        .join(
            residuals.select("series_id", pl.col("step").cast(pl.Int32), "residual"),
            on=["series_id", "step"],
            how="left",
        )
        .with_columns(
            pl.col("actual").fill_null(0.0),
            pl.col("residual").fill_nan(None),
        )
        .with_columns(
            (pl.col("actual") - pl.col("residual").fill_null(0.0)).alias("mean"),
            pl.col("residual").is_not_null().alias("own"),
        )
        .drop("residual")
        .sort("series_id", "step")
    )


def level_groups(level_sizes: Sequence[tuple[str, int]], min_pairs: int) -> dict[str, str]:
    """Which group each level is calibrated with; ``level_sizes`` top to bottom.

    A level with fewer than ``min_pairs`` scored pairs joins the next level down (and so on);
    the bottom level keeps what it has. Group names join their levels with ``+``.
    """
    groups: list[list[str]] = []
    pending: list[str] = []
    count = 0
    for level, size in level_sizes:
        pending.append(level)
        count += size
        if count >= min_pairs:
            groups.append(pending)
            pending, count = [], 0
    if pending:
        if groups:
            groups[-1].extend(pending)
        else:
            groups.append(pending)
    return {level: "+".join(members) for members in groups for level in members}


def _levels_at(history: pl.DataFrame, days: Sequence[date]) -> pl.DataFrame:
    """Mean demand of each node over the LEVEL_DAYS days up to each day (inclusive)."""
    parts = []
    for day in days:
        since = day - timedelta(days=LEVEL_DAYS - 1)
        parts.append(
            history.filter(pl.col("ds") >= since, pl.col("ds") <= day)
            .group_by("series_id")
            .agg((pl.col("y").sum() / LEVEL_DAYS).alias("demand_level"))
            .with_columns(pl.lit(day).alias("at"))
        )
    return pl.concat(parts)


def calibrate_levels(
    forecast: pl.DataFrame,
    backtest: pl.DataFrame,
    nodes: pl.DataFrame,
    history: pl.DataFrame,
    *,
    quantiles: Sequence[float],
    buckets: np.ndarray,
    min_pairs: int = 20,
) -> LevelCalibration:
    """Rebuild every node's quantiles from its level group's reconciled backtest errors.

    ``forecast``: reconciled final forecast (``series_id, ds, h, mean`` and the quantile
    columns of ``quantiles``, which must include 0.1 and 0.9). ``backtest``: the output of
    :func:`backtest_frame` with ``mean`` replaced by the reconciled backtest mean.
    ``nodes``: ``series_id, level`` top level first. ``buckets[h - 1]`` is the 0-based
    horizon bucket of step ``h``. See the module docstring for the method.
    """
    columns = {q: quantile_column(q) for q in quantiles}
    if 0.1 not in columns or 0.9 not in columns:
        raise ValueError("level calibration needs the 0.1 and 0.9 quantiles for the spread")
    end: date = history["ds"].max()  # type: ignore[assignment]
    cutoffs = (
        backtest.group_by("window")
        .agg((pl.col("ds").min() - timedelta(days=1)).alias("cutoff"))
        .sort("window")
    )
    levels_then = _levels_at(history, cutoffs["cutoff"].to_list()).join(
        cutoffs, left_on="at", right_on="cutoff"
    )
    level_now = _levels_at(history, [end]).select("series_id", pl.col("demand_level").alias("now"))
    bucket_of = pl.DataFrame(
        {"h": np.arange(1, buckets.size + 1, dtype=np.int32), "bucket": buckets.astype(np.int32)}
    )
    spread = forecast.select(
        "series_id",
        pl.col("h").cast(pl.Int32),
        ((pl.col(columns[0.9]) - pl.col(columns[0.1])) / (2 * Z90)).alias("sigma"),
    )
    scored = (
        backtest.filter(pl.col("own"))
        .join(spread, on=["series_id", "h"], how="inner")
        .join(
            levels_then.select("series_id", "window", "demand_level"),
            on=["series_id", "window"],
            how="left",
        )
        .join(level_now, on="series_id", how="left")
        .with_columns(
            (pl.col("sigma") * pl.col("demand_level") / pl.col("now")).alias("spread_then")
        )
        .filter(pl.col("spread_then").is_finite(), pl.col("spread_then") > 0)
        .with_columns(((pl.col("actual") - pl.col("mean")) / pl.col("spread_then")).alias("z"))
        .join(nodes.select("series_id", "level"), on="series_id", how="left")
        .join(bucket_of, on="h", how="left")
    )
    order = nodes["level"].unique(maintain_order=True).to_list()
    pairs = scored.group_by("level").agg(pl.struct("series_id", "window").n_unique().alias("n"))
    sizes = dict(zip(pairs["level"], pairs["n"], strict=True))
    group_of = level_groups([(level, int(sizes.get(level, 0))) for level in order], min_pairs)
    notes = []
    pooled = sorted({g for g in group_of.values() if "+" in g})
    if pooled:
        notes.append(
            "level calibration pooled levels with fewer than "
            f"{min_pairs} scored backtest windows: {', '.join(pooled)}"
        )
    scored = scored.with_columns(pl.col("level").replace_strict(group_of).alias("group"))
    rows = []
    n_buckets = int(buckets.max()) + 1
    for group in dict.fromkeys(group_of.values()):
        mine = scored.filter(pl.col("group") == group)
        for b in range(n_buckets):
            z = mine.filter(pl.col("bucket") == b)["z"].to_numpy()
            for q in quantiles:
                rows.append(
                    (
                        group,
                        b + 1,
                        q,
                        float(np.quantile(z, q)) if z.size >= 20 else None,
                        int(z.size),
                    )
                )
    table = pl.DataFrame(
        rows,
        schema={
            "group": pl.String,
            "horizon_bucket": pl.Int32,
            "quantile": pl.Float64,
            "correction": pl.Float64,
            "n_scores": pl.Int64,
        },
        orient="row",
    )
    missing = table.filter(pl.col("correction").is_null())
    if missing.height:
        notes.append(
            f"level calibration: {missing.select('group', 'horizon_bucket').n_unique()} group "
            "and horizon bucket(s) had fewer than 20 scores and kept their quantiles"
        )
    group_names = list(dict.fromkeys(group_of.values()))
    corrections = np.full((len(group_names), n_buckets, len(quantiles)), np.nan)
    for group, bucket, q, correction, _ in rows:
        if correction is not None:
            corrections[group_names.index(group), bucket - 1, list(quantiles).index(q)] = correction
    level_of = dict(zip(nodes["series_id"], nodes["level"], strict=True))
    group_index = {level: group_names.index(group) for level, group in group_of.items()}
    ids = forecast["series_id"].to_list()
    row_group = np.array([group_index.get(level_of.get(sid, ""), -1) for sid in ids])
    row_bucket = buckets[forecast["h"].cast(pl.Int64).to_numpy() - 1]
    mean = forecast["mean"].cast(pl.Float64).to_numpy()
    names = [columns[q] for q in quantiles]
    current = forecast.select(pl.col(names).cast(pl.Float64)).to_numpy()
    sigma = (current[:, names.index(columns[0.9])] - current[:, names.index(columns[0.1])]) / (
        2 * Z90
    )
    known = row_group >= 0
    factor = np.full_like(current, np.nan)
    factor[known] = corrections[row_group[known], row_bucket[known]]
    rebuilt = mean[:, None] + factor * sigma[:, None]
    # Only ever widen: a few backtest windows can show a calm past, never a calm future.
    upper = np.array([q > 0.5 for q in quantiles])
    lower = np.array([q < 0.5 for q in quantiles])
    widened = np.where(upper, np.fmax(current, rebuilt), current)
    widened = np.where(lower, np.fmin(current, rebuilt), widened)
    new = np.maximum(widened, 0.0)
    new = np.sort(new, axis=1)
    out = forecast.with_columns(pl.Series(name, new[:, k]) for k, name in enumerate(names))
    return LevelCalibration(forecast=out, table=table, notes=tuple(notes))
