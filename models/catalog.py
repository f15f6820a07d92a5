"""Every model by name: the one place that lists them."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from models.arima import ARIMA
from models.base import Forecaster
from models.baselines import Drift, Naive, Naive2, SeasonalNaive
from models.ets import ETS
from models.gbm import GlobalGBM
from models.mstl import MSTL
from models.prophet_model import Prophet
from models.theta import Theta

__all__ = ["MODELS"]

MODELS: Mapping[str, type[Forecaster]] = MappingProxyType(
    {
        model.name: model
        for model in (
            Naive,
            SeasonalNaive,
            Naive2,
            Drift,
            ETS,
            Theta,
            GlobalGBM,
            ARIMA,
            MSTL,
            Prophet,
        )
    }
)
