"""What-if scenarios: events and growth, forecast and planned against a baseline.

Only the pools a scenario touches are forecast and planned again.

A :class:`Scenario` is a named list of changes: :class:`ScenarioEvent` (a launch, a
training campaign, a migration: chips added to a pool, or to one team of it, from a date,
with a probability) and :class:`GrowthMultiplier` (demand of a pool, or of every pool of
an accelerator, times a factor from a date). Scenarios are saved by name as JSON in
``<workspace>/scenarios/<name>.json`` (names sanitized to ``[a-z0-9_-]``; written aside,
then renamed, like every workspace write).

:func:`run_scenario` forecasts the touched pools twice with the fast engine (the plan
command's ``FAST_MODELS``): once as they are (baseline) and once with the scenario's
events added to the workspace's events and its growth applied to the forecast; then plans
both (:mod:`workbench.procurement`) and returns both side by side. Baseline and scenario
are made the same way on the same data, so every difference between them is the
scenario's. The result is written as a ``scenario`` run whose manifest holds the scenario
and the SHA-256 of every input table, so the same scenario on the same data is found
again (:func:`find_scenario_run`) instead of recomputed.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal

import polars as pl

from workbench.cli_plan import FAST_MODELS
from workbench.errors import WorkbenchError
from workbench.forecasting import ForecastSettings, forecast_fleet, peak_scenarios, planning_periods
from workbench.planning_inputs import InputSettings, workspace_plan_inputs
from workbench.procurement import PlanLimits, solve_plan
from workbench.run_compare import compare_plans
from workbench.store import RunInfo, Workspace, file_sha256

__all__ = [
    "EVENT_KINDS",
    "INPUT_TABLES",
    "GrowthMultiplier",
    "Scenario",
    "ScenarioEvent",
    "ScenarioOutcome",
    "compare_demand",
    "delete_scenario",
    "find_scenario_run",
    "input_fingerprint",
    "list_scenarios",
    "load_scenario",
    "read_outcome",
    "run_scenario",
    "sanitize_name",
    "save_scenario",
    "scenario_events",
    "with_growth",
]

EVENT_KINDS: tuple[str, ...] = ("launch", "training_campaign", "migration")
"""Kinds of scenario events; they shape demand as in :mod:`workbench.forecasting`."""

INPUT_TABLES: tuple[str, ...] = (
    "usage_daily",
    "events",
    "inventory",
    "orders",
    "price_book",
    "sku_catalog",
)
"""Workspace tables a scenario run reads; their hashes key its cache."""

_POOL = ["accelerator", "region"]
_FOLDER = "scenarios"


def sanitize_name(name: str) -> str:
    """A scenario name safe as a file name: lower case, ``[a-z0-9_-]``, at most 64 chars.

    Raises :class:`WorkbenchError` when nothing usable is left (``"../"``, ``""``).
    """
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-_")[:64]
    if not slug:
        raise WorkbenchError(
            f"scenario name '{name}' has no letters or digits",
            field="name",
            fix="name it with letters, digits, '-' or '_', e.g. 'llm-launch-2027'",
        )
    return slug


@dataclass(frozen=True)
class ScenarioEvent:
    """A future event: ``chips`` more (or fewer) demand in a pool from ``start``."""

    name: str
    kind: Literal["launch", "training_campaign", "migration"]
    accelerator: str
    region: str
    start: date
    chips: float
    end: date | None = None
    team: str | None = None
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise WorkbenchError(
                f"unknown event kind '{self.kind}'",
                field="kind",
                fix=f"use one of {', '.join(EVENT_KINDS)}",
            )
        if not 0.0 <= self.probability <= 1.0:
            raise WorkbenchError(
                f"probability {self.probability} is outside 0..1", field="probability"
            )
        if self.end is not None and self.end < self.start:
            raise WorkbenchError(
                f"event '{self.name}' ends ({self.end}) before it starts ({self.start})",
                field="end",
                fix="move the end after the start, or leave it empty for a launch",
            )


@dataclass(frozen=True)
class GrowthMultiplier:
    """Demand of a pool times ``factor`` from ``start``.

    ``region`` None means every pool of ``accelerator``; ``start`` None the first forecast
    day.
    """

    accelerator: str
    factor: float
    region: str | None = None
    start: date | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.factor <= 10.0:
            raise WorkbenchError(
                f"growth factor {self.factor} is outside 0..10",
                field="factor",
                fix="1.2 means 20% more demand, 0.8 means 20% less",
            )


@dataclass(frozen=True)
class Scenario:
    """A named what-if: events and growth multipliers."""

    name: str
    events: tuple[ScenarioEvent, ...] = ()
    growth: tuple[GrowthMultiplier, ...] = ()
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (dates as ISO strings)."""
        return json.loads(json.dumps(asdict(self), default=str))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        """Inverse of :meth:`as_dict`; raises :class:`WorkbenchError` on a bad document."""

        def day(value: Any) -> date | None:
            return None if value in (None, "") else date.fromisoformat(str(value))

        try:
            events = tuple(
                ScenarioEvent(
                    **{
                        **e,
                        "start": day(e["start"]),
                        "end": day(e.get("end")),
                        "chips": float(e["chips"]),
                    }
                )
                for e in data.get("events", [])
            )
            growth = tuple(
                GrowthMultiplier(
                    **{**g, "start": day(g.get("start")), "factor": float(g["factor"])}
                )
                for g in data.get("growth", [])
            )
            return cls(
                name=str(data["name"]), events=events, growth=growth, note=str(data.get("note", ""))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise WorkbenchError(
                f"cannot read the scenario: {exc}",
                field="scenario",
                fix="save it again from the app's Scenarios page",
            ) from exc

    def fingerprint(self) -> str:
        """SHA-256 of the scenario's content (its name excluded)."""
        content = {k: v for k, v in self.as_dict().items() if k not in ("name", "note")}
        return sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def touched_pools(self, known: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Pools the scenario changes: its events' pools and its growth's, sorted.

        A growth multiplier without a region touches every known pool of its accelerator.
        """
        known = sorted(set(known))
        pools = {(e.accelerator, e.region) for e in self.events}
        for g in self.growth:
            pools |= {(a, r) for a, r in known if a == g.accelerator and g.region in (None, r)} | (
                {(g.accelerator, g.region)} if g.region else set()
            )
        return sorted(pools)


# --------------------------------------------------------------------------------------
# Saving by name
# --------------------------------------------------------------------------------------
def _folder(workspace: Workspace) -> Path:
    return workspace.root / _FOLDER


def save_scenario(workspace: Workspace, scenario: Scenario) -> Path:
    """Write the scenario to ``scenarios/<sanitized name>.json`` (atomically); return it."""
    workspace.require()
    folder = _folder(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sanitize_name(scenario.name)}.json"
    aside = folder / f".staging-{path.stem}-{uuid.uuid4().hex}"
    aside.write_text(json.dumps(scenario.as_dict(), indent=2, sort_keys=True) + "\n")
    os.replace(aside, path)
    return path


def list_scenarios(workspace: Workspace) -> list[str]:
    """Names (sanitized) of the saved scenarios, sorted."""
    folder = _folder(workspace)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))


def load_scenario(workspace: Workspace, name: str) -> Scenario:
    """Read a saved scenario by name (sanitized the same way as when saved)."""
    path = _folder(workspace) / f"{sanitize_name(name)}.json"
    if not path.exists():
        raise WorkbenchError(
            f"no scenario named '{name}'",
            file=path,
            fix=f"saved scenarios: {', '.join(list_scenarios(workspace)) or 'none yet'}",
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WorkbenchError(
            f"not valid JSON: {exc}", file=path, fix="save the scenario again"
        ) from exc
    return Scenario.from_dict(data)


def delete_scenario(workspace: Workspace, name: str) -> None:
    """Remove a saved scenario (nothing if absent)."""
    (_folder(workspace) / f"{sanitize_name(name)}.json").unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Applying a scenario
# --------------------------------------------------------------------------------------
_Shares = dict[tuple[str, str], list[tuple[str | None, float]]]


def _team_shares(usage: pl.DataFrame, days: int = 28) -> _Shares:
    """Each pool's teams and their share of its demand (used + queued) over ``days``."""
    if usage.is_empty():
        return {}
    last = usage["date"].max()
    recent = (
        usage.filter(pl.col("date") > pl.lit(last) - pl.duration(days=days))
        .group_by(*_POOL, "team")
        .agg((pl.col("chip_hours_used") + pl.col("chip_hours_queued")).sum().alias("demand"))
        .with_columns((pl.col("demand") / pl.col("demand").sum().over(_POOL)).alias("share"))
        .filter(pl.col("share") > 0)
        .sort(*_POOL, "team")
    )
    shares: _Shares = {}
    for accelerator, region, team, _, share in recent.iter_rows():
        shares.setdefault((accelerator, region), []).append((team, float(share)))
    return shares


def scenario_events(
    scenario: Scenario, template: pl.DataFrame, usage: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The scenario's events as rows of the ``events`` table (``template``'s schema).

    Ids are ``SC-<name>-<n>`` and the source ``scenario:<name>``, so they are never
    mistaken for ingested events. An event naming no team is split over the pool's teams
    by their share of its last four weeks of demand in ``usage`` (ids
    ``SC-<name>-<n>-<team>``): the forecast reconciles teams up to pools, so an event
    only on the pool would be pulled back toward its teams' forecasts.
    """
    slug = sanitize_name(scenario.name)
    shares = _team_shares(usage) if usage is not None else {}
    rows = []
    for i, e in enumerate(scenario.events):
        split = shares.get((e.accelerator, e.region), []) if e.team is None else []
        parts = split or [(e.team, 1.0)]
        for team, share in parts:
            suffix = f"-{team}" if split else ""
            rows.append(
                {
                    "event_id": f"SC-{slug}-{i + 1}{suffix}",
                    "name": e.name,
                    "kind": e.kind,
                    "start": e.start,
                    "end": e.end,
                    "accelerator": e.accelerator,
                    "region": e.region,
                    "team": team,
                    "chips": float(e.chips) * share,
                    "probability": float(e.probability),
                    "source": f"scenario:{slug}",
                }
            )
    frame = pl.DataFrame(rows, schema=template.schema) if rows else template.clear()
    return frame.select(template.columns)


def with_growth(forecast: pl.DataFrame, growth: Sequence[GrowthMultiplier]) -> pl.DataFrame:
    """The forecast with each multiplier applied to its pools' rows (and their teams').

    Mean and every quantile column of matching rows from the multiplier's start on are
    multiplied by its factor; aggregates above pools (accelerator, fleet) are left as
    they are, since a scenario only re-plans pools.
    """
    value_columns = ["mean", *[c for c in forecast.columns if re.fullmatch(r"p\d+(_\d+)?", c)]]
    out = forecast
    for g in growth:
        hit = (pl.col("accelerator") == g.accelerator) & pl.col("region").is_not_null()
        if g.region is not None:
            hit = hit & (pl.col("region") == g.region)
        if g.start is not None:
            hit = hit & (pl.col("ds") >= g.start)
        out = out.with_columns(
            [
                pl.when(hit).then(pl.col(c) * g.factor).otherwise(pl.col(c)).alias(c)
                for c in value_columns
            ]
        )
    return out


def input_fingerprint(workspace: Workspace) -> dict[str, str]:
    """SHA-256 of each input table's file (``absent`` for a table never written)."""
    return {
        table: file_sha256(workspace.table_path(table)) if workspace.has_table(table) else "absent"
        for table in INPUT_TABLES
    }


@dataclass(frozen=True)
class ScenarioOutcome:
    """Baseline and scenario for the touched pools: demand and plan side by side.

    ``demand``: per pool and quarter, peak weekly demand p50/p90 in both (from
    :func:`compare_demand`). ``plan``: per pool and quarter, buy, commit and cost in both
    (A = baseline, B = scenario; see :func:`workbench.run_compare.compare_plans`).
    ``forecast``: daily pool forecasts of both (column ``case``: baseline or scenario).
    """

    scenario: Scenario
    pools: tuple[tuple[str, str], ...]
    demand: pl.DataFrame
    plan: pl.DataFrame
    forecast: pl.DataFrame
    run_id: str | None = None
    notes: tuple[str, ...] = field(default=())


def compare_demand(baseline: pl.DataFrame, scenario: pl.DataFrame) -> pl.DataFrame:
    """Per pool and quarter: peak weekly demand p50 and p90, baseline vs scenario (chips)."""

    def side(frame: pl.DataFrame, suffix: str) -> pl.DataFrame:
        return frame.filter(pl.col("level") == "pool").select(
            *_POOL,
            "quarter",
            pl.col("peak_p50").alias(f"p50_{suffix}"),
            pl.col("peak_p90").alias(f"p90_{suffix}"),
        )

    return (
        side(baseline, "baseline")
        .join(side(scenario, "scenario"), on=[*_POOL, "quarter"], how="inner")
        .with_columns(
            (pl.col("p50_scenario") - pl.col("p50_baseline")).alias("p50_change"),
            (pl.col("p90_scenario") - pl.col("p90_baseline")).alias("p90_change"),
        )
        .sort(*_POOL, "quarter")
    )


def _planning_outputs(
    forecast: pl.DataFrame, settings: ForecastSettings
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Quarter peaks and peak scenarios of the pool rows (as a forecast run writes them)."""
    pools = forecast.filter(pl.col("level") == "pool").sort("series_id", "ds")
    keys = pools.select("series_id", "level", "accelerator", "region", "team").unique()
    planning = planning_periods(
        pools, settings.quantiles, n_paths=settings.sample_paths, seed=settings.seed
    ).join(keys, on="series_id", how="left")
    peaks = peak_scenarios(pools, settings.quantiles, n_scenarios=100, seed=settings.seed).join(
        keys, on="series_id", how="left"
    )
    return planning, peaks


def run_scenario(
    workspace: Workspace,
    scenario: Scenario,
    *,
    horizon_days: int = 182,
    horizon_quarters: int = 4,
    settings: ForecastSettings | None = None,
    limits: PlanLimits | None = None,
    on_stage: Callable[[str], None] | None = None,
    write_run: bool = True,
) -> ScenarioOutcome:
    """Forecast and plan the pools the scenario touches, with and without it.

    ``settings`` default to the fast engine (``FAST_MODELS``, 200 sample paths, one
    worker). ``on_stage`` is told each step (for a progress display). With
    ``write_run``, the outcome is committed as a ``scenario`` run (see the module doc).
    """
    stage = on_stage or (lambda _: None)
    for table in ("usage_daily", "sku_catalog", "inventory", "price_book"):
        if not workspace.has_table(table):
            raise WorkbenchError(
                f"the workspace has no {table} table",
                file=workspace.root,
                fix="run 'workbench demo', or ingest it first",
            )
    if not scenario.events and not scenario.growth:
        raise WorkbenchError(
            f"scenario '{scenario.name}' changes nothing",
            field="scenario",
            fix="add an event or a growth multiplier",
        )
    settings = settings or ForecastSettings(
        horizon=horizon_days, models=FAST_MODELS, sample_paths=200, workers=1
    )
    settings = replace(settings, horizon=horizon_days)
    fingerprint = input_fingerprint(workspace)
    usage = workspace.read_table("usage_daily")
    known = [(str(a), str(r)) for a, r in usage.select(_POOL).unique().iter_rows()]
    pools = scenario.touched_pools(known)
    missing = [p for p in pools if p not in set(known)]
    if missing:
        names = ", ".join(f"{a} {r}" for a, r in missing)
        raise WorkbenchError(
            f"no usage history for pool(s) {names}",
            field="scenario",
            fix="pick pools that have usage (a new pool needs a first export or a predecessor)",
        )
    pool_frame = pl.DataFrame(pools, schema=_POOL, orient="row")
    usage = usage.join(pool_frame, on=_POOL, how="semi")
    events = workspace.read_table("events")
    events = events.join(pool_frame, on=_POOL, how="semi")
    catalog = workspace.read_table("sku_catalog")
    inventory = workspace.read_table("inventory")
    orders = workspace.read_table("orders") if workspace.has_table("orders") else None
    price_book = workspace.read_table("price_book")
    input_settings = InputSettings(horizon_quarters=horizon_quarters)
    limits = limits or PlanLimits(time_limit_s=10.0)
    cases: dict[str, dict[str, pl.DataFrame]] = {}
    for case, case_events in (
        ("baseline", events),
        ("scenario", pl.concat([events, scenario_events(scenario, events, usage)])),
    ):
        stage(f"forecasting the {case} of {len(pools)} pool(s)")
        with warnings.catch_warnings():
            # apply_future_events compares the team column with an event's team, which is
            # None for a pool-wide event; polars warns, and the result is still right (the
            # comparison is or-ed with "the event names no team").
            warnings.filterwarnings("ignore", "Comparisons with None", UserWarning)
            result = forecast_fleet(usage, case_events, catalog, settings)
        forecast, planning, peaks = result.forecast, result.planning, result.scenarios
        if case == "scenario" and scenario.growth:
            forecast = with_growth(forecast, scenario.growth)
            planning, peaks = _planning_outputs(forecast, settings)
        stage(f"planning the {case}")
        history = result.history.filter(pl.col("level") == "pool")
        inputs = workspace_plan_inputs(
            peaks.filter(pl.col("level") == "pool"),
            planning,
            history,
            inventory,
            orders,
            price_book,
            catalog,
            input_settings,
        )
        plan = solve_plan(inputs, limits)
        cases[case] = {
            "forecast": forecast.filter(pl.col("level") == "pool").with_columns(
                pl.lit(case).alias("case")
            ),
            "planning": planning,
            "plan": plan.rows,
        }
    demand = compare_demand(cases["baseline"]["planning"], cases["scenario"]["planning"])
    plan_table = compare_plans(cases["baseline"]["plan"], cases["scenario"]["plan"])
    forecast = pl.concat([cases["baseline"]["forecast"], cases["scenario"]["forecast"]])
    outcome = ScenarioOutcome(
        scenario=scenario, pools=tuple(pools), demand=demand, plan=plan_table, forecast=forecast
    )
    if not write_run:
        return outcome
    stage("saving the scenario run")
    config = {
        "scenario": scenario.as_dict(),
        "scenario_fingerprint": scenario.fingerprint(),
        "pools": [list(p) for p in pools],
        "horizon_days": horizon_days,
        "horizon_quarters": horizon_quarters,
        "forecast": settings.as_dict(),
        "input_tables": fingerprint,
    }
    with workspace.new_run("scenario", config=config, seed=settings.seed) as run:
        run.write("demand", demand)
        run.write("plan", plan_table)
        run.write("forecast", forecast)
        run.write("plan_baseline", cases["baseline"]["plan"])
        run.write("plan_scenario", cases["scenario"]["plan"])
        run_id = run.run_id
    return replace(outcome, run_id=run_id)


def find_scenario_run(
    workspace: Workspace,
    scenario: Scenario,
    *,
    horizon_days: int = 182,
    horizon_quarters: int = 4,
) -> RunInfo | None:
    """The newest ``scenario`` run of this scenario on the workspace's current data."""
    fingerprint = input_fingerprint(workspace)
    wanted = scenario.fingerprint()
    for run in reversed(workspace.runs("scenario")):
        config = run.manifest.get("config", {})
        if (
            config.get("scenario_fingerprint") == wanted
            and config.get("input_tables") == fingerprint
            and config.get("horizon_days") == horizon_days
            and config.get("horizon_quarters") == horizon_quarters
        ):
            return run
    return None


def read_outcome(run: RunInfo) -> ScenarioOutcome:
    """A scenario run's outcome, as :func:`run_scenario` returned it."""
    config = run.manifest.get("config", {})
    return ScenarioOutcome(
        scenario=Scenario.from_dict(config["scenario"]),
        pools=tuple((str(a), str(r)) for a, r in config.get("pools", [])),
        demand=run.read("demand"),
        plan=run.read("plan"),
        forecast=run.read("forecast"),
        run_id=run.run_id,
    )
