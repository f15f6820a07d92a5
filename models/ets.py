"""Exponential smoothing (ETS) state space models, fitted for every series of a panel at once.

Forms (Hyndman & Athanasopoulos, FPP3 chapter 8), all with additive errors:

- ``ANN`` level; ``AAN`` level + trend; ``AAdN`` level + damped trend;
- ``ANA``, ``AAA``, ``AAdA``: the same with additive seasonality of period ``m``;
- ``log_ANN``, ``log_AAdN``, ``log_ANA``, ``log_AAdA``: the additive forms fitted on
  ``log1p(y)``, considered only for strictly positive series. They stand in for the
  multiplicative forms (growth in percent, seasonal swings proportional to the level). The
  log trend is always damped, so a growth rate never compounds without bound over a long
  horizon. Their likelihood is moved back to the scale of ``y`` with the Jacobian of the
  transform (``+ 2 * sum(log1p(y))`` on ``-2 log L``), so AICc compares them fairly with
  the additive forms.

Fitting. Initial states come from the heuristic of Hyndman et al. (2008, section 2.6): a
classical additive decomposition of the first (up to five) seasons gives the seasonal
states, and a line through the first ten seasonally adjusted values gives the level and
trend. Smoothing parameters minimise the in-sample one-step sum of squared errors by a
vectorised pattern search: every series and every form is evaluated at once, at a centre
and at plus/minus a step along each parameter, in one pass over time; each parameter moves
to its best probe and the step halves (8 rounds, from a quarter of the range to 1/500 of
it). The search runs in float32 on standardised series (ETS with additive errors is
equivariant to affine changes of scale); a final float64 pass with the chosen parameters
gives the likelihood and the final states. Parameter ranges are those of statsmodels:
``alpha`` in [1e-4, 0.9999], ``beta`` in [0, alpha], ``gamma`` in [0, 1 - alpha], ``phi``
in [0.8, 0.98] *per month*: that range was made for monthly and coarser data, and at a daily
step ``phi = 0.98`` would end any trend within two months. Data finer than monthly takes
the range per step that damps as much per month (``0.8 ** (1/30.4)`` to ``0.98 ** (1/30.4)``
for daily data), so a damped trend means the same thing at every frequency.

Selection. Per series, the form with the lowest AICc, counting smoothing parameters,
initial states and the variance as parameters. Seasonal forms need two full seasons
(shorter series choose among the non-seasonal forms) and a form needs more observations
than parameters + 1; a series too short for every form (four observations or fewer) gets
``ANN``. A constant series gets ``ANN`` (its forecast is the constant, with zero width).

Prediction intervals. The h-step forecast variance of the additive-error state space model,
``sigma^2 * (1 + sum_{j<h} c_j^2)`` with ``c_j = alpha + beta * (phi + ... + phi^j) +
gamma * [j divisible by m]`` (FPP3 table 8.8 in closed form for each form; this sum is the
same thing for all of them). Forecast quantiles are normal on the fitted scale; for log
forms they are mapped back by ``expm1``; their point forecast is ``expm1(centre +
sigma^2 / 2)``, the one-step log-normal mean carried forward, as a multiplicative-error
model's point forecast would be. (The exact h-step log-normal mean grows with the forecast
variance and explodes for volatile series over long horizons.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar

import numpy as np

from models.base import Capabilities, Forecaster
from models.baselines import centred_moving_average, left_align
from models.panel import Panel

__all__ = ["ETS", "EtsForm", "phi_range"]

_ALPHA_RANGE = (1e-4, 0.9999)
_PHI_RANGE = (0.8, 0.98)  # per month (or per step for monthly and coarser data)


def phi_range(steps_per_month: float) -> tuple[float, float]:
    """The damping range per step: :data:`_PHI_RANGE` per month, spread over its steps."""
    steps = max(1.0, steps_per_month)
    return (_PHI_RANGE[0] ** (1.0 / steps), _PHI_RANGE[1] ** (1.0 / steps))


_SEARCH_ROUNDS = 8
_FIRST_STEP = 0.25
_INIT_POINTS = 10
_INIT_SEASONS = 5

_ALL_FORMS: tuple[str, ...] = (
    "ANN",
    "AAN",
    "AAdN",
    "ANA",
    "AAA",
    "AAdA",
    "log_ANN",
    "log_AAdN",
    "log_ANA",
    "log_AAdA",
)


@dataclass(frozen=True)
class EtsForm:
    """One additive-error ETS form: trend (none, additive, damped), seasonality, scale."""

    trend: bool
    damped: bool
    seasonal: bool
    log: bool

    @classmethod
    def parse(cls, text: str) -> EtsForm:
        """Build from a name such as ``ANN``, ``AAdA`` or ``log_AAdN``."""
        log = text.startswith("log_")
        core = text.removeprefix("log_")
        known = {"ANN", "AAN", "AAdN", "ANA", "AAA", "AAdA"}
        if core not in known:
            raise ValueError(
                f"unknown ETS form '{text}': use one of {', '.join(_ALL_FORMS)} "
                "(any of the six additive forms may take the log_ prefix)"
            )
        return cls(
            trend=core[1] == "A",
            damped="Ad" in core,
            seasonal=core.endswith("A") and core != "AAN",
            log=log,
        )

    @property
    def label(self) -> str:
        """The form's name, as accepted by :meth:`parse`."""
        trend = "Ad" if self.damped else ("A" if self.trend else "N")
        season = "A" if self.seasonal else "N"
        return ("log_" if self.log else "") + f"A{trend}{season}"

    @property
    def n_smoothing(self) -> int:
        """Number of smoothing parameters (alpha, beta, gamma, phi as applicable)."""
        return 1 + int(self.trend) + int(self.seasonal) + int(self.damped)

    def n_parameters(self, period: int) -> int:
        """Parameters counted by AICc: smoothing, initial states and the variance."""
        states = 1 + int(self.trend) + (period if self.seasonal else 0)
        return self.n_smoothing + states + 1

    def smoothing(
        self, unit: np.ndarray, phis: tuple[float, float] = _PHI_RANGE
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Map search coordinates in [0, 1] (``(n_smoothing, ...)``) to alpha, beta, gamma, phi.

        ``phis`` is the damping range per step (see :func:`phi_range`).
        """
        low, high = _ALPHA_RANGE
        alpha = low + (high - low) * unit[0]
        row = 1
        beta = np.zeros_like(alpha)
        gamma = np.zeros_like(alpha)
        phi = np.ones_like(alpha)
        if self.trend:
            beta = alpha * unit[row]
            row += 1
        if self.seasonal:
            gamma = (1.0 - alpha) * unit[row]
            row += 1
        if self.damped:
            phi = phis[0] + (phis[1] - phis[0]) * unit[row]
        return alpha, beta, gamma, phi


@dataclass
class _States:
    """Initial (or final) states of a batch of candidate rows: (rows, series) arrays."""

    level: np.ndarray
    trend: np.ndarray
    season: np.ndarray | None  # (period, rows, series)


def _initial_states(
    values: np.ndarray, lengths: np.ndarray, period: int, seasonal: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heuristic initial level, trend (series,) and seasonal states (series, period).

    Seasonal states are zero for series with fewer than two seasons.
    """
    n_series, n_steps = values.shape
    season = np.zeros((n_series, max(period, 1)))
    adjusted = values
    if seasonal and period > 1:
        cycles = np.minimum(lengths // period, _INIT_SEASONS)
        width = min(_INIT_SEASONS * period, n_steps)
        window = values[:, :width]
        trend = centred_moving_average(window, np.minimum(cycles * period, width), period)
        detrended = window - trend
        present = np.isfinite(detrended)
        pad = -(-width // period) * period - width
        sums = np.pad(np.where(present, detrended, 0.0), ((0, 0), (0, pad)))
        counts = np.pad(present, ((0, 0), (0, pad)))
        sums = sums.reshape(n_series, -1, period).sum(axis=1)
        counts = counts.reshape(n_series, -1, period).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        means = means - np.nanmean(np.where(counts > 0, means, np.nan), axis=1, keepdims=True)
        usable = (cycles >= 2)[:, None] & (counts > 0).all(axis=1, keepdims=True)
        season = np.where(usable & np.isfinite(means), means, 0.0)
        adjusted = values - season[:, np.arange(n_steps) % period]
    points = np.minimum(lengths, _INIT_POINTS)
    use = np.arange(n_steps)[None, :] < points[:, None]
    x = np.arange(1, n_steps + 1, dtype=float)[None, :]
    x_mean = np.where(use, x, 0.0).sum(axis=1) / points
    y_mean = np.where(use, adjusted, 0.0).sum(axis=1) / points
    dx = np.where(use, x - x_mean[:, None], 0.0)
    spread = (dx**2).sum(axis=1)
    slope = np.where(
        spread > 0, (dx * np.where(use, adjusted, 0.0)).sum(axis=1) / np.maximum(spread, 1e-300), 0
    )
    level = y_mean - slope * x_mean
    return level, slope, season


def _filter(
    series: Sequence[np.ndarray],
    blocks: Sequence[tuple[int, int, int]],
    alpha: np.ndarray,
    beta: np.ndarray,
    gamma: np.ndarray,
    phi: np.ndarray,
    start: _States,
    valid: np.ndarray,
    ends: Mapping[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, _States]:
    """Run the ETS recursion over time for every candidate row and series at once.

    ``series[k]`` is a (steps, series) matrix of observations (0 after each series' end) and
    ``blocks`` lists (first row, end row, k): the candidate rows that read ``series[k]``.
    Parameters and states are (rows, series). Returns the sum of squared one-step errors and,
    when ``ends`` maps a time step to the series ending there, the states at each end.
    """
    level = start.level.copy()
    trend = start.trend.copy()
    season = None if start.season is None else start.season.copy()
    period = 1 if season is None else season.shape[0]
    use_trend = bool(np.any(beta)) or bool(np.any(trend))
    sse = np.zeros_like(alpha)
    error = np.empty_like(alpha)
    scratch = np.empty_like(alpha)
    damped_trend = np.zeros_like(alpha)
    prediction = np.empty_like(alpha)
    final = _States(level.copy(), trend.copy(), None if season is None else season.copy())
    for t in range(valid.shape[0]):
        if use_trend:
            np.multiply(phi, trend, out=damped_trend)
            np.add(level, damped_trend, out=prediction)
        else:
            prediction[...] = level
        if season is not None:
            current = season[t % period]
            prediction += current
        for first, end, k in blocks:
            np.subtract(series[k][t], prediction[first:end], out=error[first:end])
        error *= valid[t]
        np.multiply(error, error, out=scratch)
        sse += scratch
        np.multiply(alpha, error, out=scratch)
        if use_trend:
            level += damped_trend
        level += scratch
        if use_trend:
            np.multiply(beta, error, out=trend)
            trend += damped_trend
        if season is not None:
            np.multiply(gamma, error, out=scratch)
            current += scratch
        if ends is not None and t in ends:
            rows = ends[t]
            final.level[:, rows] = level[:, rows]
            final.trend[:, rows] = trend[:, rows]
            if season is not None and final.season is not None:
                final.season[:, :, rows] = season[:, :, rows]
    return sse, final


class ETS(Forecaster):
    """Automatic exponential smoothing: per series, the best of several forms by AICc.

    ``forms`` restricts the candidate forms (names as in :class:`EtsForm`, for example
    ``("AAdA",)`` to force one form); see the module docstring for the method.
    """

    name: ClassVar[str] = "ets"
    capabilities: ClassVar[Capabilities] = Capabilities(min_history=3)

    def __init__(
        self,
        *,
        forms: tuple[str, ...] = _ALL_FORMS,
        season_length: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(season_length=season_length, seed=seed)
        self.forms = forms

    # -- fitting ---------------------------------------------------------------------
    def _fit_panel(self, panel: Panel) -> None:
        forms = [EtsForm.parse(text) for text in self.forms]
        if not forms:
            raise ValueError("ETS needs at least one form")
        period = max(self.season_length_, 1)
        self.phi_range_ = phi_range(self.panel_.freq.steps_per_month)
        values, valid_mask = left_align(panel)
        lengths = panel.lengths.astype(np.int64)
        n_series = values.shape[0]
        positive = np.where(valid_mask, values, np.inf).min(axis=1) > 0
        constant = np.where(valid_mask, values, -np.inf).max(axis=1) == np.where(
            valid_mask, values, np.inf
        ).min(axis=1)
        seasonal_possible = period > 1 and bool(np.any(lengths >= 2 * period))
        forms = [
            f
            for f in forms
            if (not f.seasonal or seasonal_possible) and (not f.log or positive.any())
        ]
        if not forms:  # only seasonal or only log forms asked, none possible: fall back
            forms = [EtsForm(False, False, False, False)]
        forms.sort(key=lambda f: f.log)  # raw forms first: one block per scale
        valid = valid_mask.astype(float)

        scales: dict[bool, np.ndarray] = {False: values}
        if any(f.log for f in forms):
            usable = valid_mask & positive[:, None]
            scales[True] = np.log1p(np.where(usable, values, 0.0))
        starts: dict[tuple[bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for f in forms:
            key = (f.log, f.seasonal)
            if key not in starts:
                starts[key] = _initial_states(scales[f.log], lengths, period, f.seasonal)
        any_seasonal = any(f.seasonal for f in forms)

        units = self._search(forms, scales, starts, valid, lengths, period, any_seasonal)

        # Final float64 pass on the original scales: likelihoods and final states.
        sse, final, params = self._evaluate(
            forms,
            [u[:, None, :] for u in units],
            {k: v.T.copy() for k, v in scales.items()},
            starts,
            valid.T.copy(),
            period,
            any_seasonal,
            ends=_ends(lengths),
        )
        n = lengths.astype(float)
        aicc = np.full((len(forms), n_series), np.inf)
        for i, f in enumerate(forms):
            k = f.n_parameters(period)
            floor = (1e-9 * (1.0 + np.abs(scales[f.log]).sum(axis=1) / n)) ** 2
            mse = np.maximum(sse[i] / n, floor)
            with np.errstate(divide="ignore", invalid="ignore"):
                score = n * np.log(mse) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
            allowed = (n - k - 1 > 0) & np.isfinite(score)
            if f.seasonal:
                allowed &= lengths >= 2 * period
            if f.log:
                allowed &= positive
                score = score + 2 * np.where(valid_mask, np.log1p(np.abs(values)), 0).sum(axis=1)
            aicc[i] = np.where(allowed, score, np.inf)
        simplest = next(
            (i for i, f in enumerate(forms) if not (f.trend or f.seasonal or f.log)), None
        )
        if simplest is not None:
            fallback = np.isinf(aicc).all(axis=0) & np.isfinite(sse[simplest])
            force = fallback | constant
            aicc[simplest] = np.where(force, -np.inf, aicc[simplest])
        choice = np.argmin(aicc, axis=0)
        columns = np.arange(n_series)
        failed = ~(aicc[choice, columns] < np.inf)
        alpha, beta, gamma, phi = (p[choice, columns] for p in params)
        self.forms_ = tuple(f.label for f in forms)
        self.choice_ = choice
        self.alpha_ = alpha
        self.beta_ = beta
        self.gamma_ = gamma
        self.phi_ = phi
        self.level_ = final.level[choice, columns]
        self.trend_ = final.trend[choice, columns]
        if final.season is not None:
            self.season_ = final.season[:, choice, columns].T.copy()
        else:
            self.season_ = np.zeros((n_series, 1))
        self.period_ = period if final.season is not None else 1
        self.sigma2_ = sse[choice, columns] / n
        self.log_ = np.array([forms[c].log for c in choice], dtype=bool)
        self.lengths_ = lengths.copy()
        self.aicc_ = aicc
        self.failed_ = failed
        for row in np.flatnonzero(failed):
            self.failures_[panel.series_ids[row]] = "ETS: no form gave a finite likelihood"

    def _search(
        self,
        forms: Sequence[EtsForm],
        scales: Mapping[bool, np.ndarray],
        starts: Mapping[tuple[bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray]],
        valid: np.ndarray,
        lengths: np.ndarray,
        period: int,
        any_seasonal: bool,
    ) -> list[np.ndarray]:
        """Pattern search of the smoothing parameters; returns the best unit coordinates."""
        n_series = valid.shape[0]
        # Standardise each scale so float32 is precise enough and one step size fits all.
        standard: dict[bool, np.ndarray] = {}
        standard_starts: dict[tuple[bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        shifts: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
        for log, matrix in scales.items():
            mean = (matrix * valid).sum(axis=1) / lengths
            spread = np.sqrt((((matrix - mean[:, None]) * valid) ** 2).sum(axis=1) / lengths)
            spread = np.where(spread > 0, spread, 1.0)
            shifts[log] = (mean, spread)
            standard[log] = np.ascontiguousarray(
                (((matrix - mean[:, None]) / spread[:, None]) * valid).T, dtype=np.float32
            )
        for (log, seasonal), (level, slope, season) in starts.items():
            mean, spread = shifts[log]
            standard_starts[log, seasonal] = (
                (level - mean) / spread,
                slope / spread,
                season / spread[:, None],
            )
        valid32 = np.ascontiguousarray(valid.T, dtype=np.float32)
        centres = [np.full((f.n_smoothing, n_series), 0.5) for f in forms]
        best = [c.copy() for c in centres]
        best_sse = [np.full(n_series, np.inf) for _ in forms]
        step = _FIRST_STEP
        for _ in range(_SEARCH_ROUNDS):
            probes = []
            for centre in centres:
                dims = centre.shape[0]
                moves = np.zeros((dims, 1 + 2 * dims, 1))
                for d in range(dims):
                    moves[d, 1 + 2 * d] = -step
                    moves[d, 2 + 2 * d] = step
                probes.append(np.clip(centre[:, None, :] + moves, 0.0, 1.0))
            sse, _, _ = self._evaluate(
                forms,
                probes,
                standard,
                standard_starts,
                valid32,
                period,
                any_seasonal,
                dtype=np.float32,
            )
            sse = np.where(np.isfinite(sse), sse, np.inf)
            row = 0
            for i, probe in enumerate(probes):
                count = probe.shape[1]
                block = sse[row : row + count]
                row += count
                winner = np.argmin(block, axis=0)
                value = block[winner, np.arange(n_series)]
                better = value < best_sse[i]
                best_sse[i] = np.where(better, value, best_sse[i])
                best[i] = np.where(better, probe[:, winner, np.arange(n_series)], best[i])
                centre = centres[i].copy()
                for d in range(probe.shape[0]):
                    trio = np.stack([block[0], block[1 + 2 * d], block[2 + 2 * d]])
                    pick = np.argmin(trio, axis=0)
                    options = np.stack([probe[d, 0], probe[d, 1 + 2 * d], probe[d, 2 + 2 * d]])
                    centre[d] = options[pick, np.arange(n_series)]
                centres[i] = centre
            step /= 2
        return best

    def _evaluate(
        self,
        forms: Sequence[EtsForm],
        probes: Sequence[np.ndarray],
        scales: Mapping[bool, np.ndarray],
        starts: Mapping[tuple[bool, bool], tuple[np.ndarray, np.ndarray, np.ndarray]],
        valid: np.ndarray,
        period: int,
        any_seasonal: bool,
        *,
        dtype: type[np.floating] = np.float64,
        ends: Mapping[int, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, _States, tuple[np.ndarray, ...]]:
        """SSE (and final states) of every probe of every form: probes[i] is (dims, k, series).

        ``scales`` hold (steps, series) matrices; returns arrays with one row per probe.
        """
        parts: list[list[np.ndarray]] = [[], [], [], [], [], []]
        seasons: list[np.ndarray] = []
        blocks: list[tuple[int, int, int]] = []
        scale_keys = sorted(scales)
        row = 0
        for f, unit in zip(forms, probes, strict=True):
            count = unit.shape[1]
            alpha, beta, gamma, phi = f.smoothing(unit, self.phi_range_)
            level, slope, season = starts[f.log, f.seasonal]
            parts[0].append(alpha)
            parts[1].append(beta)
            parts[2].append(gamma)
            parts[3].append(phi)
            parts[4].append(np.broadcast_to(level, (count, level.size)))
            parts[5].append(np.broadcast_to(slope if f.trend else 0 * slope, (count, slope.size)))
            if any_seasonal:
                values = season.T if f.seasonal else np.zeros((period, level.size))
                seasons.append(np.broadcast_to(values[:, None, :], (period, count, level.size)))
            key = scale_keys.index(f.log)
            if blocks and blocks[-1][2] == key and blocks[-1][1] == row:
                blocks[-1] = (blocks[-1][0], row + count, key)
            else:
                blocks.append((row, row + count, key))
            row += count
        stacked = [np.concatenate(p).astype(dtype) for p in parts]
        start = _States(
            stacked[4],
            stacked[5],
            np.concatenate(seasons, axis=1).astype(dtype) if any_seasonal else None,
        )
        series = [scales[k] for k in scale_keys]
        with np.errstate(all="ignore"):
            alpha, beta, gamma, phi = stacked[:4]
            sse, final = _filter(series, blocks, alpha, beta, gamma, phi, start, valid, ends)
        return sse.astype(np.float64), final, tuple(p.astype(np.float64) for p in stacked[:4])

    # -- prediction ------------------------------------------------------------------
    def _predict_panel(
        self,
        horizon: int,
        quantiles: tuple[float, ...],
        future: Mapping[str, np.ndarray],
    ) -> tuple[np.ndarray, dict[float, np.ndarray]]:
        steps = np.arange(1, horizon + 1)
        powers = self.phi_[:, None] ** steps[None, :]
        damped_sum = np.cumsum(powers, axis=1)
        positions = (self.lengths_[:, None] + steps[None, :] - 1) % self.period_
        season = np.take_along_axis(self.season_, positions, axis=1)
        centre = self.level_[:, None] + damped_sum * self.trend_[:, None] + season
        seasonal_hit = (steps[None, :] % self.period_ == 0) & (self.period_ > 1)
        impulse = (
            self.alpha_[:, None]
            + self.beta_[:, None] * damped_sum
            + self.gamma_[:, None] * seasonal_hit
        )
        growth = np.concatenate(
            [np.zeros((impulse.shape[0], 1)), np.cumsum(impulse[:, :-1] ** 2, axis=1)], axis=1
        )
        variance = self.sigma2_[:, None] * (1.0 + growth)
        sd = np.sqrt(variance)
        log = self.log_[:, None]
        with np.errstate(over="ignore"):
            mean = np.where(log, np.expm1(centre + self.sigma2_[:, None] / 2), centre)
            levels = {
                q: np.where(
                    log,
                    np.expm1(centre + NormalDist().inv_cdf(q) * sd),
                    centre + NormalDist().inv_cdf(q) * sd,
                )
                for q in quantiles
            }
        failed = self.failed_[:, None]
        mean = np.where(failed, np.nan, mean)
        return mean, {q: np.where(failed, np.nan, v) for q, v in levels.items()}


def _ends(lengths: np.ndarray) -> dict[int, np.ndarray]:
    """Map each last position (left-aligned) to the series that end there."""
    return {int(n) - 1: np.flatnonzero(lengths == n) for n in np.unique(lengths)}
