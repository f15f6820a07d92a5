"""The forecasting hierarchy of a fleet, aggregation along it, and forecast reconciliation.

A fleet's series nest: fleet -> accelerator -> pool (accelerator x region) -> team
(accelerator x region x team, the bottom level). :func:`build_hierarchy` turns the bottom
keys into a :class:`Hierarchy`; any other nesting works the same way, since a level is just
a name and the key columns that define it. Invariants a :class:`Hierarchy` guarantees:

* Levels run top to bottom and nest: each level's key columns extend its parent level's.
* Every node has a stable, readable ``series_id``: the level name for a level without keys
  (``fleet``), else ``level=value/value``: ``accelerator=h100``, ``pool=h100/us-east1``,
  ``team=h100/us-east1/search``. Ids are unique.
* Nodes are ordered level by level, top first, keys sorted within a level; the bottom level
  comes last, in the order of the columns of the summing matrix ``S`` (``n_nodes x
  n_bottom``, ``scipy.sparse``), whose last ``n_bottom`` rows are the identity.

:func:`aggregate` sums bottom-level actuals up to every node. :func:`reconcile` makes base
forecasts of every node coherent (every parent equals the sum of its children):

* ``bottom_up``: the bottom base means, summed.
* ``top_down``: the top base mean split by Gross & Sohl's method A, the average of the
  historical proportions (see :func:`top_down_proportions`).
* ``mint_shrink``: MinT (Wickramasuriya, Athanasopoulos & Hyndman 2019) with the
  Schäfer-Strimmer shrinkage estimate of the residual covariance (see
  :func:`shrinkage_covariance`). Above ``max_mint_nodes`` nodes the full covariance is too
  big to estimate or store, so it falls back to ``wls_var`` and says so in the result's
  ``warnings``.
* ``wls_var`` and ``wls_struct``: the same estimator with a diagonal ``W``: the residual
  variance of each node, or the number of bottom series under it.

The generalised least-squares methods compute ``G = (S' W^-1 S)^-1 S' W^-1`` in its
equivalent constraint form ``y~ = y^ - W U (U' W U)^-1 U' y^`` (Wickramasuriya et al. 2019),
where ``U' y = 0`` says that each aggregate equals the sum of its bottom series. That
needs one solve of the size of the number of aggregates, and with a diagonal ``W`` only sparse
matrices, so 10,000 bottom series reconcile in memory.

Non-negativity (``nonnegative=True``, the default): ``bottom_up`` and ``top_down`` clip the
bottom means at zero. The least-squares methods solve the same weighted problem with the
constraint that bottom means are non-negative (a non-negative least-squares projection with
the same ``W``, as in Wickramasuriya, Athanasopoulos & Hyndman 2020, solved by block
principal pivoting warm-started from the unconstrained solution; time steps without a
negative bottom mean are left as they are). Either way the reconciled bottom means are then
summed up through ``S``, so the result stays exactly coherent.

Quantiles are not additive, so they are not reconciled as a vector. Each node's base
quantiles were calibrated at that node's level; the reconciled quantiles are the base
quantiles shifted by the node's adjustment (reconciled minus base mean), clipped at zero and
sorted so they never cross. The shift keeps each node's calibrated spread and moves its
location with the mean: calibration is kept up to the change of the mean.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

from models.quantiles import quantile_from_column

__all__ = [
    "FLEET_LEVELS",
    "METHODS",
    "Hierarchy",
    "HierarchyError",
    "Method",
    "Reconciliation",
    "aggregate",
    "build_hierarchy",
    "reconcile",
    "shrinkage_covariance",
    "top_down_proportions",
]

#: The fleet's levels, top to bottom, and the key columns that define each.
FLEET_LEVELS: Mapping[str, tuple[str, ...]] = {
    "fleet": (),
    "accelerator": ("accelerator",),
    "pool": ("accelerator", "region"),
    "team": ("accelerator", "region", "team"),
}

Method = Literal["bottom_up", "top_down", "mint_shrink", "wls_var", "wls_struct"]

#: Every reconciliation method :func:`reconcile` accepts.
METHODS: tuple[Method, ...] = ("bottom_up", "top_down", "mint_shrink", "wls_var", "wls_struct")

_QUANTILE_COLUMN = re.compile(r"^p\d+(_\d+)?$")
_NODE_INDEX = "__node_index"


class HierarchyError(ValueError):
    """Input that does not fit the hierarchy; the message names the column or series at fault."""


@dataclass(frozen=True, eq=False)
class Hierarchy:
    """A nested hierarchy of series and its summing matrix (see the module docstring).

    Attributes
    ----------
    levels:
        Level names, top to bottom; the last is the bottom level.
    level_keys:
        The key columns of each level, parallel to ``levels``.
    nodes:
        One row per node, in node order: ``series_id``, ``level``, one column per key column
        (null above the level that introduces it) and ``parent_id`` (null at the top level).
    summing:
        The summing matrix ``S`` (``n_nodes x n_bottom``, CSR): row ``i`` has a 1 for every
        bottom series that node ``i`` adds up.
    """

    levels: tuple[str, ...]
    level_keys: tuple[tuple[str, ...], ...]
    nodes: pl.DataFrame
    summing: scipy.sparse.csr_array

    def __post_init__(self) -> None:
        if len(self.levels) != len(self.level_keys):
            raise HierarchyError("levels and level_keys must have one entry per level")
        n_nodes, n_bottom = self.summing.shape
        if self.nodes.height != n_nodes:
            raise HierarchyError("nodes and the rows of the summing matrix must have one length")
        bottom_block = self.summing[n_nodes - n_bottom :, :]
        if (bottom_block != scipy.sparse.eye_array(n_bottom, format="csr")).nnz:
            raise HierarchyError("the last n_bottom rows of the summing matrix must be identity")

    @property
    def series_ids(self) -> list[str]:
        """Ids of every node, in node order."""
        return self.nodes["series_id"].to_list()

    @property
    def bottom_ids(self) -> list[str]:
        """Ids of the bottom series, in the order of the summing matrix's columns."""
        return self.series_ids[self.n_aggregates :]

    @property
    def key_columns(self) -> tuple[str, ...]:
        """The key columns of the bottom level (all key columns of the hierarchy)."""
        return self.level_keys[-1]

    @property
    def bottom_level(self) -> str:
        """Name of the bottom level."""
        return self.levels[-1]

    @property
    def n_nodes(self) -> int:
        """Number of nodes at all levels."""
        return int(self.summing.shape[0])

    @property
    def n_bottom(self) -> int:
        """Number of bottom series."""
        return int(self.summing.shape[1])

    @property
    def n_aggregates(self) -> int:
        """Number of nodes above the bottom level."""
        return self.n_nodes - self.n_bottom

    def keys_of(self, level: str) -> tuple[str, ...]:
        """Return the key columns of a level."""
        if level not in self.levels:
            raise HierarchyError(f"unknown level '{level}'; levels are {', '.join(self.levels)}")
        return self.level_keys[self.levels.index(level)]


