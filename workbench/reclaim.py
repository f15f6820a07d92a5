"""Reclaim: allocated chips a team does not need, what they cost a year, and the risk.

Pure functions over ``usage_daily``, ``allocations``, ``events``, a forecast run's team
series and the owned cost per chip-hour of each pool (:func:`workbench.tco.owned_cost`).
For each team and pool holding an allocation on the as-of day (the last day of usage):

* **Used** is the team's daily peak of concurrent chips in the pool (``peak_chips`` summed
  over its workloads), over the lookback window. An allocation caps the chips a team runs
  at once, so it must hold the peak; the day's average (chip-hours / 24) hides it (a team
  running 800 chips for six hours averages 200). Summing the workloads' peaks is an upper
  bound of the team's peak: the safe side for a reclaim. Days are counted from the later of
  the window's first day and the team's first allocated day in the pool, zeros included.
* **Forecast p90** is the largest daily p90 of the team's demand forecast (used + queued,
  average concurrent chips) over the quarter after the as-of day (``horizon_days``). With no
  forecast for the team, it falls back to used p95 x the recent growth of its usage (second
  half of the lookback against the first, carried over a quarter, between 1 and
  ``growth_cap``), and the row says so.
* **Events** protect capacity: chips of the team's known events in the pool (probability at
  least ``event_probability``, chips > 0) active on the busiest day of the quarter, on top
  of its used p50. A campaign under way counts in full even if the usage already shows
  part of it (the error keeps capacity, never takes it); a launch or migration that began
  before the quarter counts only for what is still to come (see :func:`event_floor`).
* **Recommended** = max(used p95, forecast p90, event floor) x (1 + headroom), rounded up
  to a multiple of ``granularity`` chips. **Reclaimable** = max(0, allocated -
  recommended). Annual **savings** = reclaimable x hours per year x the pool's owned cost
  per installed chip-hour, in whole cents.
* **Risk** that the team needs the chips back within the quarter: the largest over the
  quarter's days of P(demand on the day > recommended), each read off the day's forecast
  quantiles by linear interpolation of the distribution function between quantile levels,
  held at the outermost levels beyond them (so at most 1 - 0.025 and at least 1 - 0.99 for
  the default levels). The chance of exceeding *on some day* is at least this maximum and
  at most the sum over days; forecast errors persist from day to day, so it is near the
  maximum. Null without a forecast.
* **Idle**: an allocation whose team ran nothing in the pool for ``idle_days`` or more days
  up to the as-of day.

Invariants: recommended >= used p95 and >= the event floor; reclaimable >= 0; more usage
(with the same forecast) never raises reclaimable; rows are ranked by savings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from models.quantiles import quantile_from_column
from workbench.errors import WorkbenchError
from workbench.money import cents_of, cents_to_usd

__all__ = [
    "HOURS_PER_YEAR",
    "RECLAIM_COLUMNS",
    "Reclaim",
    "ReclaimSettings",
    "current_allocations",
    "daily_used",
    "event_floor",
    "exceedance_probability",
    "forecast_levels",
    "reclaim",
    "round_up",
    "unused_days",
]

HOURS_PER_YEAR = 8760.0
_PAIR = ("team", "accelerator", "region")

RECLAIM_COLUMNS: tuple[str, ...] = (
    "rank",
    "team",
    "accelerator",
    "region",
    "pool",
    "allocated_chips",
    "used_p50_chips",
    "used_p95_chips",
    "forecast_p90_chips",
    "forecast_source",
    "event_chips",
    "event_floor_chips",
    "recommended_chips",
    "reclaimable_chips",
    "owned_usd_per_chip_hour",
    "annual_savings_usd",
    "risk",
    "unused_days",
    "idle",
)
"""Columns of the ``reclaim`` output, in order."""


@dataclass(frozen=True)
class ReclaimSettings:
    """How reclaim recommendations are made; recorded whole in the run's manifest."""

    lookback_days: int = 90
    """Days of usage (up to the as-of day) the used p50/p95 are taken over."""
    headroom: float = 0.1
    """Fraction added on top of max(used p95, forecast p90, event floor)."""
    granularity: int = 8
    """Allocations are whole multiples of this many chips (8 = one 8-chip host)."""
    horizon_days: int = 91
    """The quarter after the as-of day that the forecast, events and risk cover."""
    idle_days: int = 14
    """An allocation unused this many days or more up to the as-of day is idle."""
    event_probability: float = 0.5
    """Events at least this likely protect capacity (less likely ones are in the forecast)."""
    growth_cap: float = 2.0
    """Upper bound of the quarterly growth factor of the no-forecast fallback."""
    as_of: date | None = None
    """Last day of history considered (default: the last day of usage)."""
    hours_per_year: float = HOURS_PER_YEAR

    def __post_init__(self) -> None:
        checks = [
            ("lookback_days", self.lookback_days >= 7, "pass 7 days or more, e.g. --lookback 90"),
            ("headroom", 0 <= self.headroom <= 10, "pass a fraction such as 0.1"),
            ("granularity", self.granularity >= 1, "pass a whole number of chips, e.g. 8"),
            ("horizon_days", self.horizon_days >= 1, "pass a number of days, e.g. 91"),
            ("idle_days", self.idle_days >= 1, "pass a number of days, e.g. 14"),
            ("event_probability", 0 <= self.event_probability <= 1, "pass a fraction in [0, 1]"),
            ("growth_cap", self.growth_cap >= 1, "pass 1 or more"),
            ("hours_per_year", self.hours_per_year > 0, "pass a positive number"),
        ]
        for name, ok, fix in checks:
            if not ok:
                raise WorkbenchError(
                    f"{name} is out of range: {getattr(self, name)}", field=name, fix=fix
                )


