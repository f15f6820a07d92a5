"""Checks every forecaster must pass, in one place (the scikit-learn ``check_estimator`` habit).

``tests/test_models_contract.py`` runs each check on each model of the catalog; a model's
author can run them directly with ``run_all_checks(MyModel)`` while developing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import numpy as np
import polars as pl
import pytest

from models.base import Forecaster, NotFittedError
from models.frames import LongFrameError
from models.frequency import Frequency
from models.quantiles import quantile_column

QUANTILES = (0.05, 0.1, 0.5, 0.9, 0.95)


def _make(cls: type[Forecaster], **settings: Any) -> Forecaster:
    """Build a model with its quick check settings (see ``Forecaster.check_settings``)."""
    return cls(**{**cls.check_settings, **settings})


def synthetic_frame(
    freq: str = "daily",
    *,
    n_series: int = 3,
    seasons: int = 8,
    seed: int = 0,
    regressor: bool = False,
) -> pl.DataFrame:
    """Seeded trend + seasonality + noise series of unequal lengths, never negative."""
    frequency = Frequency.parse(freq)
    rng = np.random.default_rng(seed)
    period = frequency.season_length
    longest = max(seasons * period, 24)
    start = datetime(2022, 1, 1) if frequency.kind == "hourly" else date(2022, 1, 1)
    parts = []
    for i in range(n_series):
        length = longest - i * max(period // 2, 1)
        t = np.arange(length)
        level = 50.0 * (i + 1)
        season = 0.2 * level * np.sin(2 * np.pi * t / period) if period > 1 else 0.0
        load = rng.uniform(0, 1, length)
        y = level + 0.05 * t + season + rng.normal(0, 0.03 * level, length)
        if regressor:
            y = y + 10.0 * load
        last = frequency.shifted(start, [longest - 1]).item()
        ds = frequency.history(last, length)
        columns: dict[str, object] = {"series_id": f"s{i}", "ds": ds, "y": np.maximum(y, 0)}
        if regressor:
            columns["load"] = load
        parts.append(pl.DataFrame(columns))
    return pl.concat(parts)


def _future_load(model: Forecaster, horizon: int, seed: int = 1) -> pl.DataFrame:
    panel = model.panel_
    rng = np.random.default_rng(seed)
    rows = [
        pl.DataFrame(
            {
                "series_id": sid,
                "ds": panel.freq.future(panel.last_ds[i], horizon),
                "load": rng.uniform(0, 1, horizon),
            }
        )
        for i, sid in enumerate(panel.series_ids)
    ]
    return pl.concat(rows)


def _fit_predict(cls: type[Forecaster], frame: pl.DataFrame, horizon: int) -> pl.DataFrame:
    model = _make(cls, seed=3).fit(frame)
    future = _future_load(model, horizon) if "load" in frame.columns else None
    return model.predict(horizon, QUANTILES, future=future)


def _frame_for(cls: type[Forecaster], freq: str = "daily") -> pl.DataFrame:
    return synthetic_frame(freq, regressor=cls.capabilities.exogenous)


def check_constructor_stores_only(cls: type[Forecaster]) -> None:
    model = _make(cls, seed=5)
    assert not [k for k in vars(model) if k.endswith("_")], "constructor learned something"
    assert model.get_params()["seed"] == 5
    assert "capabilities" not in vars(model)


def check_predict_before_fit(cls: type[Forecaster]) -> None:
    with pytest.raises(NotFittedError):
        _make(cls).predict(3)


def check_fit_returns_self_and_shapes(cls: type[Forecaster]) -> None:
    frame = _frame_for(cls)
    original = frame.clone()
    model = _make(cls, seed=3)
    assert model.fit(frame) is model
    assert frame.equals(original), "fit changed the caller's frame"
    horizon = 10
    future = _future_load(model, horizon) if cls.capabilities.exogenous else None
    out = model.predict(horizon, QUANTILES, future=future)
    expected_columns = ["series_id", "ds", "h", "mean", *map(quantile_column, QUANTILES)]
    if not cls.capabilities.probabilistic:
        expected_columns = expected_columns[:4]
    assert out.columns == expected_columns
    assert out.height == 3 * horizon
    frequency = Frequency.parse("daily")
    for (sid,), group in out.group_by("series_id"):
        last = frame.filter(pl.col("series_id") == sid)["ds"].max()
        assert group.sort("h")["ds"].to_list() == frequency.future(last, horizon).to_list()  # type: ignore[arg-type]


def check_outputs_sane(cls: type[Forecaster]) -> None:
    frame = _frame_for(cls)
    out = _fit_predict(cls, frame, 14)
    assert out["mean"].is_finite().all()
    assert (out["mean"] >= 0).all()
    if cls.capabilities.probabilistic:
        columns = [quantile_column(q) for q in QUANTILES]
        values = out.select(columns).to_numpy()
        assert np.isfinite(values).all()
        assert (values >= 0).all()
        assert (np.diff(values, axis=1) >= -1e-9).all(), "quantiles cross"
        assert (values[:, -1] - values[:, 0] > 0).any(), "intervals have no width"
    # A forecast stays in the neighbourhood of the history (explosions are a bug).
    top = float(frame["y"].max())  # type: ignore[arg-type]
    assert float(out["mean"].max()) < 3 * top  # type: ignore[arg-type]


def check_refit_equals_fresh_fit(cls: type[Forecaster]) -> None:
    frame = _frame_for(cls)
    other = synthetic_frame("daily", seed=9, regressor=cls.capabilities.exogenous)
    model = _make(cls, seed=3).fit(other)
    model.fit(frame)
    future = _future_load(model, 7) if cls.capabilities.exogenous else None
    refit = model.predict(7, QUANTILES, future=future)
    fresh = _fit_predict(cls, frame, 7)
    np.testing.assert_allclose(
        refit.select(pl.exclude("series_id", "ds")).to_numpy(),
        fresh.select(pl.exclude("series_id", "ds")).to_numpy(),
        rtol=1e-6,
        atol=1e-6,
    )


def check_too_short_history(cls: type[Forecaster]) -> None:
    frequency = Frequency.parse("daily")
    need = cls.capabilities.min_length(frequency)
    if need <= 1:
        return
    frame = synthetic_frame("daily", n_series=1, regressor=cls.capabilities.exogenous).head(
        need - 1
    )
    with pytest.raises(LongFrameError, match=cls.name):
        _make(cls).fit(frame, freq="daily")


def check_frequencies(cls: type[Forecaster]) -> None:
    for kind in ("hourly", "weekly", "monthly", "quarterly"):
        if kind not in cls.capabilities.frequencies:
            continue
        frame = synthetic_frame(kind, regressor=cls.capabilities.exogenous)
        out = _fit_predict(cls, frame, 5)
        assert out.height == 15, kind
        assert out["mean"].is_finite().all(), kind


def check_learns_a_level(cls: type[Forecaster]) -> None:
    """On a flat noisy series every model forecasts near the level."""
    rng = np.random.default_rng(4)
    n = 120
    frame = pl.DataFrame(
        {
            "series_id": "flat",
            "ds": pl.date_range(
                date(2024, 1, 1),
                date(2024, 1, 1) + (n - 1) * (date(2024, 1, 2) - date(2024, 1, 1)),
                eager=True,
            ),
            "y": 100 + rng.normal(0, 2, n),
        }
    )
    if cls.capabilities.exogenous:
        frame = frame.with_columns(load=pl.lit(0.0))
    model = _make(cls, seed=1).fit(frame)
    future = None
    if cls.capabilities.exogenous:
        future = _future_load(model, 7).with_columns(load=pl.lit(0.0))
    out = model.predict(7, QUANTILES, future=future)
    assert out["mean"].is_between(85, 115).all(), out["mean"].to_list()


CHECKS: tuple[Callable[[type[Forecaster]], None], ...] = (
    check_constructor_stores_only,
    check_predict_before_fit,
    check_fit_returns_self_and_shapes,
    check_outputs_sane,
    check_refit_equals_fresh_fit,
    check_too_short_history,
    check_frequencies,
    check_learns_a_level,
)


def run_all_checks(cls: type[Forecaster]) -> None:
    """Run every check on one model class (for development; tests parametrise instead)."""
    for check in CHECKS:
        check(cls)