@dataclass(frozen=True, eq=False)
class Reconciliation:
    """Reconciled forecasts and what reconciling changed.

    Attributes
    ----------
    forecast:
        The long forecast frame for every node, in node order then ``ds``: ``series_id``,
        ``level``, ``ds``, any other column of the base frame, the reconciled ``mean``, the
        shifted quantile columns, ``base_mean`` and ``adjustment`` (``mean - base_mean``).
    adjustments:
        One row per node: ``series_id``, ``level``, ``base_total`` and ``reconciled_total``
        (means summed over ``ds``), ``adjustment_total`` and ``relative_adjustment``
        (``adjustment_total / base_total``, null when the base total is zero).
    method:
        The method asked for.
    method_used:
        The method applied: differs from ``method`` when MinT fell back to ``wls_var``.
    shrinkage_intensity:
        The Schäfer-Strimmer intensity of ``mint_shrink``, else None.
    warnings:
        Readable notes on fallbacks and fixes, for the UI to show (never Python warnings).
    """

    forecast: pl.DataFrame
    adjustments: pl.DataFrame
    method: str
    method_used: str
    shrinkage_intensity: float | None
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------- building


def _resolve_levels(
    levels: Sequence[str] | Mapping[str, Sequence[str]],
) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    if isinstance(levels, Mapping):
        names = tuple(str(name) for name in levels)
        keys = tuple(tuple(levels[name]) for name in levels)
    else:
        names = tuple(levels)
        unknown = [name for name in names if name not in FLEET_LEVELS]
        if unknown:
            raise HierarchyError(
                f"unknown level(s) {', '.join(unknown)}; the fleet's levels are "
                f"{', '.join(FLEET_LEVELS)} (or pass a mapping of level -> key columns)"
            )
        keys = tuple(FLEET_LEVELS[name] for name in names)
    if not names:
        raise HierarchyError("a hierarchy needs at least one level")
    if len(set(names)) != len(names):
        raise HierarchyError(f"level names must be unique, got {', '.join(names)}")
    for name, level_keys in zip(names, keys, strict=True):
        if len(set(level_keys)) != len(level_keys):
            raise HierarchyError(f"level '{name}' repeats a key column: {level_keys}")
    for depth in range(1, len(names)):
        if not set(keys[depth - 1]) < set(keys[depth]):
            raise HierarchyError(
                f"levels must nest: the keys of '{names[depth]}' {keys[depth]} must strictly "
                f"extend those of its parent '{names[depth - 1]}' {keys[depth - 1]}"
            )
    return names, keys


def _node_id_expr(level: str, keys: Sequence[str]) -> pl.Expr:
    if not keys:
        return pl.lit(level, dtype=pl.String)
    return pl.concat_str([pl.lit(f"{level}="), pl.concat_str(list(keys), separator="/")])


