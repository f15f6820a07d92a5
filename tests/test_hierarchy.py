"""Hierarchy building, aggregation and forecast reconciliation (workbench.hierarchy)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import nnls

from workbench.hierarchy import (
    FLEET_LEVELS,
    METHODS,
    Hierarchy,
    HierarchyError,
    Method,
    aggregate,
    build_hierarchy,
    reconcile,
    shrinkage_covariance,
    top_down_proportions,
)

START = date(2027, 1, 1)
QUANTILES = ("p05", "p50", "p95")


def _days(count: int, start: date = START) -> list[date]:
    return [start + timedelta(days=step) for step in range(count)]


def _bottom_keys(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["accelerator", "region", "team"], orient="row")


def _base_frame(hierarchy: Hierarchy, mean: np.ndarray, spread: float = 0.5) -> pl.DataFrame:
    """A base forecast frame from an (n_nodes, horizon) matrix of means."""
    n_nodes, horizon = mean.shape
    flat = mean.ravel()
    return pl.DataFrame(
        {
            "series_id": np.repeat(hierarchy.series_ids, horizon),
            "ds": _days(horizon) * n_nodes,
            "h": np.tile(np.arange(1, horizon + 1), n_nodes),
            "mean": flat,
            "p05": flat * (1 - spread),
            "p50": flat,
            "p95": flat * (1 + spread),
        }
    )


def _residual_frame(hierarchy: Hierarchy, errors: np.ndarray) -> pl.DataFrame:
    """A residual frame from a (T, n_nodes) matrix."""
    n_times, n_nodes = errors.shape
    return pl.DataFrame(
        {
            "series_id": np.repeat(hierarchy.series_ids, n_times),
            "ds": _days(n_times, date(2026, 1, 1)) * n_nodes,
            "residual": errors.T.ravel(),
        }
    )


def _means(result_forecast: pl.DataFrame, hierarchy: Hierarchy) -> np.ndarray:
    horizon = result_forecast["ds"].n_unique()
    return result_forecast["mean"].to_numpy().reshape(hierarchy.n_nodes, horizon)


def _assert_coherent(forecast: pl.DataFrame, hierarchy: Hierarchy) -> None:
    """Every parent's mean equals the sum of its children's, at every ds."""
    children = (
        forecast.join(hierarchy.nodes.select("series_id", "parent_id"), on="series_id")
        .filter(pl.col("parent_id").is_not_null())
        .group_by("parent_id", "ds")
        .agg(pl.col("mean").sum().alias("children"))
    )
    compared = children.join(
        forecast.select("series_id", "ds", "mean"),
        left_on=["parent_id", "ds"],
        right_on=["series_id", "ds"],
    )
    assert compared.height == children.height
    scale = max(1.0, float(np.abs(forecast["mean"].to_numpy()).max()))
    np.testing.assert_allclose(
        compared["mean"].to_numpy(), compared["children"].to_numpy(), rtol=0, atol=1e-9 * scale
    )


# --------------------------------------------------------------------------- building


def test_build_hierarchy_names_nodes_and_sums_them() -> None:
    keys = _bottom_keys(
        [
            ("h100", "us-east1", "search"),
            ("h100", "us-east1", "ads"),
            ("h100", "eu-west4", "search"),
            ("tpu-v5e", "us-east1", "search"),
            ("h100", "us-east1", "ads"),  # repeated keys are one series
        ]
    )
    hierarchy = build_hierarchy(keys)
    assert hierarchy.levels == tuple(FLEET_LEVELS)
    assert hierarchy.series_ids == [
        "fleet",
        "accelerator=h100",
        "accelerator=tpu-v5e",
        "pool=h100/eu-west4",
        "pool=h100/us-east1",
        "pool=tpu-v5e/us-east1",
        "team=h100/eu-west4/search",
        "team=h100/us-east1/ads",
        "team=h100/us-east1/search",
        "team=tpu-v5e/us-east1/search",
    ]
    assert hierarchy.bottom_ids == hierarchy.series_ids[6:]
    assert (hierarchy.n_nodes, hierarchy.n_bottom, hierarchy.n_aggregates) == (10, 4, 6)
    assert hierarchy.nodes.columns == [
        "series_id",
        "level",
        "accelerator",
        "region",
        "team",
        "parent_id",
    ]
    pool = hierarchy.nodes.row(4, named=True)
    assert pool == {
        "series_id": "pool=h100/us-east1",
        "level": "pool",
        "accelerator": "h100",
        "region": "us-east1",
        "team": None,
        "parent_id": "accelerator=h100",
    }
    summing = hierarchy.summing.toarray()
    np.testing.assert_array_equal(summing[0], [1, 1, 1, 1])
    np.testing.assert_array_equal(summing[1], [1, 1, 1, 0])
    np.testing.assert_array_equal(summing[4], [0, 1, 1, 0])
    np.testing.assert_array_equal(summing[6:], np.eye(4))
    # The summing matrix agrees with the parent links: a node adds up its children's rows.
    index = {node: row for row, node in enumerate(hierarchy.series_ids)}
    for node, parent in hierarchy.nodes.select("series_id", "parent_id").iter_rows():
        if parent is not None:
            assert (summing[index[parent]] >= summing[index[node]]).all()


def test_build_hierarchy_takes_other_levels() -> None:
    keys = pl.DataFrame({"region": ["eu", "us", "us"], "team": ["a", "a", "b"]})
    hierarchy = build_hierarchy(
        keys, {"world": (), "region": ("region",), "team": ("region", "team")}
    )
    assert hierarchy.series_ids == [
        "world",
        "region=eu",
        "region=us",
        "team=eu/a",
        "team=us/a",
        "team=us/b",
    ]
    assert hierarchy.keys_of("team") == ("region", "team")
    skipping = build_hierarchy(_bottom_keys([("h100", "us", "a")]), ("fleet", "pool", "team"))
    assert skipping.series_ids == ["fleet", "pool=h100/us", "team=h100/us/a"]


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ({"region": ("region",), "team": ("team",)}, "must nest"),
        (("fleet", "rack"), "unknown level"),
        ({"total": (), "total2": ()}, "must nest"),
    ],
)
def test_build_hierarchy_rejects_levels_that_do_not_nest(
    levels: dict[str, tuple[str, ...]] | tuple[str, ...], message: str
) -> None:
    keys = pl.DataFrame({"region": ["eu"], "team": ["a"]})
    with pytest.raises(HierarchyError, match=message):
        build_hierarchy(keys, levels)


def test_build_hierarchy_rejects_null_keys_and_colliding_ids() -> None:
    with pytest.raises(HierarchyError, match="null"):
        build_hierarchy(_bottom_keys([("h100", "us", "a"), ("h100", None, "b")]))  # type: ignore[list-item]
    with pytest.raises(HierarchyError, match="more than one node"):
        build_hierarchy(_bottom_keys([("h100", "us/a", "b"), ("h100", "us", "a/b")]))
    with pytest.raises(HierarchyError, match="missing key column"):
        build_hierarchy(pl.DataFrame({"accelerator": ["h100"]}))


# --------------------------------------------------------------------------- aggregation


def test_aggregate_matches_a_per_node_loop() -> None:
    rng = np.random.default_rng(7)
    rows = [(a, r, t) for a in ("h100", "tpu") for r in ("eu", "us") for t in ("x", "y")]
    frame = pl.DataFrame(
        {
            "accelerator": [row[0] for row in rows for _ in range(6)],
            "region": [row[1] for row in rows for _ in range(6)],
            "team": [row[2] for row in rows for _ in range(6)],
            "ds": [day for _ in rows for day in _days(3) * 2],  # two workloads per day
            "y": rng.uniform(0, 10, len(rows) * 6),
            "z": rng.uniform(0, 1, len(rows) * 6),
        }
    ).filter(~((pl.col("team") == "y") & (pl.col("ds") == START)))  # some series start later
    hierarchy = build_hierarchy(frame)
    aggregated = aggregate(hierarchy, frame, ("y", "z"))
    assert aggregated.columns == ["series_id", "level", "ds", "y", "z"]
    assert aggregated["series_id"].unique(maintain_order=True).to_list() == hierarchy.series_ids
    for node in hierarchy.nodes.iter_rows(named=True):
        level_keys = hierarchy.keys_of(node["level"])
        mine = (
            frame.filter(*(pl.col(key) == node[key] for key in level_keys)) if level_keys else frame
        )
        expected = mine.group_by("ds").agg(pl.col("y", "z").sum()).sort("ds")
        got = aggregated.filter(pl.col("series_id") == node["series_id"]).sort("ds")
        assert got["ds"].to_list() == expected["ds"].to_list()
        np.testing.assert_allclose(got["y"].to_numpy(), expected["y"].to_numpy())
        np.testing.assert_allclose(got["z"].to_numpy(), expected["z"].to_numpy())


def test_aggregate_rejects_keys_outside_the_hierarchy() -> None:
    hierarchy = build_hierarchy(_bottom_keys([("h100", "us", "a")]))
    frame = pl.DataFrame(
        {"accelerator": ["h100"], "region": ["eu"], "team": ["a"], "ds": [START], "y": [1.0]}
    )
    with pytest.raises(HierarchyError, match="not in the hierarchy"):
        aggregate(hierarchy, frame)
    with pytest.raises(HierarchyError, match="missing column"):
        aggregate(hierarchy, frame.drop("y"))


# --------------------------------------------------------------------------- properties

keys_strategy = st.lists(
    st.tuples(
        st.sampled_from(["h100", "a100", "tpu-v5e"]),
        st.sampled_from(["us-east1", "eu-west4"]),
        st.sampled_from(["search", "ads", "llm", "vision"]),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=keys_strategy,
    method=st.sampled_from(METHODS),
    horizon=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_reconciled_forecasts_are_coherent_and_non_negative(
    rows: list[tuple[str, str, str]], method: Method, horizon: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    hierarchy = build_hierarchy(_bottom_keys(rows))
    # Incoherent and often tiny base means: least-squares methods will want negative bottoms.
    base_mean = rng.gamma(0.5, 20.0, (hierarchy.n_nodes, horizon))
    base = _base_frame(hierarchy, base_mean, spread=float(rng.uniform(0, 1)))
    residuals = _residual_frame(
        hierarchy, rng.normal(0, rng.uniform(0.1, 5), (8, hierarchy.n_nodes))
    )
    history = _base_frame(hierarchy, rng.gamma(1.0, 5.0, (hierarchy.n_nodes, 4))).select(
        "series_id", "ds", pl.col("mean").alias("y")
    )
    result = reconcile(hierarchy, base, method, residuals=residuals, history=history)
    forecast = result.forecast
    assert forecast.height == base.height
    _assert_coherent(forecast, hierarchy)
    quantiles = forecast.select(QUANTILES).to_numpy()
    assert (forecast["mean"].to_numpy() >= 0).all()
    assert (quantiles >= 0).all()
    assert (np.diff(quantiles, axis=1) >= 0).all()
    np.testing.assert_allclose(
        forecast["adjustment"].to_numpy(), (forecast["mean"] - forecast["base_mean"]).to_numpy()
    )
    # Reconciled means are the reconciled bottom means summed through S.
    means = _means(forecast, hierarchy)
    np.testing.assert_allclose(
        hierarchy.summing @ means[hierarchy.n_aggregates :], means, atol=1e-9 * max(1, means.max())
    )


# --------------------------------------------------------------------------- methods


@pytest.fixture(scope="module")
def small_hierarchy() -> Hierarchy:
    return build_hierarchy(
        _bottom_keys(
            [
                ("h100", "us", "a"),
                ("h100", "us", "b"),
                ("h100", "eu", "a"),
                ("tpu", "us", "a"),
                ("tpu", "us", "c"),
            ]
        )
    )


def test_bottom_up_sums_the_bottom_base_forecasts(small_hierarchy: Hierarchy) -> None:
    rng = np.random.default_rng(3)
    base_mean = rng.uniform(1, 10, (small_hierarchy.n_nodes, 4))
    result = reconcile(small_hierarchy, _base_frame(small_hierarchy, base_mean), "bottom_up")
    expected = small_hierarchy.summing @ base_mean[small_hierarchy.n_aggregates :]
    np.testing.assert_allclose(_means(result.forecast, small_hierarchy), expected)
    assert result.method_used == "bottom_up"
    assert result.warnings == ()
    assert result.forecast.columns == [
        "series_id",
        "level",
        "ds",
        "h",
        "mean",
        *QUANTILES,
        "base_mean",
        "adjustment",
    ]
    bottom = result.adjustments.filter(pl.col("level") == "team")
    np.testing.assert_allclose(bottom["adjustment_total"].to_numpy(), 0.0, atol=1e-12)


def test_top_down_splits_the_top_by_average_historical_proportions() -> None:
    hierarchy = build_hierarchy(
        _bottom_keys([("h100", "us", "a"), ("h100", "us", "b"), ("tpu", "us", "a")])
    )
    # Bottom order: h100/us/a, h100/us/b, tpu/us/a. Shares per day: (1/4, 1/4, 1/2) then
    # (3/4, 0, 1/4); method A averages them to (1/2, 1/8, 3/8). (Proportions of the averages
    # would give (4/8, 1/8, 3/8) here too, so a third day with a zero total is ignored and
    # a day with a larger total makes the two methods differ.)
    history = pl.DataFrame(
        {
            "series_id": ["team=h100/us/a", "team=h100/us/b", "team=tpu/us/a"] * 4,
            "ds": [day for day in _days(4) for _ in range(3)],
            "y": [1.0, 1.0, 2.0, 3.0, 0.0, 1.0, 0.0, 0.0, 0.0, 10.0, 10.0, 20.0],
        }
    )
    shares = top_down_proportions(hierarchy, history)
    assert shares["series_id"].to_list() == hierarchy.bottom_ids
    expected = np.array([1 / 4 + 3 / 4 + 1 / 4, 1 / 4 + 0 + 1 / 4, 1 / 2 + 1 / 4 + 1 / 2]) / 3
    np.testing.assert_allclose(shares["proportion"].to_numpy(), expected)
    base_mean = np.array([[120.0, 60.0]] * hierarchy.n_nodes)
    base_mean[1:] = 999.0  # everything below the top is ignored by top_down
    result = reconcile(hierarchy, _base_frame(hierarchy, base_mean), "top_down", history=history)
    means = _means(result.forecast, hierarchy)
    np.testing.assert_allclose(means[hierarchy.n_aggregates :], np.outer(expected, [120.0, 60.0]))
    np.testing.assert_allclose(means[0], [120.0, 60.0])
    with pytest.raises(HierarchyError, match="history"):
        reconcile(hierarchy, _base_frame(hierarchy, base_mean), "top_down")


def _direct_shrinkage(errors: np.ndarray) -> tuple[np.ndarray, float]:
    """Schäfer-Strimmer shrinkage towards the diagonal, written out element by element."""
    n_times, n_series = errors.shape
    covariance = errors.T @ errors / n_times
    standardized = errors / np.sqrt(np.diag(covariance))
    numerator = denominator = 0.0
    for i in range(n_series):
        for j in range(n_series):
            if i == j:
                continue
            products = standardized[:, i] * standardized[:, j]
            numerator += ((products - products.mean()) ** 2).sum() / (n_times * (n_times - 1))
            correlation = covariance[i, j] / np.sqrt(covariance[i, i] * covariance[j, j])
            denominator += correlation**2
    intensity = min(max(numerator / denominator, 0.0), 1.0)
    target = np.diag(np.diag(covariance))
    return intensity * target + (1 - intensity) * covariance, intensity


def test_shrinkage_intensity_matches_the_formula() -> None:
    rng = np.random.default_rng(11)
    mixing = rng.normal(size=(5, 5))
    errors = rng.normal(size=(12, 5)) @ mixing
    shrunk, intensity = shrinkage_covariance(errors)
    expected, expected_intensity = _direct_shrinkage(errors)
    assert 0 < intensity < 1
    assert intensity == pytest.approx(expected_intensity, rel=1e-12)
    np.testing.assert_allclose(shrunk, expected, rtol=1e-12)
    # Independent series: no correlation to keep, shrink all the way.
    assert shrinkage_covariance(np.diag([1.0, 2.0, 3.0]))[1] == 1.0


def _tiny() -> tuple[Hierarchy, pl.DataFrame, np.ndarray]:
    hierarchy = build_hierarchy(
        pl.DataFrame({"item": ["a", "b"]}), {"total": (), "item": ("item",)}
    )
    rng = np.random.default_rng(5)
    errors = rng.normal(size=(30, 3)) * [3.0, 1.0, 2.0]
    errors[:, 0] += errors[:, 1]  # the total's errors correlate with item a's
    return hierarchy, _residual_frame(hierarchy, errors), errors


def test_mint_matches_the_closed_form_on_a_tiny_hierarchy() -> None:
    hierarchy, residuals, errors = _tiny()
    assert hierarchy.series_ids == ["total", "item=a", "item=b"]
    summing = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(hierarchy.summing.toarray(), summing)
    base_mean = np.array([[30.0, 12.0], [10.0, 5.0], [14.0, 9.0]])
    result = reconcile(
        hierarchy, _base_frame(hierarchy, base_mean), "mint_shrink", residuals=residuals
    )

    weights, intensity = _direct_shrinkage(errors)
    inverse = np.linalg.inv(weights)
    mapping = np.linalg.inv(summing.T @ inverse @ summing) @ summing.T @ inverse  # G
    expected = summing @ mapping @ base_mean
    assert result.method_used == "mint_shrink"
    assert result.shrinkage_intensity == pytest.approx(intensity)
    np.testing.assert_allclose(_means(result.forecast, hierarchy), expected, rtol=1e-10)
    assert result.warnings == ()


def test_mint_leaves_coherent_forecasts_unchanged() -> None:
    hierarchy, residuals, _ = _tiny()
    bottom = np.array([[10.0, 0.0, 3.5], [14.0, 9.0, 0.25]])
    coherent = hierarchy.summing @ bottom
    for method in ("mint_shrink", "wls_var", "wls_struct"):
        result = reconcile(hierarchy, _base_frame(hierarchy, coherent), method, residuals=residuals)
        np.testing.assert_allclose(_means(result.forecast, hierarchy), coherent, atol=1e-12)
        np.testing.assert_allclose(result.forecast["adjustment"].to_numpy(), 0.0, atol=1e-12)
        np.testing.assert_allclose(
            result.forecast.select(QUANTILES).to_numpy(),
            _base_frame(hierarchy, coherent).select(QUANTILES).to_numpy(),
            atol=1e-12,
        )


def test_mint_beats_the_base_forecasts_on_a_simulated_hierarchy() -> None:
    rng = np.random.default_rng(2027)
    rows = [(a, r, t) for a in ("h100", "tpu") for r in ("eu", "us") for t in ("x", "y", "z")]
    hierarchy = build_hierarchy(_bottom_keys(rows))
    summing = hierarchy.summing.toarray()
    n_nodes, n_bottom = summing.shape

    def errors(count: int) -> np.ndarray:
        # Bottom errors add up the tree; every node's model also adds its own noise, larger
        # at the top where the series are bigger.
        shared = rng.normal(0, 4.0, (count, n_bottom)) @ summing.T
        own = rng.normal(0, 1.0, (count, n_nodes)) * np.sqrt(summing.sum(axis=1)) * 3.0
        return shared + own

    horizon = 60
    truth = summing @ rng.uniform(50, 150, (n_bottom, horizon))
    base_mean = truth + errors(horizon).T
    residuals = _residual_frame(hierarchy, errors(120))
    result = reconcile(
        hierarchy, _base_frame(hierarchy, base_mean), "mint_shrink", residuals=residuals
    )
    assert result.method_used == "mint_shrink"
    reconciled = _means(result.forecast, hierarchy)
    base_error = float(((base_mean - truth) ** 2).sum())
    mint_error = float(((reconciled - truth) ** 2).sum())
    assert mint_error < 0.9 * base_error


def test_nonnegative_mint_is_the_nonnegative_least_squares_projection() -> None:
    rng = np.random.default_rng(17)
    rows = [(a, "us", t) for a in ("h100", "tpu") for t in ("a", "b", "c", "d")]
    hierarchy = build_hierarchy(_bottom_keys(rows))
    summing = hierarchy.summing.toarray()
    errors = rng.normal(size=(40, hierarchy.n_nodes)) * rng.uniform(0.5, 3, hierarchy.n_nodes)
    residuals = _residual_frame(hierarchy, errors)
    # Aggregates far below the sum of their bottoms: MinT alone goes negative.
    base_mean = np.column_stack(
        [
            np.r_[5.0, 4.0, 1.0, 4.0, 1.0, rng.uniform(0, 6, 8)],
            np.r_[2.0, 0.5, 1.5, 0.5, 1.5, rng.uniform(0, 6, 8)],
        ]
    )
    free = reconcile(
        hierarchy,
        _base_frame(hierarchy, base_mean),
        "mint_shrink",
        residuals=residuals,
        nonnegative=False,
    )
    assert (_means(free.forecast, hierarchy) < 0).any()
    result = reconcile(
        hierarchy, _base_frame(hierarchy, base_mean), "mint_shrink", residuals=residuals
    )
    assert any("non-negativity" in note for note in result.warnings)

    weights, _ = shrinkage_covariance(errors.reshape(40, -1))
    whitening = np.linalg.cholesky(weights)
    design = np.linalg.solve(whitening, summing)
    means = _means(result.forecast, hierarchy)
    for step in range(base_mean.shape[1]):
        target = np.linalg.solve(whitening, base_mean[:, step])
        bottom, _ = nnls(design, target)
        np.testing.assert_allclose(means[hierarchy.n_aggregates :, step], bottom, atol=1e-8)
        np.testing.assert_allclose(means[:, step], summing @ bottom, atol=1e-8)


def test_diagonal_and_full_weights_agree_with_and_without_nonnegativity() -> None:
    from workbench.hierarchy import _solve_least_squares

    rng = np.random.default_rng(23)
    rows = [(a, r, t) for a in ("h100", "tpu") for r in ("eu", "us") for t in ("a", "b", "c")]
    hierarchy = build_hierarchy(_bottom_keys(rows))
    weights = rng.uniform(0.2, 5.0, hierarchy.n_nodes)
    y_hat = rng.gamma(0.4, 10.0, (hierarchy.n_nodes, 5))
    for nonnegative in (False, True):
        diagonal = _solve_least_squares(
            hierarchy, y_hat, weights, nonnegative=nonnegative, notes=[]
        )
        full = _solve_least_squares(
            hierarchy, y_hat, np.diag(weights), nonnegative=nonnegative, notes=[]
        )
        np.testing.assert_allclose(diagonal, full, atol=1e-9)


def test_mint_falls_back_to_wls_var_above_the_node_limit(small_hierarchy: Hierarchy) -> None:
    rng = np.random.default_rng(4)
    errors = rng.normal(size=(10, small_hierarchy.n_nodes)) * rng.uniform(
        1, 3, small_hierarchy.n_nodes
    )
    residuals = _residual_frame(small_hierarchy, errors)
    base = _base_frame(small_hierarchy, rng.uniform(10, 20, (small_hierarchy.n_nodes, 3)))
    fallback = reconcile(
        small_hierarchy, base, "mint_shrink", residuals=residuals, max_mint_nodes=5
    )
    wls = reconcile(small_hierarchy, base, "wls_var", residuals=residuals)
    assert fallback.method == "mint_shrink"
    assert fallback.method_used == "wls_var"
    assert fallback.shrinkage_intensity is None
    assert any("exceed the limit" in note for note in fallback.warnings)
    np.testing.assert_allclose(
        fallback.forecast["mean"].to_numpy(), wls.forecast["mean"].to_numpy()
    )
    # wls_var is the closed form with W = diag(mean squared residual) (this incoherent base
    # takes a bottom below zero, so compare without the non-negativity constraint).
    wls = reconcile(small_hierarchy, base, "wls_var", residuals=residuals, nonnegative=False)
    summing = small_hierarchy.summing.toarray()
    inverse = np.diag(1 / (errors**2).mean(axis=0))
    base_mean = _means(base, small_hierarchy)
    expected = summing @ np.linalg.solve(
        summing.T @ inverse @ summing, summing.T @ inverse @ base_mean
    )
    np.testing.assert_allclose(_means(wls.forecast, small_hierarchy), expected, rtol=1e-10)


def test_mint_uses_the_times_every_node_has_a_residual(small_hierarchy: Hierarchy) -> None:
    rng = np.random.default_rng(8)
    residuals = _residual_frame(small_hierarchy, rng.normal(size=(10, small_hierarchy.n_nodes)))
    base = _base_frame(small_hierarchy, rng.uniform(10, 20, (small_hierarchy.n_nodes, 2)))
    gappy = residuals.filter(
        ~((pl.col("series_id") == "fleet") & (pl.col("ds") < date(2026, 1, 4)))
    )
    result = reconcile(small_hierarchy, base, "mint_shrink", residuals=gappy)
    assert result.method_used == "mint_shrink"
    assert any("7 of 10" in note for note in result.warnings)
    sparse = residuals.filter(
        ~((pl.col("series_id") == "fleet") & (pl.col("ds") < date(2026, 1, 10)))
    )
    sparse = sparse.filter(
        ~((pl.col("series_id") == "team=tpu/us/c") & (pl.col("ds") >= date(2026, 1, 10)))
    )
    assert (
        reconcile(small_hierarchy, base, "mint_shrink", residuals=sparse).method_used == "wls_var"
    )


def test_quantiles_shift_with_the_mean_stay_ordered_and_non_negative() -> None:
    hierarchy, _, _ = _tiny()
    # The total is far above the sum of its items: reconciling moves every node a lot.
    base_mean = np.array([[100.0], [2.0], [3.0]])
    base = _base_frame(hierarchy, base_mean, spread=0.9)
    result = reconcile(hierarchy, base, "bottom_up")
    forecast = result.forecast
    quantiles = forecast.select(QUANTILES).to_numpy()
    assert (quantiles >= 0).all()
    assert (np.diff(quantiles, axis=1) >= 0).all()
    # The total moved down by 95: its p05 (10) clips at zero, the rest shift by the adjustment.
    total = forecast.row(0, named=True)
    assert total["adjustment"] == pytest.approx(-95.0)
    assert (total["p05"], total["p50"], total["p95"]) == pytest.approx((0.0, 5.0, 95.0))
    # Items were not moved, so their calibrated quantiles are untouched.
    np.testing.assert_allclose(quantiles[1:], base.select(QUANTILES).to_numpy()[1:])

    crossing = base.with_columns(pl.col("p05") * 3)  # p05 above p50 in the base
    crossing_quantiles = reconcile(hierarchy, crossing, "bottom_up").forecast.select(QUANTILES)
    assert (np.diff(crossing_quantiles.to_numpy(), axis=1) >= 0).all()
    adjustments = result.adjustments.row(0, named=True)
    assert adjustments["adjustment_total"] == pytest.approx(-95.0)
    assert adjustments["relative_adjustment"] == pytest.approx(-0.95)


def test_reconcile_names_what_is_wrong_with_its_input(small_hierarchy: Hierarchy) -> None:
    base = _base_frame(small_hierarchy, np.ones((small_hierarchy.n_nodes, 2)))
    with pytest.raises(HierarchyError, match="unknown method"):
        reconcile(small_hierarchy, base, "middle_out")  # type: ignore[arg-type]
    with pytest.raises(HierarchyError, match="'fleet' does not have them all"):
        reconcile(small_hierarchy, base.filter(pl.col("series_id") != "fleet"), "bottom_up")
    with pytest.raises(HierarchyError, match="more than once"):
        reconcile(small_hierarchy, pl.concat([base, base.head(1)]), "bottom_up")
    with pytest.raises(HierarchyError, match="not nodes"):
        reconcile(small_hierarchy, base.with_columns(pl.lit("x").alias("series_id")), "bottom_up")
    with pytest.raises(HierarchyError, match="needs residuals"):
        reconcile(small_hierarchy, base, "mint_shrink")
    residuals = _residual_frame(small_hierarchy, np.ones((3, small_hierarchy.n_nodes)))
    with pytest.raises(HierarchyError, match="no residuals, first 'fleet'"):
        reconcile(
            small_hierarchy,
            base,
            "wls_var",
            residuals=residuals.filter(pl.col("series_id") != "fleet"),
        )