@dataclass(frozen=True)
class Reclaim:
    """Reclaim recommendations and the window they were made for."""

    table: pl.DataFrame
    """One row per team and pool; columns :data:`RECLAIM_COLUMNS`, ranked by savings."""
    as_of: date
    lookback_start: date
    window_start: date
    window_end: date
    forecast_days: int
    """Days of the quarter the forecast covers (0: no forecast, the fallback was used)."""
    notes: tuple[str, ...]


def round_up(chips: float, granularity: int) -> float:
    """``chips`` rounded up to a multiple of ``granularity`` (float noise ignored)."""
    return float(math.ceil(chips / granularity - 1e-9) * granularity) if chips > 0 else 0.0


def current_allocations(allocations: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Chips allocated per team and pool on ``as_of``, and the pair's first allocated day.

    Returns ``team, accelerator, region, allocated_chips, allocated_since``; pairs with
    nothing allocated on ``as_of`` are left out.
    """
    first = allocations.group_by(_PAIR).agg(pl.col("valid_from").min().alias("allocated_since"))
    held = (
        allocations.filter(
            (pl.col("valid_from") <= as_of)
            & (pl.col("valid_to").is_null() | (pl.col("valid_to") >= as_of))
        )
        .group_by(_PAIR)
        .agg(pl.col("chips").sum().alias("allocated_chips"))
        .filter(pl.col("allocated_chips") > 0)
    )
    return held.join(first, on=list(_PAIR), how="left").sort(_PAIR)


def daily_used(
    usage_daily: pl.DataFrame, pairs: pl.DataFrame, first: date, last: date
) -> pl.DataFrame:
    """Daily used chips (peak concurrent, summed over workloads) per pair, zeros filled.

    ``pairs`` has ``team, accelerator, region, allocated_since``; each pair gets one row per
    day from the later of ``first`` and its ``allocated_since`` to ``last``. Returns
    ``team, accelerator, region, date, used_chips``.
    """
    used = (
        usage_daily.filter(pl.col("date").is_between(first, last))
        .group_by(*_PAIR, "date")
        .agg(pl.col("peak_chips").sum().alias("used_chips"))
    )
    days = (
        pairs.select(
            *_PAIR,
            pl.date_ranges(
                pl.max_horizontal(pl.col("allocated_since"), pl.lit(first)), pl.lit(last), "1d"
            ).alias("date"),
        )
        .explode("date")
        .drop_nulls("date")
    )
    return days.join(used, on=[*_PAIR, "date"], how="left").with_columns(
        pl.col("used_chips").fill_null(0.0)
    )


def unused_days(usage_daily: pl.DataFrame, pairs: pl.DataFrame, as_of: date) -> pl.DataFrame:
    """Days in a row, up to ``as_of``, that each pair was allocated and ran nothing.

    Counted from the day after its last day with chip-hours used (or from its first
    allocated day, if later or if it never ran). Returns ``team, accelerator, region,
    unused_days``.
    """
    last_used = (
        usage_daily.filter((pl.col("chip_hours_used") > 0) & (pl.col("date") <= as_of))
        .group_by(_PAIR)
        .agg(pl.col("date").max().alias("last_used"))
    )
    since = pl.max_horizontal(
        pl.col("last_used") + pl.duration(days=1), pl.col("allocated_since")
    ).fill_null(pl.col("allocated_since"))
    return pairs.join(last_used, on=list(_PAIR), how="left").select(
        *_PAIR,
        ((pl.lit(as_of) - since).dt.total_days() + 1)
        .clip(lower_bound=0)
        .cast(pl.Int64)
        .alias("unused_days"),
    )


def event_floor(
    events: pl.DataFrame | None,
    pairs: pl.DataFrame,
    window_start: date,
    window_end: date,
    *,
    min_probability: float,
) -> pl.DataFrame:
    """Chips the team's known events need at once in the window, per pair.

    Events naming the team and the accelerator (and the region, or no region), with
    positive chips and probability at least ``min_probability``, overlapping the window.
    A one-off event (a campaign: it has an end and is not a migration) counts in full on
    each of its days in the window, even if under way. A level shift (a launch without an
    end, or a migration) lasts to the window's end and counts only for the part not yet in
    the history: nothing for one that began on or before the as-of day, except the
    remaining share of a migration still ramping (linearly from start to end). Returns
    ``team, accelerator, region, event_chips`` (the largest daily sum of their chips over
    the window; 0 without events).
    """
    empty = pairs.select(*_PAIR).with_columns(pl.lit(0.0).alias("event_chips"))
    if events is None or events.height == 0:
        return empty
    relevant = events.filter(
        pl.col("team").is_not_null()
        & (pl.col("chips") > 0)
        & (pl.col("probability") >= min_probability)
        & (pl.col("start") <= window_end)
        & (pl.col("end").is_null() | (pl.col("end") >= window_start))
    )
    if relevant.height == 0:
        return empty
    as_of = window_start - timedelta(days=1)
    migration = pl.col("kind").fill_null("") == "migration"
    level_shift = pl.col("end").is_null() | migration
    done = ((pl.lit(as_of) - pl.col("start")).dt.total_days() + 1) / (
        (pl.col("end") - pl.col("start")).dt.total_days() + 1
    )
    chips = (
        pl.when(~level_shift | (pl.col("start") > as_of))
        .then(pl.col("chips"))
        .when(migration & pl.col("end").is_not_null() & (pl.col("end") > as_of))
        .then(pl.col("chips") * (1.0 - done))
        .otherwise(0.0)
    )
    last = pl.when(level_shift).then(pl.lit(window_end)).otherwise(pl.col("end"))
    matched = pairs.select(*_PAIR).join(
        relevant.select(
            "team",
            "accelerator",
            pl.col("region").alias("event_region"),
            chips.alias("chips"),
            pl.date_ranges(
                pl.max_horizontal("start", pl.lit(window_start)),
                pl.min_horizontal(last, pl.lit(window_end)),
                "1d",
            ).alias("date"),
        ).filter(pl.col("chips") > 0),
        on=["team", "accelerator"],
    )
    busiest = (
        matched.filter(
            pl.col("event_region").is_null() | (pl.col("event_region") == pl.col("region"))
        )
        .explode("date")
        .group_by(*_PAIR, "date")
        .agg(pl.col("chips").sum())
        .group_by(_PAIR)
        .agg(pl.col("chips").max().alias("event_chips"))
    )
    return (
        empty.drop("event_chips")
        .join(busiest, on=list(_PAIR), how="left")
        .with_columns(pl.col("event_chips").fill_null(0.0))
    )


def forecast_levels(forecast: pl.DataFrame) -> list[tuple[float, str]]:
    """The quantile levels of a forecast frame and their columns, lowest first."""
    found: list[tuple[float, str]] = []
    for column in forecast.columns:
        if len(column) > 1 and column[0] == "p" and column[1].isdigit():
            try:
                found.append((quantile_from_column(column), column))
            except ValueError:
                continue
    return sorted(found)


def exceedance_probability(quantiles: np.ndarray, levels: np.ndarray, value: float) -> np.ndarray:
    """P(X > value) for each row of ``quantiles`` (rows: days; columns: ``levels``).

    The distribution function is interpolated linearly between quantile points and held at
    the outermost levels beyond them; equal quantiles (a jump) take the highest level.
    """
    out = np.empty(quantiles.shape[0])
    for row, points in enumerate(quantiles):
        above = int(np.searchsorted(points, value, side="right"))  # points <= value
        if above == 0:
            cdf = levels[0]
        elif above == len(points):
            cdf = levels[-1]
        else:
            low, high = points[above - 1], points[above]
            share = (value - low) / (high - low) if high > low else 1.0
            cdf = levels[above - 1] + share * (levels[above] - levels[above - 1])
        out[row] = 1.0 - cdf
    return out


def _team_forecasts(
    forecast: pl.DataFrame | None, window_start: date, window_end: date
) -> tuple[dict[tuple[str, str, str], np.ndarray], np.ndarray, int]:
    """Per pair, the window's quantile matrix (days x levels), the levels, the days covered."""
    if forecast is None or forecast.height == 0:
        return {}, np.array([]), 0
    missing = [c for c in ("level", *_PAIR, "ds", "p90") if c not in forecast.columns]
    if missing:
        raise WorkbenchError(
            f"the forecast has no column(s) {', '.join(missing)}",
            field=missing[0],
            fix="make a fleet forecast run with 'workbench forecast'",
        )
    pairs = forecast_levels(forecast)
    levels = np.array([level for level, _ in pairs])
    columns = [column for _, column in pairs]
    teams = forecast.filter(
        (pl.col("level") == "team")
        & pl.col("ds").cast(pl.Date).is_between(window_start, window_end)
    ).sort(*_PAIR, "ds")
    if teams.height == 0:
        return {}, levels, 0
    days = teams["ds"].n_unique()
    out: dict[tuple[str, str, str], np.ndarray] = {}
    for key, group in teams.group_by(_PAIR, maintain_order=True):
        matrix = np.sort(np.maximum(group.select(columns).to_numpy().astype(np.float64), 0), axis=1)
        out[(str(key[0]), str(key[1]), str(key[2]))] = matrix
    return out, levels, days


def _growth(values: np.ndarray, horizon_days: int, cap: float) -> float:
    """Quarterly growth of a daily series: second half's mean over the first's, in [1, cap]."""
    half = len(values) // 2
    if half == 0:
        return 1.0
    early, late = float(values[:half].mean()), float(values[half:].mean())
    if late <= 0:
        return 1.0
    if early <= 0:
        return cap
    gap = len(values) - half  # days between the halves' centres, about
    # In logs: a tiny early mean would overflow the power (late / early) ** k.
    exponent = (horizon_days / max(gap, 1)) * (math.log(late) - math.log(early))
    return float(min(cap, max(1.0, math.exp(min(exponent, math.log(cap))))))


def reclaim(
    usage_daily: pl.DataFrame,
    allocations: pl.DataFrame,
    owned_rates: pl.DataFrame,
    settings: ReclaimSettings | None = None,
    *,
    forecast: pl.DataFrame | None = None,
    events: pl.DataFrame | None = None,
) -> Reclaim:
    """Reclaim recommendations per team and pool (see the module docstring).

    ``owned_rates`` has ``accelerator, region, owned_usd_per_chip_hour`` (from
    :func:`workbench.tco.owned_cost`); ``forecast`` is a fleet forecast run's ``forecast``
    table (its ``team`` level is used), or ``None`` for the growth fallback.
    """
    settings = settings or ReclaimSettings()
    if usage_daily.height == 0:
        raise WorkbenchError(
            "the workspace has no usage",
            field="usage_daily",
            fix="ingest job records first: 'workbench ingest jobs FILE'",
        )
    last_day = usage_daily["date"].max()
    assert isinstance(last_day, date)
    as_of = settings.as_of or last_day
    lookback_start = as_of - timedelta(days=settings.lookback_days - 1)
    window_start = as_of + timedelta(days=1)
    window_end = as_of + timedelta(days=settings.horizon_days)
    pairs = current_allocations(allocations, as_of)
    if pairs.height == 0:
        raise WorkbenchError(
            f"no allocation holds on {as_of}",
            field="allocations",
            fix="ingest the current allocations: 'workbench ingest allocations FILE'",
        )
    used = daily_used(usage_daily, pairs, lookback_start, as_of)
    quantiles = used.group_by(_PAIR).agg(
        pl.col("used_chips").quantile(0.5, interpolation="linear").alias("used_p50_chips"),
        pl.col("used_chips").quantile(0.95, interpolation="linear").alias("used_p95_chips"),
        pl.col("used_chips").sort_by("date").alias("__series"),
    )
    floors = event_floor(
        events, pairs, window_start, window_end, min_probability=settings.event_probability
    )
    idle = unused_days(usage_daily, pairs, as_of)
    team_forecasts, levels, forecast_days = _team_forecasts(forecast, window_start, window_end)
    p90_index = int(np.argmin(np.abs(levels - 0.9))) if levels.size else -1
    rates = dict(
        zip(
            zip(owned_rates["accelerator"], owned_rates["region"], strict=True),
            owned_rates["owned_usd_per_chip_hour"],
            strict=True,
        )
    )
    base = (
        pairs.join(quantiles, on=list(_PAIR), how="left")
        .join(floors, on=list(_PAIR), how="left")
        .join(idle, on=list(_PAIR), how="left")
        .sort(_PAIR)
    )
    rows = []
    notes: list[str] = []
    fallbacks = 0
    for row in base.iter_rows(named=True):
        key = (row["team"], row["accelerator"], row["region"])
        if key[1:] not in rates:
            raise WorkbenchError(
                f"no owned cost for accelerator '{key[1]}' in region '{key[2]}'",
                file="price_book",
                field="owned_usd_per_chip_hour",
                fix=f"add a [[price]] for '{key[1]}' and a [region.{key[2]}] table to "
                "price_book.toml, then run 'workbench ingest price-book FILE'",
            )
        p50 = float(row["used_p50_chips"] or 0.0)
        p95 = float(row["used_p95_chips"] or 0.0)
        series = np.asarray(row["__series"] or [], dtype=np.float64)
        matrix = team_forecasts.get(key)
        if matrix is not None:
            forecast_p90 = float(matrix[:, p90_index].max())
            source = "forecast"
        else:
            growth = _growth(series, settings.horizon_days, settings.growth_cap)
            forecast_p90 = p95 * growth
            source = f"fallback: used p95 x growth {growth:.2f}"
            fallbacks += 1
        event_chips = float(row["event_chips"] or 0.0)
        floor = p50 + event_chips if event_chips > 0 else 0.0
        needed = max(p95, forecast_p90, floor)
        recommended = round_up(needed * (1.0 + settings.headroom), settings.granularity)
        allocated = float(row["allocated_chips"])
        reclaimable = max(0.0, allocated - recommended)
        rate = float(rates[key[1:]])
        risk = (
            float(exceedance_probability(matrix, levels, recommended).max())
            if matrix is not None
            else None
        )
        rows.append(
            {
                "team": key[0],
                "accelerator": key[1],
                "region": key[2],
                "pool": f"{key[1]}/{key[2]}",
                "allocated_chips": allocated,
                "used_p50_chips": p50,
                "used_p95_chips": p95,
                "forecast_p90_chips": forecast_p90,
                "forecast_source": source,
                "event_chips": event_chips,
                "event_floor_chips": floor,
                "recommended_chips": recommended,
                "reclaimable_chips": reclaimable,
                "owned_usd_per_chip_hour": rate,
                "annual_savings_cents": cents_of(reclaimable * settings.hours_per_year * rate),
                "risk": risk,
                "unused_days": int(row["unused_days"] or 0),
                "idle": int(row["unused_days"] or 0) >= settings.idle_days,
            }
        )
    if forecast is None or forecast.height == 0:
        notes.append(
            "no forecast run: forecast p90 is used p95 x recent growth (second half of the "
            "lookback against the first, over a quarter); risk is unknown"
        )
    elif fallbacks:
        notes.append(
            f"{fallbacks} team-pool(s) have no team forecast: used p95 x recent growth instead"
        )
    if 0 < forecast_days < settings.horizon_days:
        notes.append(
            f"the forecast covers {forecast_days} of the {settings.horizon_days} days after "
            f"{as_of}: forecast p90 and risk are over those days only"
        )
    schema = {
        "team": pl.String,
        "accelerator": pl.String,
        "region": pl.String,
        "pool": pl.String,
        "allocated_chips": pl.Float64,
        "used_p50_chips": pl.Float64,
        "used_p95_chips": pl.Float64,
        "forecast_p90_chips": pl.Float64,
        "forecast_source": pl.String,
        "event_chips": pl.Float64,
        "event_floor_chips": pl.Float64,
        "recommended_chips": pl.Float64,
        "reclaimable_chips": pl.Float64,
        "owned_usd_per_chip_hour": pl.Float64,
        "annual_savings_cents": pl.Int64,
        "risk": pl.Float64,
        "unused_days": pl.Int64,
        "idle": pl.Boolean,
    }
    table = (
        pl.DataFrame(rows, schema=schema)
        .sort(
            ["annual_savings_cents", "reclaimable_chips", "team", "pool"],
            descending=[True, True, False, False],
        )
        .with_row_index("rank", offset=1)
        .with_columns(pl.col("rank").cast(pl.Int64), cents_to_usd("annual_savings_cents"))
        .rename({"annual_savings_cents": "annual_savings_usd"})
        .select(RECLAIM_COLUMNS)
    )
    return Reclaim(
        table=table,
        as_of=as_of,
        lookback_start=lookback_start,
        window_start=window_start,
        window_end=window_end,
        forecast_days=forecast_days,
        notes=tuple(notes),
    )