def build_hierarchy(
    bottom: pl.DataFrame,
    levels: Sequence[str] | Mapping[str, Sequence[str]] = tuple(FLEET_LEVELS),
) -> Hierarchy:
    """Build the hierarchy over the bottom keys of ``bottom``.

    ``bottom`` holds the key columns of the bottom level (other columns and repeated keys
    are ignored, so a usage table will do). ``levels`` is either level names from
    :data:`FLEET_LEVELS` (top to bottom, e.g. ``("fleet", "pool", "team")``) or a mapping of
    level name -> key columns for another hierarchy. Raises :class:`HierarchyError` for
    levels that do not nest, missing key columns, null keys or ids that collide (a key
    value containing ``/`` can make two nodes look alike).
    """
    names, keys = _resolve_levels(levels)
    key_columns = keys[-1]
    missing = [column for column in key_columns if column not in bottom.columns]
    if missing:
        raise HierarchyError(
            f"missing key column(s) {', '.join(missing)}; the frame has {', '.join(bottom.columns)}"
        )
    bottom_keys = (
        bottom.select(pl.col(column).cast(pl.String) for column in key_columns)
        .unique()
        .sort(list(key_columns))
    )
    null_rows = bottom_keys.filter(pl.any_horizontal(pl.all().is_null()))
    if null_rows.height:
        raise HierarchyError(
            f"{null_rows.height} bottom key(s) have a null in {', '.join(key_columns)}, "
            f"first {null_rows.row(0, named=True)}"
        )
    if bottom_keys.height == 0:
        raise HierarchyError("the frame has no bottom keys: a hierarchy needs one series")

    frames: list[pl.DataFrame] = []
    rows: list[np.ndarray] = []
    offset = 0
    indexed_bottom = bottom_keys.with_row_index("__bottom")
    for depth, (level, level_keys) in enumerate(zip(names, keys, strict=True)):
        if level_keys:
            level_nodes = bottom_keys.select(level_keys).unique().sort(list(level_keys))
            membership = indexed_bottom.join(
                level_nodes.with_row_index("__row"), on=list(level_keys), how="left"
            ).sort("__bottom")
            rows.append(membership["__row"].to_numpy().astype(np.int64) + offset)
        else:  # only the top level can have no keys (levels nest): one node, the total
            level_nodes = pl.DataFrame({"__total": [True]})
            rows.append(np.full(bottom_keys.height, offset, dtype=np.int64))
        parent = (
            _node_id_expr(names[depth - 1], keys[depth - 1])
            if depth
            else pl.lit(None, dtype=pl.String)
        )
        frame = level_nodes.with_columns(
            _node_id_expr(level, level_keys).alias("series_id"),
            pl.lit(level, dtype=pl.String).alias("level"),
            *(
                pl.lit(None, dtype=pl.String).alias(column)
                for column in key_columns
                if column not in level_keys
            ),
            parent.alias("parent_id"),
        )
        frames.append(frame.select("series_id", "level", *key_columns, "parent_id"))
        offset += level_nodes.height

    nodes = pl.concat(frames, how="vertical")
    duplicated = nodes.filter(pl.col("series_id").is_duplicated())
    if duplicated.height:
        raise HierarchyError(
            f"node id '{duplicated['series_id'][0]}' names more than one node; a key value "
            "probably contains '/' (fix: rename it)"
        )
    n_bottom = bottom_keys.height
    row_index = np.concatenate(rows)
    col_index = np.tile(np.arange(n_bottom, dtype=np.int64), len(names))
    summing = scipy.sparse.csr_array(
        (np.ones(row_index.size), (row_index, col_index)), shape=(nodes.height, n_bottom)
    )
    return Hierarchy(levels=names, level_keys=keys, nodes=nodes, summing=summing)


# --------------------------------------------------------------------------- aggregation


def _require_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise HierarchyError(
            f"{what} is missing column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}"
        )


def _node_index(hierarchy: Hierarchy) -> pl.DataFrame:
    return hierarchy.nodes.select("series_id", "level").with_row_index(_NODE_INDEX)


def aggregate(
    hierarchy: Hierarchy,
    bottom_frame: pl.DataFrame,
    value_cols: Sequence[str] = ("y",),
    *,
    time_col: str = "ds",
) -> pl.DataFrame:
    """Sum a bottom-level long frame up to every node of the hierarchy.

    ``bottom_frame`` has the hierarchy's key columns, ``time_col`` and ``value_cols``; rows
    sharing a bottom key and time (several workloads of one team, say) are summed. Returns
    ``series_id, level, <time_col>, <value_cols>`` for every node, in node order then time.
    A node gets a row at every time at which one of its bottom series has a row; a bottom
    series without a row at that time counts as zero. Raises :class:`HierarchyError` for
    missing columns, null values or bottom keys that are not in the hierarchy.
    """
    value_cols = list(value_cols)
    key_columns = list(hierarchy.key_columns)
    _require_columns(bottom_frame, [*key_columns, time_col, *value_cols], "the bottom frame")
    frame = bottom_frame.select(
        *(pl.col(column).cast(pl.String) for column in key_columns),
        time_col,
        *(pl.col(column).cast(pl.Float64) for column in value_cols),
    )
    nulls = frame.filter(pl.any_horizontal(pl.col(time_col, *value_cols).is_null()))
    if nulls.height:
        raise HierarchyError(
            f"{nulls.height} row(s) of the bottom frame have a null {time_col} or value, "
            f"first {nulls.row(0, named=True)}"
        )
    bottom_nodes = hierarchy.nodes.filter(pl.col("level") == hierarchy.bottom_level)
    unknown = frame.join(bottom_nodes.select(key_columns), on=key_columns, how="anti")
    if unknown.height:
        first = unknown.row(0, named=True)
        raise HierarchyError(
            f"{unknown.height} row(s) have bottom keys that are not in the hierarchy, first "
            f"{ {column: first[column] for column in key_columns} } (fix: build the hierarchy "
            "from these rows' keys)"
        )
    parts: list[pl.DataFrame] = []
    for level, level_keys in zip(hierarchy.levels, hierarchy.level_keys, strict=True):
        sums = frame.group_by([*level_keys, time_col]).agg(pl.col(value_cols).sum())
        level_nodes = hierarchy.nodes.filter(pl.col("level") == level)
        if level_keys:
            named = sums.join(
                level_nodes.select("series_id", *level_keys), on=list(level_keys), how="inner"
            )
        else:
            named = sums.with_columns(pl.lit(level_nodes["series_id"][0]).alias("series_id"))
        parts.append(named.select("series_id", time_col, *value_cols))
    return (
        pl.concat(parts, how="vertical")
        .join(_node_index(hierarchy), on="series_id", how="left")
        .sort(_NODE_INDEX, time_col)
        .select("series_id", "level", time_col, *value_cols)
    )


