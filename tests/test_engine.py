"""The engine: fallbacks, selection, out-of-sample ensemble weights, conformal calibration."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import ClassVar

import numpy as np
import polars as pl
import pytest

import models.catalog
from models.base import Capabilities, Forecaster
from models.baselines import Naive, normal_quantiles
from models.engine import (
    EngineConfig,
    _ensemble_weights,
    backtest_cutoffs,
    run_engine,
)
from models.frequency import Frequency
from models.panel import Panel
from models.quantiles import interval_bounds, quantile_column


class Mean(Forecaster):
    """Forecasts the history's mean, with a normal interval from its spread."""

    name: ClassVar[str] = "mean"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=2)

    def _fit_panel(self, panel: Panel) -> None:
        self.level_ = np.nanmean(panel.values, axis=1)
        self.sigma_ = np.nanstd(panel.values, axis=1)

    def _predict_panel(
        self, horizon: int, quantiles: tuple[float, ...], future: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        mean = np.repeat(self.level_[:, None], horizon, axis=1)
        sigma = np.repeat(self.sigma_[:, None], horizon, axis=1)
        return mean, normal_quantiles(mean, sigma, quantiles)


class Broken(Mean):
    name: ClassVar[str] = "broken"

    def _fit_panel(self, panel: Panel) -> None:
        raise RuntimeError("optimizer blew up")


class Exploding(Mean):
    name: ClassVar[str] = "exploding"

    def _predict_panel(
        self, horizon: int, quantiles: tuple[float, ...], future: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        mean, qs = super()._predict_panel(horizon, quantiles, future)
        return mean * 1_000, {q: v * 1_000 for q, v in qs.items()}


class WildTails(Mean):
    """A sane mean with an absurd upper tail, as a log-scale trend's variance can give."""

    name: ClassVar[str] = "wild_tails"

    def _predict_panel(
        self, horizon: int, quantiles: tuple[float, ...], future: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        mean, qs = super()._predict_panel(horizon, quantiles, future)
        top = max(quantiles)
        return mean, {q: v * (1e6 if q == top else 1.0) for q, v in qs.items()}


class Flaky(Mean):
    """Cannot fit the series named 'walk-1' (as a per-series model reports a failure)."""

    name: ClassVar[str] = "flaky"

    def _fit_panel(self, panel: Panel) -> None:
        super()._fit_panel(panel)
        if "walk-1" in panel.series_ids:
            self.failures_["walk-1"] = "did not converge"


class Overconfident(Naive):
    """Naive with intervals far too narrow: calibration has to widen them."""

    name: ClassVar[str] = "overconfident"

    def _predict_panel(
        self, horizon: int, quantiles: tuple[float, ...], future: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        mean, qs = super()._predict_panel(horizon, quantiles, future)
        return mean, {q: mean + 0.1 * (v - mean) for q, v in qs.items()}


@pytest.fixture(autouse=True)
def _test_models(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = dict(models.catalog.MODELS)
    for cls in (Mean, Broken, Exploding, WildTails, Flaky, Overconfident):
        catalog[cls.name] = cls
    monkeypatch.setattr(models.catalog, "MODELS", catalog)


def _panel(kind: str, n: int, length: int = 200, seed: int = 0) -> Panel:
    """Random walks with drift ("walk") or white noise around a level ("noise"), positive."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        if kind == "walk":
            y = 500 + np.cumsum(rng.normal(1, 5, length))
        else:
            y = 500 + rng.normal(0, 5, length)
        frames.append(
            pl.DataFrame(
                {
                    "series_id": f"{kind}-{i}",
                    "ds": Frequency.parse("daily").history(date(2026, 6, 30), length),
                    "y": y,
                }
            )
        )
    return Panel.from_frame(pl.concat(frames), Frequency.parse("daily"))


def _merge(*panels: Panel) -> Panel:
    frame = pl.concat([p.to_frame() for p in panels])
    return Panel.from_frame(frame, Frequency.parse("daily"))


def test_cutoffs_end_at_the_end_of_history() -> None:
    config = EngineConfig(horizon=14, windows=3, step=7, models=("naive",))
    assert backtest_cutoffs(config) == [28, 21, 14]
    assert backtest_cutoffs(EngineConfig(horizon=10, windows=2, models=("naive",))) == [20, 10]


def test_selection_picks_the_model_that_fits_each_series() -> None:
    panel = _merge(_panel("walk", 6, seed=1), _panel("noise", 6, seed=2))
    config = EngineConfig(horizon=14, windows=3, models=("naive", "mean"), ensemble=False)
    result = run_engine(panel, config)
    chosen = dict(zip(result.selection["series_id"], result.selection["model"], strict=True))
    walks = [chosen[f"walk-{i}"] for i in range(6)]
    noise = [chosen[f"noise-{i}"] for i in range(6)]
    assert walks.count("naive") >= 5, walks
    assert noise.count("mean") >= 5, noise
    assert result.forecast.filter(pl.col("series_id") == "noise-0")["model"].unique().to_list() == [
        chosen["noise-0"]
    ]
    assert result.selection["backtest_mase"].is_finite().all()


def test_a_failing_model_falls_back_and_says_why() -> None:
    panel = _panel("walk", 3)
    config = EngineConfig(horizon=7, windows=2, models=("broken",), fallback=("naive",))
    result = run_engine(panel, config)
    assert result.forecast["mean"].is_finite().all()
    assert set(result.selection["produced_by"]) == {"naive"}
    final = result.fallbacks.filter(pl.col("stage") == "final")
    assert final.height == 3
    assert final["used"].unique().to_list() == ["naive"]
    assert final["reason"].str.contains("RuntimeError: optimizer blew up").all()
    assert result.fallbacks.filter(pl.col("stage").str.starts_with("backtest")).height == 6


def test_an_exploding_forecast_falls_back() -> None:
    panel = _panel("noise", 2)
    config = EngineConfig(horizon=7, windows=1, models=("exploding",), fallback=("mean",))
    result = run_engine(panel, config)
    assert result.fallbacks["reason"].str.contains("exploded").all()
    assert result.forecast["mean"].max() < 1_000  # type: ignore[operator]


def test_an_absurd_upper_quantile_counts_as_exploded() -> None:
    panel = _panel("noise", 2)
    config = EngineConfig(horizon=7, windows=1, models=("wild_tails",), fallback=("mean",))
    result = run_engine(panel, config)
    assert result.fallbacks["reason"].str.contains("quantile 0.99 up to").all()
    assert result.forecast["p99"].max() < 1_000  # type: ignore[operator]


def test_a_per_series_failure_falls_back_for_that_series_only() -> None:
    panel = _panel("walk", 3)
    config = EngineConfig(horizon=7, windows=1, models=("flaky",), fallback=("naive",))
    result = run_engine(panel, config)
    produced = dict(
        zip(result.selection["series_id"], result.selection["produced_by"], strict=True)
    )
    assert produced == {"walk-0": "flaky", "walk-1": "naive", "walk-2": "flaky"}
    assert set(result.fallbacks["series_id"]) == {"walk-1"}
    assert result.fallbacks["reason"].str.contains("did not converge").all()


def test_ensemble_weights_are_inverse_mase_over_the_best() -> None:
    mase = np.array([[1.0, 2.0, 4.0, np.nan], [np.nan, 1.0, 1.0, 3.0]])
    weights = _ensemble_weights(mase, size=2)
    np.testing.assert_allclose(weights[0], [2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(weights[1], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)


def test_ensemble_is_a_candidate_with_an_out_of_sample_score() -> None:
    panel = _merge(_panel("walk", 4, seed=3), _panel("noise", 4, seed=4))
    config = EngineConfig(horizon=14, windows=3, models=("naive", "mean"), ensemble_size=2)
    result = run_engine(panel, config)
    assert "ensemble" in set(result.scores["model"])
    ensemble = result.scores.filter(pl.col("model") == "ensemble")
    assert ensemble["mase"].is_finite().all()
    for (sid,), weights in result.ensemble_weights.group_by("series_id"):
        assert weights["weight"].sum() == pytest.approx(1.0), sid


def _coverage(forecast: pl.DataFrame, truth: pl.DataFrame, coverage: float) -> float:
    low, high = (quantile_column(b) for b in interval_bounds(coverage))
    joined = forecast.join(truth, on=["series_id", "ds"])
    inside = (joined["y"] >= joined[low]) & (joined["y"] <= joined[high])
    return float(inside.mean())  # type: ignore[arg-type]


def test_conformal_calibration_covers_nominal_on_held_out_data() -> None:
    full = _panel("walk", 300, length=260, seed=5)
    horizon = 14
    history, _ = full.truncate(horizon)
    truth = full.to_frame().join(
        history.to_frame().select("series_id", "ds"), on=["series_id", "ds"], how="anti"
    )
    raw = run_engine(
        history,
        EngineConfig(
            horizon=horizon, windows=4, step=14, models=("overconfident",), calibrate=False
        ),
    )
    calibrated = run_engine(
        history,
        EngineConfig(horizon=horizon, windows=4, step=14, models=("overconfident",)),
    )
    assert _coverage(raw.forecast, truth, 0.9) < 0.5
    for nominal in (0.8, 0.9, 0.95):
        observed = _coverage(calibrated.forecast, truth, nominal)
        assert abs(observed - nominal) < 0.05, (nominal, observed)
    assert set(calibrated.calibration["model"]) == {"overconfident"}
    assert calibrated.calibration["n_errors"].min() > 100  # type: ignore[operator]


def test_chunks_through_any_map_give_the_same_result() -> None:
    panel = _merge(_panel("walk", 5, seed=6), _panel("noise", 5, seed=7))
    config = EngineConfig(horizon=7, windows=2, models=("naive", "mean"))
    one = run_engine(panel, config, n_chunks=1)
    seen: list[int] = []
    three = run_engine(panel, config, n_chunks=3, on_chunk_done=seen.append)
    assert sum(seen) == panel.n_series and len(seen) == 3
    assert one.selection.sort("series_id").equals(three.selection.sort("series_id"))
    np.testing.assert_allclose(
        one.forecast.sort("series_id", "ds")["mean"].to_numpy(),
        three.forecast.sort("series_id", "ds")["mean"].to_numpy(),
    )


def test_unknown_model_fails_before_any_work() -> None:
    with pytest.raises(ValueError, match="unknown model 'prophecy'"):
        run_engine(_panel("walk", 1), EngineConfig(horizon=3, models=("prophecy",)))


def test_a_series_too_short_for_any_backtest_gets_a_robust_default() -> None:
    short = _panel("walk", 2, length=6, seed=8)
    config = EngineConfig(horizon=7, windows=3, models=("naive", "theta"))
    result = run_engine(short, config)
    assert set(result.selection["model"]) == {"theta"}
    assert result.selection["backtest_mase"].is_null().all()
    assert result.forecast["mean"].is_finite().all()


def test_calibration_pools_errors_per_group() -> None:
    panel = _merge(_panel("walk", 30, seed=9), _panel("noise", 30, seed=10))
    groups = {sid: sid.split("-")[0] for sid in panel.series_ids}
    config = EngineConfig(horizon=7, windows=3, models=("overconfident",))
    result = run_engine(panel, config, groups=groups)
    calibration = result.calibration
    assert set(calibration["group"]) == {"walk", "noise"}
    # Random walks need far wider corrections than white noise at the same level.
    top = calibration.filter(
        (pl.col("level") == 0.95)
        & (pl.col("horizon_bucket") == calibration["horizon_bucket"].max())
    )
    width = dict(zip(top["group"], top["correction"], strict=True))
    assert width["walk"] > width["noise"]