# --------------------------------------------------------------------------- estimators


def shrinkage_covariance(residuals: np.ndarray) -> tuple[np.ndarray, float]:
    """Return the Schäfer-Strimmer shrinkage covariance of residuals and its intensity.

    ``residuals`` is a ``(T, n)`` matrix: ``T`` time points of the residuals of ``n``
    series. As in MinT (Wickramasuriya et al. 2019) and R's ``hts::shrink.estim``, the
    sample covariance ``Σ = E'E / T`` is not centred (it estimates the mean squared error,
    so a biased series weighs less) and is shrunk towards its own diagonal ``D``:
    ``W = λ D + (1 - λ) Σ`` with ``λ = Σ_{i≠j} Var(r_ij) / Σ_{i≠j} r_ij²`` clipped to
    [0, 1], where ``r_ij`` are the correlations of ``Σ`` and ``Var(r_ij) = Σ_t (w_tij -
    w̄_ij)² / (T (T - 1))`` with ``w_tij`` the product of the standardised residuals ``i``
    and ``j`` at time ``t``. A series whose residuals are all zero has zero correlation with
    every other. ``λ`` is 1 when no pair of series is correlated at all.
    """
    errors = np.asarray(residuals, dtype=np.float64)
    if errors.ndim != 2:
        raise HierarchyError("residuals must be a (time points, series) matrix")
    n_times = errors.shape[0]
    if n_times < 2:
        raise HierarchyError("the shrinkage covariance needs residuals at 2 time points or more")
    if not np.isfinite(errors).all():
        raise HierarchyError("residuals must be finite")
    covariance = errors.T @ errors / n_times
    variance = np.diag(covariance).copy()
    scale = np.sqrt(variance)
    standardized = np.divide(errors, scale, out=np.zeros_like(errors), where=scale > 0)
    products = standardized.T @ standardized
    correlation_sq = (products / n_times) ** 2
    squares = standardized**2
    correlation_var = (squares.T @ squares - products**2 / n_times) / (n_times * (n_times - 1))
    np.fill_diagonal(correlation_sq, 0.0)
    np.fill_diagonal(correlation_var, 0.0)
    denominator = float(correlation_sq.sum())
    intensity = (
        1.0 if denominator <= 0.0 else min(max(correlation_var.sum() / denominator, 0.0), 1.0)
    )
    shrunk = (1.0 - intensity) * covariance
    np.fill_diagonal(shrunk, variance)
    return shrunk, float(intensity)


def top_down_proportions(
    hierarchy: Hierarchy, history: pl.DataFrame, *, value_col: str = "y", time_col: str = "ds"
) -> pl.DataFrame:
    """Return each bottom series' share of the total by Gross & Sohl's method A.

    ``history`` is a long actuals frame (``series_id``, ``time_col``, ``value_col``), such as
    :func:`aggregate`'s output; only its bottom series are read. The share of series ``j``
    is the average over time ``t`` of ``y_jt / Σ_k y_kt`` (the average of the historical
    proportions, not the proportion of the averages), over the times at which the bottom
    series add up to more than zero. The denominator is the sum of the bottom series, not
    the top series of ``history``, so the shares add up to exactly 1 even when the history
    is not coherent. A bottom series missing at a time counts as zero there, so a series
    with no history gets a share of zero. Returns ``series_id, proportion`` in bottom order.
    Raises :class:`HierarchyError` for negative actuals or a history whose bottom series
    never add up to more than zero.
    """
    _require_columns(history, ["series_id", time_col, value_col], "the history frame")
    bottom_ids = pl.DataFrame({"series_id": hierarchy.bottom_ids}).with_row_index(_NODE_INDEX)
    bottom = history.select("series_id", time_col, pl.col(value_col).cast(pl.Float64)).join(
        bottom_ids, on="series_id", how="inner"
    )
    bad = bottom.filter(~pl.col(value_col).is_finite().fill_null(False) | (pl.col(value_col) < 0))
    if bad.height:
        first = bad.row(0, named=True)
        raise HierarchyError(
            f"history has {bad.height} null, non-finite or negative {value_col} value(s) at the "
            f"bottom level, first in '{first['series_id']}' at {first[time_col]}"
        )
    shares = (
        bottom.with_columns(pl.col(value_col).sum().over(time_col).alias("__total"))
        .filter(pl.col("__total") > 0)
        .with_columns((pl.col(value_col) / pl.col("__total")).alias("__share"))
    )
    n_times = shares[time_col].n_unique()
    if n_times == 0:
        raise HierarchyError(
            "top_down needs a history in which the bottom series add up to more than zero at "
            "some time"
        )
    summed = shares.group_by("series_id").agg(pl.col("__share").sum())
    return (
        bottom_ids.join(summed, on="series_id", how="left")
        .sort(_NODE_INDEX)
        .select("series_id", (pl.col("__share").fill_null(0.0) / n_times).alias("proportion"))
    )


# --------------------------------------------------------------------------- least squares


class _CoherentLeastSquares:
    """Solve ``min (y^ - y~)' W^-1 (y^ - y~)`` over coherent ``y~`` in constraint form.

    Nodes are ordered aggregates first (``k``), bottom series last (``m``), and ``C`` is the
    aggregate block of ``S``. Coherence is ``U' y~ = 0`` with ``U = [I_k; -C']``; fixing a
    set ``Z`` of bottom series at zero adds the constraints ``E_Z' y~ = 0``. With ``K = [U,
    E_Z]`` the solution is ``y~ = y^ - W K x`` where ``(K' W K) x = K' y^``.

    ``W`` is either a full ``(n, n)`` matrix (a dense system of size ``k + |Z|``) or the
    vector of a diagonal one. A diagonal ``W`` decouples the fixed series, so the system
    stays ``k x k`` and sparse: ``(diag(w_a) + C diag(w_F) C') x_U = y^_a - C y^_F`` with
    ``w_F`` the bottom weights zeroed on ``Z``; then ``y~_F = y^_F + w_F C' x_U`` and the
    multipliers of ``Z`` are ``y^_Z / w_Z + (C' x_U)_Z``.
    """

    def __init__(self, aggregate_rows: scipy.sparse.csr_array, weights: np.ndarray) -> None:
        self.k, self.m = aggregate_rows.shape
        self.c = aggregate_rows
        self.weights = weights
        k = self.k
        self._free_lu: scipy.sparse.linalg.SuperLU | None = None
        self._gram: np.ndarray | None = None  # S' W^-1 S, for a full W with few free series
        self._st_winv = np.zeros((0, 0))
        if weights.ndim == 2:
            # (W U)_bottom = W[bottom, agg] - W[bottom, bottom] C'  (m x k), and U' W U.
            self.wu_bottom = weights[k:, :k] - (aggregate_rows @ weights[k:, k:]).T
            wu_aggregate = weights[:k, :k] - (aggregate_rows @ weights[k:, :k]).T
            utwu = wu_aggregate - aggregate_rows @ self.wu_bottom
            self.utwu = (utwu + utwu.T) / 2

    def _diagonal_system(self, free_weights: np.ndarray) -> scipy.sparse.csc_array:
        scaled = scipy.sparse.csr_array(self.c.multiply(free_weights[None, :]))
        return scipy.sparse.csc_array(
            scipy.sparse.diags_array(self.weights[: self.k]) + scaled @ self.c.T
        )

    def solve(self, y_hat: np.ndarray, zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the reconciled bottom ``(m, H)`` and the multipliers of ``Z`` ``(|Z|, H)``."""
        k = self.k
        y_aggregate, y_bottom = y_hat[:k], y_hat[k:]
        if self.weights.ndim == 1:
            w_bottom = self.weights[k:]
            free = np.ones(self.m, dtype=bool)
            free[zero] = False
            free_weights = np.where(free, w_bottom, 0.0)
            y_free = np.where(free[:, None], y_bottom, 0.0)
            if k:
                rhs = y_aggregate - self.c @ y_free
                if zero.size == 0:
                    if self._free_lu is None:
                        self._free_lu = scipy.sparse.linalg.splu(
                            self._diagonal_system(free_weights)
                        )
                    x = np.asarray(self._free_lu.solve(rhs))
                else:
                    lu = scipy.sparse.linalg.splu(self._diagonal_system(free_weights))
                    x = np.asarray(lu.solve(rhs))
                pulled = np.asarray(self.c.T @ x)
            else:
                pulled = np.zeros_like(y_bottom)
            bottom = y_free + free_weights[:, None] * pulled
            multipliers = y_bottom[zero] / w_bottom[zero, None] + pulled[zero]
            return bottom, multipliers
        if zero.size and self.m - zero.size < k + zero.size:
            return self._solve_free(y_hat, zero)
        rhs = np.vstack([y_aggregate - self.c @ y_bottom, y_bottom[zero]])
        if rhs.shape[0] == 0:
            return y_bottom.copy(), np.zeros((0, y_hat.shape[1]))
        cross = self.wu_bottom[zero, :]  # E_Z' W U
        matrix = np.block([[self.utwu, cross.T], [cross, self.weights[k + zero][:, k + zero]]])
        x = np.asarray(scipy.linalg.solve(matrix, rhs, assume_a="pos"))
        bottom = y_bottom - self.wu_bottom @ x[:k] - self.weights[k:, k + zero] @ x[k:]
        return bottom, x[k:]

    def _solve_free(self, y_hat: np.ndarray, zero: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The full-``W`` problem in the free bottom series, for when few of them are free.

        Minimises ``(S b - y^)' W^-1 (S b - y^)`` over ``b_F`` with ``b_Z = 0``: a system of
        size ``|F|`` in the Gram matrix ``S' W^-1 S``, whose gradient on ``Z`` is minus the
        multipliers of the constraint form.
        """
        if self._gram is None:
            summing = scipy.sparse.vstack(
                [self.c, scipy.sparse.eye_array(self.m, format="csr")], format="csr"
            )
            factor, lower = scipy.linalg.cho_factor(self.weights, lower=True)
            self._st_winv = np.asarray(scipy.linalg.cho_solve((factor, lower), summing.toarray())).T
            self._gram = np.asarray(summing.T @ self._st_winv.T).T
        q = self._st_winv @ y_hat
        free = np.ones(self.m, dtype=bool)
        free[zero] = False
        bottom = np.zeros((self.m, y_hat.shape[1]))
        if free.any():
            bottom[free] = scipy.linalg.solve(
                self._gram[np.ix_(free, free)], q[free], assume_a="pos"
            )
        gradient = self._gram[zero] @ bottom - q[zero]
        return bottom, -gradient


def _nonnegative_column(
    solver: _CoherentLeastSquares,
    y_hat: np.ndarray,
    unconstrained: np.ndarray,
    *,
    primal_tol: float,
    dual_tol: float,
    max_iter: int,
) -> tuple[np.ndarray, bool]:
    """Solve one time step's problem with non-negative bottom series.

    Block principal pivoting (Kim & Park 2011) on the bottom series: ``Z`` holds the series
    fixed at zero. The gradient of the objective in a fixed series is minus its multiplier,
    so KKT asks for non-negative free series and non-positive multipliers; infeasible series
    switch sides, all at once while the number of infeasible ones falls, else (after three
    tries) one at a time, which guarantees termination.
    """
    zero = unconstrained < -primal_tol
    best, backups = solver.m + 1, 3
    for _ in range(max_iter):
        fixed = np.flatnonzero(zero)
        bottom, multipliers = solver.solve(y_hat[:, None], fixed)
        bottom, multipliers = bottom[:, 0], multipliers[:, 0]
        infeasible = ~zero & (bottom < -primal_tol)
        infeasible[fixed] = multipliers > dual_tol
        count = int(infeasible.sum())
        if count == 0:
            bottom[fixed] = 0.0
            return np.maximum(bottom, 0.0), True
        if count < best:
            best, backups = count, 3
            zero ^= infeasible
        elif backups > 0:
            backups -= 1
            zero ^= infeasible
        else:
            last = int(np.flatnonzero(infeasible).max())
            zero[last] = not zero[last]
    return np.maximum(unconstrained, 0.0), False


# --------------------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class _Base:
    frame: pl.DataFrame  # the base frame with its node index, sorted by node then time
    mean: np.ndarray  # (n_nodes, horizon)
    quantile_columns: tuple[str, ...]  # sorted by level


def _base_matrix(hierarchy: Hierarchy, base: pl.DataFrame, time_col: str) -> _Base:
    _require_columns(base, ["series_id", time_col, "mean"], "the base forecast frame")
    quantile_columns = tuple(
        sorted(
            (column for column in base.columns if _QUANTILE_COLUMN.match(column)),
            key=quantile_from_column,
        )
    )
    frame = base.drop("level", strict=False).join(
        _node_index(hierarchy), on="series_id", how="left"
    )
    unknown = frame.filter(pl.col(_NODE_INDEX).is_null())
    if unknown.height:
        raise HierarchyError(
            f"the base forecasts have {unknown['series_id'].n_unique()} series that are not "
            f"nodes of the hierarchy, first '{unknown['series_id'][0]}'"
        )
    duplicated = frame.filter(pl.struct("series_id", time_col).is_duplicated())
    if duplicated.height:
        first = duplicated.row(0, named=True)
        raise HierarchyError(
            f"series '{first['series_id']}' has {time_col} {first[time_col]} more than once in "
            "the base forecasts (fix: reconcile one model at a time)"
        )
    numbers = ["mean", *quantile_columns]
    bad = frame.filter(
        pl.any_horizontal(~pl.col(numbers).cast(pl.Float64).is_finite().fill_null(False))
    )
    if bad.height:
        first = bad.row(0, named=True)
        raise HierarchyError(
            f"{bad.height} base forecast row(s) have a null or non-finite mean or quantile, "
            f"first in '{first['series_id']}' at {first[time_col]}"
        )
    horizon = frame[time_col].n_unique()
    counts = frame.group_by("series_id").len()
    if counts.height != hierarchy.n_nodes or (counts["len"] != horizon).any():
        present = set(counts.filter(pl.col("len") == horizon)["series_id"].to_list())
        short = next(node for node in hierarchy.series_ids if node not in present)
        raise HierarchyError(
            f"every node needs a base forecast at each of the {horizon} {time_col} values; "
            f"'{short}' does not have them all"
        )
    frame = frame.sort(_NODE_INDEX, time_col)
    mean = frame["mean"].cast(pl.Float64).to_numpy().reshape(hierarchy.n_nodes, horizon)
    return _Base(frame=frame, mean=mean, quantile_columns=quantile_columns)


def _residual_frame(
    hierarchy: Hierarchy, residuals: pl.DataFrame | None, index: Sequence[str]
) -> pl.DataFrame:
    if residuals is None:
        raise HierarchyError(
            "this reconciliation method needs residuals (series_id, time index, residual) for "
            "every node, from in-sample fits or backtests"
        )
    _require_columns(residuals, ["series_id", *index, "residual"], "the residuals frame")
    frame = residuals.select("series_id", *index, pl.col("residual").cast(pl.Float64)).join(
        _node_index(hierarchy), on="series_id", how="left"
    )
    unknown = frame.filter(pl.col(_NODE_INDEX).is_null())
    if unknown.height:
        raise HierarchyError(
            f"the residuals have series that are not nodes of the hierarchy, first "
            f"'{unknown['series_id'][0]}'"
        )
    bad = frame.filter(~pl.col("residual").is_finite().fill_null(False))
    if bad.height:
        raise HierarchyError(
            f"{bad.height} residual(s) are null or non-finite, first in '{bad['series_id'][0]}'"
        )
    duplicated = frame.filter(pl.struct("series_id", *index).is_duplicated())
    if duplicated.height:
        raise HierarchyError(
            f"series '{duplicated['series_id'][0]}' has more than one residual at one "
            f"{', '.join(index)}"
        )
    covered = set(frame["series_id"].unique().to_list())
    if len(covered) != hierarchy.n_nodes:
        first = next(node for node in hierarchy.series_ids if node not in covered)
        raise HierarchyError(
            f"{hierarchy.n_nodes - len(covered)} node(s) have no residuals, first '{first}' "
            "(fix: pass residuals for every node)"
        )
    return frame


def _variance_floor(variance: np.ndarray) -> float:
    # A node with zero residuals would get an infinite weight; a tiny positive variance
    # keeps W invertible while still trusting that node almost exactly.
    largest = float(variance.max()) if variance.size else 0.0
    return 1e-9 * largest if largest > 0 else 1.0


def _residual_variances(frame: pl.DataFrame) -> np.ndarray:
    by_node = (
        frame.group_by(_NODE_INDEX)
        .agg((pl.col("residual") ** 2).mean().alias("mse"))
        .sort(_NODE_INDEX)
    )
    variance = by_node["mse"].to_numpy().astype(np.float64)
    return np.maximum(variance, _variance_floor(variance))


def _residual_matrix(
    hierarchy: Hierarchy, frame: pl.DataFrame, index: Sequence[str]
) -> tuple[np.ndarray, int]:
    """Residuals at the times where every node has one, as (T, n); and the number of times."""
    timed = frame.with_columns(pl.struct(*index).rank("dense").cast(pl.Int64).alias("__t") - 1)
    n_times = timed["__t"].n_unique()
    matrix = np.full((n_times, hierarchy.n_nodes), np.nan)
    matrix[timed["__t"].to_numpy(), timed[_NODE_INDEX].to_numpy().astype(np.int64)] = timed[
        "residual"
    ].to_numpy()
    complete = ~np.isnan(matrix).any(axis=1)
    return matrix[complete], n_times


def _solve_least_squares(
    hierarchy: Hierarchy,
    y_hat: np.ndarray,
    weights: np.ndarray,
    *,
    nonnegative: bool,
    notes: list[str],
) -> np.ndarray:
    k = hierarchy.n_aggregates
    solver = _CoherentLeastSquares(scipy.sparse.csr_array(hierarchy.summing[:k, :]), weights)
    bottom, _ = solver.solve(y_hat, np.zeros(0, dtype=np.int64))
    if not nonnegative:
        return bottom
    primal_tol = 1e-9 * max(1.0, float(np.abs(y_hat).max(initial=0.0)))
    diagonal = np.diag(weights) if weights.ndim == 2 else weights
    dual_tol = primal_tol / float(np.median(diagonal))
    negative_steps = np.flatnonzero((bottom < -primal_tol).any(axis=0))
    unsolved = 0
    for step in negative_steps:
        bottom[:, step], solved = _nonnegative_column(
            solver,
            y_hat[:, step],
            bottom[:, step],
            primal_tol=primal_tol,
            dual_tol=dual_tol,
            max_iter=10 * hierarchy.n_bottom + 10,
        )
        unsolved += not solved
    if negative_steps.size:
        notes.append(
            f"non-negativity: {negative_steps.size} of {y_hat.shape[1]} time step(s) had "
            "negative bottom means; they were solved again with bottom means constrained to "
            "be non-negative (same weights)"
        )
    if unsolved:
        notes.append(
            f"non-negativity: the constrained solve did not converge at {unsolved} time "
            "step(s); their negative bottom means were set to zero instead"
        )
    return np.maximum(bottom, 0.0)


def reconcile(
    hierarchy: Hierarchy,
    base: pl.DataFrame,
    method: Method,
    *,
    residuals: pl.DataFrame | None = None,
    history: pl.DataFrame | None = None,
    nonnegative: bool = True,
    max_mint_nodes: int = 2000,
    residual_index: str | Sequence[str] = "ds",
    history_value: str = "y",
    time_col: str = "ds",
) -> Reconciliation:
    """Make base forecasts of every node coherent with the hierarchy.

    ``base`` is a long forecast frame with a row for every node at every ``time_col``:
    ``series_id``, ``time_col``, ``mean`` and optional quantile columns (``p05``, ``p50``,
    ``p97_5``, ...); other columns (``h``, ``model``) are carried through. ``method`` is one
    of :data:`METHODS` (see the module docstring). ``residuals`` (``series_id``, the
    ``residual_index`` column(s), ``residual``; every node) feed ``mint_shrink`` and
    ``wls_var``; MinT uses the times at which every node has a residual. ``history``
    (actuals per node, as from :func:`aggregate`, with ``history_value``) feeds
    ``top_down``. MinT on more than ``max_mint_nodes`` nodes, or with fewer than two
    complete residual times, falls back to ``wls_var`` and records why in ``warnings``.

    The reconciled means are the reconciled bottom means summed through ``S``: every parent
    equals the sum of its children. With ``nonnegative`` they are also non-negative and the
    shifted quantiles are clipped at zero. Raises :class:`HierarchyError` for frames that
    do not fit the hierarchy or a method without the input it needs.
    """
    if method not in METHODS:
        raise HierarchyError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    index = [residual_index] if isinstance(residual_index, str) else list(residual_index)
    prepared = _base_matrix(hierarchy, base, time_col)
    y_hat = prepared.mean
    k = hierarchy.n_aggregates
    notes: list[str] = []
    method_used: str = method
    intensity: float | None = None

    if method == "bottom_up":
        bottom = y_hat[k:].copy()
        if nonnegative and (bottom < 0).any():
            notes.append(
                f"non-negativity: {int((bottom < 0).sum())} negative bottom base mean(s) were "
                "set to zero before summing"
            )
            bottom = np.maximum(bottom, 0.0)
    elif method == "top_down":
        if (
            hierarchy.level_keys[0]
            or hierarchy.nodes.filter(pl.col("level") == hierarchy.levels[0]).height != 1
        ):
            raise HierarchyError("top_down needs a single top node (a top level without keys)")
        if history is None:
            raise HierarchyError("top_down needs the history of actuals (history=...)")
        proportions = top_down_proportions(
            hierarchy, history, value_col=history_value, time_col=time_col
        )["proportion"].to_numpy()
        top = np.maximum(y_hat[0], 0.0) if nonnegative else y_hat[0]
        bottom = proportions[:, None] * top[None, :]
        missing = int((proportions == 0).sum())
        if missing:
            notes.append(
                f"top_down: {missing} bottom series have no share in the history and get zero"
            )
    else:
        weights: np.ndarray | None = None
        if method == "wls_struct":
            weights = np.asarray(hierarchy.summing.sum(axis=1), dtype=np.float64).ravel()
        else:
            frame = _residual_frame(hierarchy, residuals, index)
            if method == "mint_shrink":
                if hierarchy.n_nodes > max_mint_nodes:
                    notes.append(
                        f"mint_shrink: {hierarchy.n_nodes} nodes exceed the limit of "
                        f"{max_mint_nodes} for a full covariance; used wls_var (residual "
                        "variances, no correlations) instead"
                    )
                else:
                    matrix, n_times = _residual_matrix(hierarchy, frame, index)
                    if matrix.shape[0] < 2:
                        notes.append(
                            f"mint_shrink: only {matrix.shape[0]} of {n_times} residual "
                            "time(s) have a residual for every node; used wls_var instead"
                        )
                    else:
                        if matrix.shape[0] < n_times:
                            notes.append(
                                f"mint_shrink: estimated the covariance from the "
                                f"{matrix.shape[0]} of {n_times} residual times at which "
                                "every node has a residual"
                            )
                        covariance, intensity = shrinkage_covariance(matrix)
                        diagonal = np.diag(covariance)
                        np.fill_diagonal(
                            covariance, np.maximum(diagonal, _variance_floor(diagonal))
                        )
                        weights = covariance
            if weights is None:
                weights = _residual_variances(frame)
                method_used = "wls_var"
                intensity = None
        try:
            bottom = _solve_least_squares(
                hierarchy, y_hat, weights, nonnegative=nonnegative, notes=notes
            )
        except np.linalg.LinAlgError:
            if weights.ndim != 2:
                raise
            notes.append(
                "mint_shrink: the shrunk covariance is singular; used wls_var (its diagonal)"
            )
            weights = np.diag(weights).copy()
            method_used, intensity = "wls_var", None
            bottom = _solve_least_squares(
                hierarchy, y_hat, weights, nonnegative=nonnegative, notes=notes
            )

    reconciled = np.asarray(hierarchy.summing @ bottom)
    if nonnegative:  # sums of non-negative bottoms: only rounding can dip below zero
        reconciled = np.maximum(reconciled, 0.0)
    forecast = _forecast_frame(prepared, reconciled, nonnegative=nonnegative, time_col=time_col)
    adjustments = (
        forecast.group_by("series_id", "level", maintain_order=True)
        .agg(
            pl.col("base_mean").sum().alias("base_total"),
            pl.col("mean").sum().alias("reconciled_total"),
            pl.col("adjustment").sum().alias("adjustment_total"),
        )
        .with_columns(
            pl.when(pl.col("base_total") != 0)
            .then(pl.col("adjustment_total") / pl.col("base_total"))
            .otherwise(None)
            .alias("relative_adjustment")
        )
    )
    return Reconciliation(
        forecast=forecast,
        adjustments=adjustments,
        method=method,
        method_used=method_used,
        shrinkage_intensity=intensity,
        warnings=tuple(notes),
    )


def _forecast_frame(
    prepared: _Base, reconciled: np.ndarray, *, nonnegative: bool, time_col: str
) -> pl.DataFrame:
    frame = prepared.frame
    base_mean = prepared.mean.ravel()
    mean = reconciled.ravel()
    adjustment = mean - base_mean
    columns: dict[str, pl.Series] = {}
    if prepared.quantile_columns:
        shifted = (
            frame.select(pl.col(prepared.quantile_columns).cast(pl.Float64)).to_numpy()
            + adjustment[:, None]
        )
        if nonnegative:
            shifted = np.maximum(shifted, 0.0)
        shifted = np.sort(shifted, axis=1)
        for position, column in enumerate(prepared.quantile_columns):
            columns[column] = pl.Series(column, shifted[:, position])
    extra = [
        column
        for column in frame.columns
        if column not in {"series_id", time_col, "mean", _NODE_INDEX, "level"}
        and column not in prepared.quantile_columns
    ]
    return frame.with_columns(
        pl.Series("mean", mean),
        pl.Series("base_mean", base_mean),
        pl.Series("adjustment", adjustment),
        *columns.values(),
    ).select(
        "series_id",
        "level",
        time_col,
        *extra,
        "mean",
        *prepared.quantile_columns,
        "base_mean",
        "adjustment",
    )
