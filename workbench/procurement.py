"""Procurement plan: what to buy, commit or rent per pool and quarter, as a stochastic program.

Pure functions over frozen dataclasses; the solver is HiGHS through
:func:`scipy.optimize.milp`. Invariants of :func:`solve_plan`:

* Decisions per pool (accelerator x region) and quarter. *Here and now* (the same in every
  demand scenario): owned purchases in whole lots of ``lot_chips``, which enter service
  ``lead_quarters`` later (the lead time in weeks rounded *up* to whole quarters, so a chip is
  only counted for a quarter it serves from its first day; a purchase that cannot land
  inside the horizon is not an option), and 1-year and 3-year cloud commitments (chips held
  for 4 or 12 quarters from the quarter they start). *Recourse* (per scenario): on-demand
  burst, at most ``burst_cap_chips``, and unmet demand, at a penalty. With
  :attr:`PlanLimits.commitment_recourse`, commitments starting from the second quarter up
  to the quarter a purchase made now lands in are recourse too, one per bundle of
  scenarios alike in the quarter before (they have no lead time: they wait until that is
  known), so the first quarter's purchases need not hold owned chips for upper scenarios
  that a later commitment can meet; the first quarter's decisions stay here and now.
* Capacity of a quarter = the healthy share (the pool's healthy ratio) of installed chips,
  open orders and landed purchases + active commitments; in each scenario capacity + burst
  + unmet >= the scenario's peak weekly demand of the quarter.
* Expected cost = owned chip-quarters of landed purchases (the TCO owned cost per chip-hour,
  every component, times the hours in the horizon) + commitment chip-hours + expected burst
  chip-hours at the on-demand price + expected unmet chip-hours at the penalty. The penalty
  defaults to the pool's cheapest here-and-now price (usually owning) / (1 - service_level),
  at least 1.5x on demand: by the newsvendor argument, holding one more chip then pays
  whenever the chance it is short exceeds 1 - service_level, which is what a target "no
  unmet demand in service_level of scenarios" asks, without a binary per scenario (a
  chance constraint with 100 scenarios x 2,400 pool-quarters would be 240,000 binaries).
* Limits are hard rows (capex budget per quarter, power per region in MW of IT load x PUE);
  since unmet demand is always a feasible recourse, the program is never infeasible: when a
  limit makes the target impossible the least-cost (hence least-unmet, the penalty being
  high) plan comes back, and :attr:`PlanResult.limits` names each binding limit with the
  extra budget or power the unconstrained plan would use (how far it falls short).
* Money in the outputs is whole cents (``*_cents`` columns, Int64).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from workbench.errors import WorkbenchError

__all__ = [
    "HOURS_PER_QUARTER",
    "WEEKS_PER_QUARTER",
    "PlanInputs",
    "PlanLimits",
    "PlanResult",
    "PoolSpec",
    "lead_quarters",
    "solve_plan",
]

HOURS_PER_QUARTER = 8760.0 / 4
WEEKS_PER_QUARTER = 13
_EPS = 1e-6


def lead_quarters(lead_time_weeks: float) -> int:
    """Quarters from the order's quarter to the first quarter the chips serve in full."""
    return max(1, math.ceil(lead_time_weeks / WEEKS_PER_QUARTER - 1e-9))


@dataclass(frozen=True)
class PoolSpec:
    """One pool's supply options and prices (USD per chip-hour), from the price book and TCO."""

    accelerator: str
    region: str
    family: str
    perf_index: float
    power_w: float
    pue: float
    lot_chips: int
    lead_time_weeks: float
    capex_usd: float
    owned_usd_per_chip_hour: float
    on_demand_usd_per_hour: float
    commit_1y_usd_per_hour: float | None = None
    commit_3y_usd_per_hour: float | None = None
    burst_cap_chips: float = 0.0
    owned_components: Mapping[str, float] = field(default_factory=dict)
    """USD per installed chip-hour by TCO component (sums to ``owned_usd_per_chip_hour``)."""
    host_cores_per_chip: float = 0.0
    storage_tb_per_chip: float = 0.0
    network_gbps_per_chip: float = 0.0
    shortfall_hours_share: float | None = None
    """This pool's share of a quarter's hours a shortfall at the peak lasts, when measured
    (a training pool's peak is a campaign of a few weeks, a serving pool runs near its peak
    all quarter); ``None``: the plan's :attr:`PlanLimits.burst_hours_share`."""

    @property
    def key(self) -> str:
        """``accelerator region``."""
        return f"{self.accelerator} {self.region}"

    @property
    def lead_quarters(self) -> int:
        """The lead time in whole quarters (rounded up)."""
        return lead_quarters(self.lead_time_weeks)


@dataclass(frozen=True)
class PlanInputs:
    """Everything the optimizer needs. Arrays are (pools, quarters[, scenarios]), in chips.

    ``installed`` and ``on_order`` are cumulative chips in service in each quarter (the
    latest inventory, and open orders by the quarter they are expected to land, slip
    included); ``healthy_ratio`` turns them into usable capacity. ``demand`` holds each
    scenario's peak weekly demand per quarter; ``extrapolated`` flags quarters beyond the
    forecast.
    """

    quarters: tuple[str, ...]
    pools: tuple[PoolSpec, ...]
    installed: np.ndarray
    on_order: np.ndarray
    healthy_ratio: np.ndarray
    demand: np.ndarray
    extrapolated: tuple[bool, ...] = ()
    committed: np.ndarray | None = None
    """Cloud commitments already active per pool and quarter (chips), if any."""

    def __post_init__(self) -> None:
        n_pools, n_quarters = len(self.pools), len(self.quarters)
        if self.demand.ndim != 3 or self.demand.shape[:2] != (n_pools, n_quarters):
            raise WorkbenchError(
                f"demand has shape {self.demand.shape}, expected ({n_pools}, {n_quarters}, S)",
                field="demand",
            )
        for name in ("installed", "on_order"):
            if getattr(self, name).shape != (n_pools, n_quarters):
                raise WorkbenchError(f"{name} must be (pools, quarters)", field=name)
        if self.healthy_ratio.shape != (n_pools,):
            raise WorkbenchError("healthy_ratio must have one value per pool", field="healthy")

    @property
    def base_capacity(self) -> np.ndarray:
        """Healthy chips in service without any new decision, (pools, quarters)."""
        owned = (self.installed + self.on_order) * self.healthy_ratio[:, None]
        return owned if self.committed is None else owned + self.committed

    @property
    def n_scenarios(self) -> int:
        """Demand scenarios (equally likely)."""
        return int(self.demand.shape[2])


@dataclass(frozen=True)
class PlanLimits:
    """Limits and policy of a plan."""

    capex_budget_usd: float | Sequence[float] | None = None
    """Capex spendable on purchases placed in each quarter (one value or one per quarter)."""
    power_mw: Mapping[str, float] = field(default_factory=dict)
    """Power budget per region, MW at the facility (chips x power_w x PUE)."""
    service_level: float = 0.95
    unmet_penalty_usd_per_chip_hour: float | None = None
    """Default: each pool's cheapest here-and-now price / (1 - service_level), at least 1.5x
    its on-demand price."""
    burst_hours_share: float = 1.0
    """Share of a quarter's hours that a shortfall at the peak lasts (1: the whole quarter):
    burst and unmet chips are priced for it. ``workbench plan`` and the replay measure it
    from the pools' history (:func:`workbench.planning_inputs.shortfall_hours_share`)."""
    fungible: bool = False
    """Meet demand in perf_index units with any SKU of the same family and region."""
    allow_commitments: bool = True
    commitment_recourse: bool = False
    """Commitments starting from the second quarter up to the quarter a purchase made now
    lands in are recourse: they have no lead time, so they are decided when their quarter
    starts, knowing the demand until then. Only the first quarter's decisions are then
    final (a plan carried out one quarter at a time, as the replay does). Off by default:
    at 200 pools x 12 quarters x 100 scenarios the LP takes about 3x as long."""
    recourse_bundle: int | None = None
    """Scenarios per bundle of a later commitment: a commitment starting in quarter t is one
    decision for the scenarios whose demand in quarter t-1 ranks alike, so it knows the
    past, not quarter t itself (1: each scenario its own, i.e. knowing its quarter exactly).
    Default: enough scenarios to hold the tail the service level leaves short,
    ceil(1 / (1 - service_level))."""
    method: str = "milp"
    """``milp`` (integer lots) or ``lp_round`` (LP relaxation, lots rounded up, then repaired)."""
    time_limit_s: float = 20.0
    mip_rel_gap: float = 1e-3

    def __post_init__(self) -> None:
        if not 0 < self.service_level < 1:
            raise WorkbenchError("service_level must be in (0, 1)", field="service_level")
        if self.method not in ("milp", "lp_round"):
            raise WorkbenchError(
                f"unknown method '{self.method}'", field="method", fix="use milp or lp_round"
            )


@dataclass(frozen=True)
class PlanResult:
    """A solved plan: one row per pool and quarter, the binding limits, attached resources."""

    rows: pl.DataFrame
    limits: pl.DataFrame
    attached: pl.DataFrame
    method: str
    solve_seconds: float
    objective_usd: float
    status: str
    buy_lots: np.ndarray
    commit_1y: np.ndarray
    commit_3y: np.ndarray
    capacity: np.ndarray
    burst: np.ndarray
    unmet: np.ndarray
    solver_note: str = ""
    """Empty when solved to the gap; else why not (the time limit) and how close."""

    def summary(self) -> dict[str, Any]:
        """Totals for a manifest or a report."""
        cost = int(self.rows["cost_cents"].sum()) if self.rows.height else 0
        return {
            "method": self.method,
            "status": self.status,
            "solve_seconds": round(self.solve_seconds, 3),
            "solver_note": self.solver_note,
            "expected_cost_cents": cost,
            "buy_chips": int(self.rows["buy_chips"].sum()) if self.rows.height else 0,
            "binding_limits": self.limits.filter(pl.col("binding")).height
            if self.limits.height
            else 0,
        }


# --------------------------------------------------------------------------------------
# The program
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    n_pools: int
    n_quarters: int
    n_scenarios: int
    n_groups: int
    n_bundles: int = 0
    """Decisions per pool and later quarter of each recourse commitment (0: no recourse)."""

    @property
    def recourse(self) -> bool:
        return self.n_bundles > 0

    @property
    def pt(self) -> int:
        return self.n_pools * self.n_quarters

    @property
    def off_c1(self) -> int:
        return self.pt

    @property
    def off_c3(self) -> int:
        return 2 * self.pt

    @property
    def off_cap(self) -> int:
        return 3 * self.pt

    @property
    def off_burst(self) -> int:
        return 4 * self.pt

    @property
    def off_unmet(self) -> int:
        return 4 * self.pt + self.pt * self.n_scenarios

    @property
    def off_rc1(self) -> int:
        """Recourse 1-year commitments (pool, quarter, bundle), when recourse."""
        return self.off_unmet + self.n_groups * self.n_quarters * self.n_scenarios

    @property
    def off_rc3(self) -> int:
        return self.off_rc1 + self.pt * self.n_bundles

    @property
    def size(self) -> int:
        return self.off_rc3 + self.pt * self.n_bundles


def _groups(pools: Sequence[PoolSpec], fungible: bool) -> np.ndarray:
    if not fungible:
        return np.arange(len(pools))
    keys: dict[tuple[str, str], int] = {}
    return np.array([keys.setdefault((p.family, p.region), len(keys)) for p in pools])


def _budget_vector(limits: PlanLimits, n_quarters: int) -> np.ndarray | None:
    budget = limits.capex_budget_usd
    if budget is None:
        return None
    if isinstance(budget, int | float):
        return np.full(n_quarters, float(budget))
    values = np.asarray(list(budget), dtype=float)
    if values.shape != (n_quarters,):
        raise WorkbenchError(
            f"capex budget has {values.size} values for {n_quarters} quarters",
            field="capex_budget_usd",
        )
    return values


def _penalties(pools: Sequence[PoolSpec], limits: PlanLimits) -> np.ndarray:
    if limits.unmet_penalty_usd_per_chip_hour is not None:
        return np.full(len(pools), limits.unmet_penalty_usd_per_chip_hour)
    # Newsvendor: the cheapest chip held here and now pays when P(short) > 1 - service level;
    # never below 1.5x on demand, so renting always beats leaving demand unmet.
    cheapest = np.array(
        [
            min(
                [
                    p.owned_usd_per_chip_hour,
                    *(c for c in (p.commit_1y_usd_per_hour, p.commit_3y_usd_per_hour) if c),
                ]
            )
            for p in pools
        ]
    )
    on_demand = np.array([p.on_demand_usd_per_hour for p in pools])
    return np.maximum(cheapest / (1 - limits.service_level), 1.5 * on_demand)


_TIE_BREAK = 1e-9
"""Relative premium in the objective on commitments (one) and burst (two), so that an exact
tie goes to owned capacity, then to commitments."""


def _shortfall_shares(pools: Sequence[PoolSpec], limits: PlanLimits) -> np.ndarray:
    """Each pool's share of a quarter's hours a shortfall at the peak lasts."""
    return np.array(
        [
            limits.burst_hours_share if p.shortfall_hours_share is None else p.shortfall_hours_share
            for p in pools
        ]
    )


def _landing_sum(
    layout: _Layout, lead: np.ndarray, lots: np.ndarray, scale: np.ndarray
) -> sp.coo_matrix:
    """(pools x quarters) x buy-variables matrix: scale x lot x lots landed by each quarter."""
    n_p, n_t = layout.n_pools, layout.n_quarters
    rows, cols, vals = [], [], []
    pool_index = np.arange(n_p)
    for t in range(n_t):
        for tau in range(t + 1):
            ok = tau + lead <= t
            pools = pool_index[ok]
            rows.append(pools * n_t + t)
            cols.append(pools * n_t + tau)
            vals.append((lots * scale)[ok])
    return sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(layout.pt, layout.pt),
    )


def _window_sum(layout: _Layout, term: int) -> sp.coo_matrix:
    """(pools x quarters) x commitment-variables matrix: commitments active in each quarter."""
    n_p, n_t = layout.n_pools, layout.n_quarters
    rows, cols = [], []
    pool_index = np.arange(n_p)
    for t in range(n_t):
        for tau in range(max(0, t - term + 1), t + 1):
            rows.append(pool_index * n_t + t)
            cols.append(pool_index * n_t + tau)
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.coo_matrix((np.ones(r.size), (r, c)), shape=(layout.pt, layout.pt))


def _bundles(demand: np.ndarray, n_bundles: int) -> np.ndarray:
    """(pools, quarters, scenarios) bundle of each scenario's commitment starting then.

    By the rank of the scenario's demand in the quarter before (what is known when the
    commitment is made); quarter 0 has no recourse commitment (bundle 0, unused).
    """
    n_p, n_t, n_s = demand.shape
    out = np.zeros((n_p, n_t, n_s), dtype=np.int64)
    if n_t > 1:
        rank = np.argsort(np.argsort(demand[:, :-1], axis=2, kind="stable"), axis=2)
        out[:, 1:] = rank * n_bundles // n_s
    return out


def _bundle_columns(layout: _Layout, bundles: np.ndarray, offset: int) -> np.ndarray:
    """(pools, quarters, scenarios) column of each scenario's recourse commitment."""
    pool_quarter = np.arange(layout.pt).reshape(layout.n_pools, layout.n_quarters, 1)
    return offset + pool_quarter * layout.n_bundles + bundles


def _scenario_commitments(
    layout: _Layout, bundles: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Recourse commitments started and active per scenario, (pools, quarters, scenarios).

    Zero without recourse. Started: 1-year + 3-year chips by the quarter they start.
    """
    shape = (layout.n_pools, layout.n_quarters, layout.n_scenarios)
    started = np.zeros(shape)
    active = np.zeros(shape)
    if not layout.recourse:
        return started, active
    for offset, term in ((layout.off_rc1, 4), (layout.off_rc3, 12)):
        chips = x[_bundle_columns(layout, bundles, offset)]
        started += chips
        cumulative = np.cumsum(chips, axis=1)
        ended = np.zeros(shape)
        if term < layout.n_quarters:
            ended[:, term:] = cumulative[:, :-term]
        active += cumulative - ended
    return started, active


@dataclass(frozen=True)
class _Program:
    layout: _Layout
    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    integrality: np.ndarray
    matrix: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    budget_rows: np.ndarray  # row index per quarter, or empty
    power_rows: dict[tuple[str, int], int]
    power_limit_kw: dict[tuple[str, int], float]
    budget: np.ndarray | None
    groups: np.ndarray
    bundles: np.ndarray

    @property
    def limit_rows(self) -> np.ndarray:
        """The rows of the capex budget and the power limits."""
        power = np.array(list(self.power_rows.values()), dtype=int)
        return np.concatenate([self.budget_rows, power]).astype(int)


def _build(inputs: PlanInputs, limits: PlanLimits) -> _Program:
    pools = inputs.pools
    n_p, n_t, n_s = len(pools), len(inputs.quarters), inputs.n_scenarios
    groups = _groups(pools, limits.fungible)
    recourse = limits.commitment_recourse and limits.allow_commitments and n_s > 1 and n_t > 1
    bundle_size = limits.recourse_bundle or math.ceil(1 / (1 - limits.service_level) - 1e-9)
    n_bundles = max(1, n_s // max(1, bundle_size)) if recourse else 0
    layout = _Layout(n_p, n_t, n_s, int(groups.max()) + 1 if n_p else 0, n_bundles)
    bundles = _bundles(inputs.demand, n_bundles) if recourse else np.zeros((n_p, n_t, n_s), int)
    lead = np.array([p.lead_quarters for p in pools])
    lots = np.array([float(p.lot_chips) for p in pools])
    owned = np.array([p.owned_usd_per_chip_hour for p in pools])
    on_demand = np.array([p.on_demand_usd_per_hour for p in pools])
    c1_price = np.array([p.commit_1y_usd_per_hour or 0.0 for p in pools])
    c3_price = np.array([p.commit_3y_usd_per_hour or 0.0 for p in pools])
    perf = np.array([p.perf_index for p in pools])
    quarter = np.tile(np.arange(n_t), n_p)
    pool_of = np.repeat(np.arange(n_p), n_t)
    hours = HOURS_PER_QUARTER

    cost = np.zeros(layout.size)
    lower = np.zeros(layout.size)
    upper = np.full(layout.size, np.inf)
    integrality = np.zeros(layout.size, dtype=np.uint8)
    # Purchases: owned cost of every in-horizon quarter after landing.
    quarters_owned = np.maximum(0, n_t - (quarter + lead[pool_of]))
    cost[: layout.pt] = lots[pool_of] * owned[pool_of] * hours * quarters_owned
    upper[: layout.pt] = np.where(quarters_owned > 0, np.inf, 0.0)
    integrality[: layout.pt] = 1 if limits.method == "milp" else 0
    # A later commitment starts from the second quarter up to the quarter a purchase made
    # now lands in (and serves a year from there): the quarters where it competes with
    # what is bought now. Later starts are re-planned before they matter.
    recourse_start = recourse & (quarter >= 1) & (quarter <= lead[pool_of])
    # Commitments: paid for every in-horizon quarter of their term. With recourse, those
    # starting in those quarters are per bundle of scenarios, the others here and now.
    bundle_members = np.zeros(layout.pt * n_bundles)
    if recourse:
        np.add.at(bundle_members, _bundle_columns(layout, bundles, 0).reshape(-1), 1.0)
    for offset, recourse_offset, price, term in (
        (layout.off_c1, layout.off_rc1, c1_price, 4),
        (layout.off_c3, layout.off_rc3, c3_price, 12),
    ):
        span = slice(offset, offset + layout.pt)
        cost[span] = price[pool_of] * hours * np.minimum(term, n_t - quarter) * (1 + _TIE_BREAK)
        usable = (price[pool_of] > 0) & limits.allow_commitments
        upper[span] = np.where(usable & ~recourse_start, np.inf, 0.0)
        if recourse:
            span = slice(recourse_offset, recourse_offset + layout.pt * n_bundles)
            # A bundle's commitment is paid in each of its scenarios, 1/S each.
            cost[span] = (
                np.repeat(cost[offset : offset + layout.pt] / n_s, n_bundles) * bundle_members
            )
            upper[span] = np.repeat(np.where(usable & recourse_start, np.inf, 0.0), n_bundles)
    # Capacity variables are free of cost; burst and unmet are per scenario, 1/S each.
    shares = _shortfall_shares(pools, limits)
    # At an exact tie the plan owns, then commits, then rents (the premiums above and here):
    # ties are otherwise broken by the solver's path, and more demand could then recommend
    # less capacity (an equally cheap plan with fewer lots).
    burst_cost = on_demand * hours * shares / n_s * (1 + 2 * _TIE_BREAK)
    cost[layout.off_burst : layout.off_unmet] = np.repeat(burst_cost, n_t * n_s)
    cap = np.array([max(p.burst_cap_chips, 0.0) for p in pools])
    upper[layout.off_burst : layout.off_unmet] = np.repeat(cap, n_t * n_s)
    # Burst and unmet chips at the peak last the share of the quarter a shortfall lasts.
    penalty = _penalties(pools, limits) * hours * shares / n_s
    if limits.fungible:
        # Unmet is in perf units of the group: the dearest pool's penalty per unit of perf.
        group_penalty = np.zeros(layout.n_groups)
        np.maximum.at(group_penalty, groups, penalty / perf)
        cost[layout.off_unmet : layout.off_rc1] = np.repeat(group_penalty, n_t * n_s)
    else:
        cost[layout.off_unmet : layout.off_rc1] = np.repeat(penalty, n_t * n_s)

    blocks: list[sp.spmatrix] = []
    row_lower: list[np.ndarray] = []
    row_upper: list[np.ndarray] = []
    eye = sp.identity(layout.pt, format="coo")
    zero = sp.coo_matrix((layout.pt, layout.pt))
    # Capacity definition: cap - landed lots - active commitments = base.
    landing = _landing_sum(layout, lead, lots, inputs.healthy_ratio)  # new chips fail too
    capacity_rows = sp.hstack(
        [
            -landing,
            -_window_sum(layout, 4),
            -_window_sum(layout, 12),
            eye,
            sp.coo_matrix((layout.pt, layout.size - 4 * layout.pt)),
        ]
    )
    base = inputs.base_capacity.reshape(-1)
    blocks.append(capacity_rows)
    row_lower.append(base)
    row_upper.append(base)
    # Coverage per scenario: cap + burst + unmet >= demand (perf units per group if fungible).
    n_cov = layout.n_groups * n_t * n_s
    pts = np.arange(layout.pt * n_s)  # (pool, quarter, scenario) flattened
    p_idx = pts // (n_t * n_s)
    t_idx = (pts // n_s) % n_t
    s_idx = pts % n_s
    cov_row = (groups[p_idx] * n_t + t_idx) * n_s + s_idx
    weight = perf[p_idx] if limits.fungible else np.ones(pts.size)
    g_rows = np.arange(n_cov)
    coverage_values = [weight, weight, np.ones(n_cov)]
    coverage_rows = [cov_row, cov_row, g_rows]
    coverage_cols = [
        layout.off_cap + p_idx * n_t + t_idx,
        layout.off_burst + pts,
        layout.off_unmet + g_rows,
    ]
    if recourse:
        # A scenario's later commitments serve it for their term: chips committed in
        # quarter t - lag are active in quarter t for lag < term.
        for offset, term in ((layout.off_rc1, 4), (layout.off_rc3, 12)):
            columns = _bundle_columns(layout, bundles, offset).reshape(-1)
            for lag in range(min(term, n_t - 1)):
                start = p_idx * n_t + np.maximum(t_idx - lag, 0)
                started = (t_idx >= lag) & recourse_start[start]
                coverage_values.append(weight[started])
                coverage_rows.append(cov_row[started])
                coverage_cols.append(columns[pts[started] - lag * n_s])
    coverage = sp.coo_matrix(
        (
            np.concatenate(coverage_values),
            (np.concatenate(coverage_rows), np.concatenate(coverage_cols)),
        ),
        shape=(n_cov, layout.size),
    )
    demand = inputs.demand.reshape(-1) * weight
    group_demand = np.bincount(cov_row, weights=demand, minlength=n_cov)
    blocks.append(coverage)
    row_lower.append(group_demand)
    row_upper.append(np.full(n_cov, np.inf))
    n_rows = layout.pt + n_cov
    # Capex budget per quarter of order.
    budget = _budget_vector(limits, n_t)
    budget_rows = np.array([], dtype=int)
    if budget is not None:
        capex = np.array([p.capex_usd for p in pools])
        r = quarter
        b = sp.coo_matrix(
            (capex[pool_of] * lots[pool_of], (r, np.arange(layout.pt))), shape=(n_t, layout.size)
        )
        blocks.append(b)
        row_lower.append(np.full(n_t, -np.inf))
        row_upper.append(budget)
        budget_rows = n_rows + np.arange(n_t)
        n_rows += n_t
    # Power per region: chips in service x kW x PUE, existing included.
    power_rows: dict[tuple[str, int], int] = {}
    power_limit: dict[tuple[str, int], float] = {}
    if limits.power_mw:
        kw = np.array([p.power_w / 1000 * p.pue for p in pools])
        landed_kw = _landing_sum(layout, lead, lots, kw).tocsr()
        existing_kw = (inputs.installed + inputs.on_order) * kw[:, None]
        regions = np.array([p.region for p in pools])
        for region, megawatts in sorted(limits.power_mw.items()):
            members = np.flatnonzero(regions == region)
            if members.size == 0:
                continue
            for t in range(n_t):
                row_ids = members * n_t + t
                row = landed_kw[row_ids].sum(axis=0)
                blocks.append(
                    sp.hstack([sp.coo_matrix(row), sp.coo_matrix((1, layout.size - layout.pt))])
                )
                headroom = megawatts * 1000 - float(existing_kw[members, t].sum())
                row_lower.append(np.array([-np.inf]))
                row_upper.append(np.array([max(0.0, headroom)]))
                power_rows[(region, t)] = n_rows
                power_limit[(region, t)] = megawatts * 1000
                n_rows += 1
    del zero
    matrix = sp.vstack(blocks, format="csr")
    return _Program(
        layout=layout,
        cost=cost,
        lower=lower,
        upper=upper,
        integrality=integrality,
        matrix=matrix,
        row_lower=np.concatenate(row_lower),
        row_upper=np.concatenate(row_upper),
        budget_rows=budget_rows,
        power_rows=power_rows,
        power_limit_kw=power_limit,
        budget=budget,
        groups=groups,
        bundles=bundles,
    )


def _run(
    program: _Program, limits: PlanLimits, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, str]:
    """Solve with HiGHS; the note says when the time limit stopped it short of the gap."""
    result = milp(
        program.cost,
        integrality=program.integrality,
        bounds=Bounds(lower, upper),
        constraints=LinearConstraint(program.matrix, program.row_lower, program.row_upper),
        options={"time_limit": limits.time_limit_s, "mip_rel_gap": limits.mip_rel_gap},
    )
    if result.x is None:
        raise WorkbenchError(
            f"the solver found no plan ({result.message})",
            fix="loosen the limits or raise --time-limit",
        )
    note = ""
    if result.status != 0:
        gap = getattr(result, "mip_gap", None)
        within = f", within {gap:.2%} of optimal" if gap is not None else ""
        note = f"stopped at the {limits.time_limit_s:g} s time limit{within}"
    return np.asarray(result.x), note


def _solve_lp(
    cost: np.ndarray,
    rows: sp.csr_matrix,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    limits: PlanLimits,
) -> np.ndarray:
    """Solve ``min cost @ x``, ``row_lower <= rows @ x <= row_upper``, by dual simplex.

    HiGHS' dual simplex is faster than its MIP driver on an LP.
    """
    equal = row_lower == row_upper
    upper_rows = ~equal & np.isfinite(row_upper)
    lower_rows = ~equal & np.isfinite(row_lower)
    result = linprog(
        cost,
        A_ub=sp.vstack([rows[upper_rows], -rows[lower_rows]]).tocsr(),
        b_ub=np.concatenate([row_upper[upper_rows], -row_lower[lower_rows]]),
        A_eq=rows[equal],
        b_eq=row_lower[equal],
        bounds=np.column_stack([lower, upper]),
        method="highs-ds",
        options={"time_limit": limits.time_limit_s},
    )
    if result.x is None:
        raise WorkbenchError(
            f"the solver found no plan ({result.message})",
            fix="loosen the limits or raise the time limit",
        )
    return np.asarray(result.x)


def _run_lp(program: _Program, limits: PlanLimits) -> np.ndarray:
    """The LP relaxation with every scenario's burst and unmet as variables."""
    return _solve_lp(
        program.cost,
        program.matrix,
        program.row_lower,
        program.row_upper,
        program.lower,
        program.upper,
        limits,
    )


def _shortfall_segments(
    program: _Program, inputs: PlanInputs
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each pool-quarter's expected burst-and-unmet cost as a convex function of capacity.

    Without fungibility or recourse a scenario's burst and unmet follow from the pool's
    capacity ``C`` alone (burst up to the cap, the rest unmet), so the expected cost over
    the scenarios is convex and piecewise linear in ``C``: slope ``-sum(unmet cost)`` below
    every scenario's ``demand - cap``, rising by ``unmet - burst`` cost at each
    ``demand - cap`` and by the burst cost at each ``demand``, zero past the largest demand.
    Returns per pool-quarter the first breakpoint, the segment widths (the last one
    unbounded), each segment's slope above the first one's, and the first slope.
    """
    layout = program.layout
    pt, n_s = layout.pt, layout.n_scenarios
    burst = program.cost[layout.off_burst : layout.off_unmet].reshape(pt, n_s)
    unmet = program.cost[layout.off_unmet : layout.off_rc1].reshape(pt, n_s)
    cap = program.upper[layout.off_burst : layout.off_unmet].reshape(pt, n_s)
    demand = inputs.demand.reshape(pt, n_s)
    # Burst is bought before unmet demand only where it is cheaper and allowed at all.
    at_cap = np.where((burst <= unmet) & (cap > 0), unmet - burst, 0.0)
    # Capacity is never negative: breakpoints below zero (a cap without limit among them)
    # only shape the curve where no plan can be, so they all sit at -1.
    positions = np.maximum(np.concatenate([demand - cap, demand], axis=1), -1.0)
    rises = np.concatenate([at_cap, unmet - at_cap], axis=1)
    order = np.argsort(positions, axis=1, kind="stable")
    positions = np.take_along_axis(positions, order, axis=1)
    rises = np.take_along_axis(rises, order, axis=1)
    widths = np.concatenate([np.diff(positions, axis=1), np.full((pt, 1), np.inf)], axis=1)
    return positions[:, 0], widths, np.cumsum(rises, axis=1), -unmet.sum(axis=1)


def _run_lp_segments(program: _Program, limits: PlanLimits, inputs: PlanInputs) -> np.ndarray:
    """The LP relaxation with each pool-quarter's recourse as segments of its cost curve.

    The same optimum as :func:`_run_lp` (see :func:`_shortfall_segments`) with one row per
    pool-quarter instead of one per pool, quarter and scenario: the simplex works on a basis
    of a few thousand rows instead of a quarter million. Returns the first-stage decisions
    and capacity in the program's layout (burst and unmet are recomputed after rounding).
    """
    layout = program.layout
    pt = layout.pt
    first, widths, rises, first_slope = _shortfall_segments(program, inputs)
    n_seg = widths.shape[1]
    kept = np.concatenate([np.arange(pt), program.limit_rows])
    decisions = program.matrix[kept][:, : 4 * pt]
    # capacity - sum of its segments <= first breakpoint (the rest of capacity is below it)
    segment_rows = sp.hstack(
        [
            sp.coo_matrix((pt, 3 * pt)),
            sp.identity(pt, format="coo"),
            sp.coo_matrix(
                (
                    np.full(pt * n_seg, -1.0),
                    (np.repeat(np.arange(pt), n_seg), np.arange(pt * n_seg)),
                ),
                shape=(pt, pt * n_seg),
            ),
        ]
    )
    matrix = sp.vstack(
        [sp.hstack([decisions, sp.coo_matrix((kept.size, pt * n_seg))]), segment_rows],
        format="csr",
    )
    row_lower = np.concatenate([program.row_lower[kept], np.full(pt, -np.inf)])
    row_upper = np.concatenate([program.row_upper[kept], first])
    cost = np.concatenate([program.cost[: 4 * pt], rises.reshape(-1)])
    cost[3 * pt : 4 * pt] += first_slope
    lower = np.concatenate([program.lower[: 4 * pt], np.zeros(pt * n_seg)])
    upper = np.concatenate([program.upper[: 4 * pt], widths.reshape(-1)])
    solution = _solve_lp(cost, matrix, row_lower, row_upper, lower, upper, limits)
    x = np.zeros(layout.size)
    x[: 4 * pt] = solution[: 4 * pt]
    return x


def _recourse(
    program: _Program, relaxed: np.ndarray, lots: np.ndarray, inputs: PlanInputs
) -> np.ndarray:
    """The relaxed plan with whole lots, its burst and unmet recomputed scenario by scenario.

    Commitments (here and now and per scenario) stay as relaxed; capacity follows the
    repaired lots; each scenario then bursts up to the cap and leaves the rest unmet, which
    is optimal for fixed capacity where burst costs less than the penalty (where a penalty
    set below the on-demand price makes it dearer, the shortfall is left unmet).
    """
    layout = program.layout
    pt, n_s = layout.pt, layout.n_scenarios
    x = relaxed.copy()
    x[:pt] = lots
    landing = program.matrix[:pt, :pt]  # -lot on landed purchases, per capacity row
    commitments = program.matrix[:pt, pt : 3 * pt]
    capacity = inputs.base_capacity.reshape(-1) - landing @ lots - commitments @ x[pt : 3 * pt]
    x[layout.off_cap : layout.off_cap + pt] = capacity
    demand = inputs.demand.reshape(pt, n_s)
    _, later_commitments = _scenario_commitments(layout, program.bundles, x)
    short = np.maximum(demand - capacity[:, None] - later_commitments.reshape(pt, n_s), 0.0)
    cap = program.upper[layout.off_burst : layout.off_unmet].reshape(pt, n_s)
    cheaper = (
        program.cost[layout.off_burst : layout.off_unmet]
        <= program.cost[layout.off_unmet : layout.off_rc1]
    ).reshape(pt, n_s)
    burst = np.where(cheaper, np.minimum(short, cap), 0.0)
    x[layout.off_burst : layout.off_unmet] = burst.reshape(-1)
    x[layout.off_unmet : layout.off_rc1] = (short - burst).reshape(-1)
    return x


def _repair(program: _Program, x: np.ndarray, inputs: PlanInputs) -> np.ndarray:
    """Round relaxed lots up, then back off the least-needed lots until every limit holds."""
    pt = program.layout.pt
    frac = x[:pt]
    lots = np.ceil(frac - 1e-6).clip(min=0)
    rows = program.matrix[:, :pt]
    limit_rows = program.limit_rows
    if limit_rows.size:
        sub = rows[limit_rows]
        upper = program.row_upper[limit_rows]
        for _ in range(int(lots.sum()) + 1):
            used = sub @ lots
            over = np.flatnonzero(used > upper + 1e-6)
            if over.size == 0:
                break
            involved = np.flatnonzero(sub[over].multiply(lots[None, :] > 0).sum(axis=0).A1 > 0)
            # Drop the lot that was least wanted (smallest fractional need).
            need = lots[involved] - frac[involved]
            lots[involved[int(np.argmax(need))]] -= 1
    del inputs
    return lots


def _lp_round(program: _Program, limits: PlanLimits, inputs: PlanInputs) -> tuple[np.ndarray, str]:
    """The LP relaxation, lots rounded up and repaired to the limits, recourse recomputed."""
    pt = program.layout.pt
    if limits.fungible or program.layout.recourse:
        relaxed = _run_lp(program, limits)
    else:  # each scenario's burst and unmet follow from its pool's capacity alone
        relaxed = _run_lp_segments(program, limits, inputs)
    lots = _repair(program, relaxed, inputs)
    if limits.fungible:
        lower, upper = program.lower.copy(), program.upper.copy()
        lower[:pt] = lots
        upper[:pt] = lots
        return _run(program, limits, lower, upper)
    return _recourse(program, relaxed, lots, inputs), ""


def solve_plan(
    inputs: PlanInputs, limits: PlanLimits | None = None, *, measure_shortfall: bool = True
) -> PlanResult:
    """Solve the two-stage procurement program and explain every pool-quarter of it.

    With ``measure_shortfall``, each kind of limit that binds is lifted in one more solve to
    say how much more budget or power the plan would use without it.
    """
    limits = limits or PlanLimits()
    began = time.perf_counter()
    program = _build(inputs, limits)
    if limits.method == "lp_round":
        x, note = _lp_round(program, limits, inputs)
    else:
        try:
            x, note = _run(program, limits, program.lower, program.upper)
        except WorkbenchError as exc:
            # HiGHS' MIP driver can stop with an internal error on a feasible program (the
            # program always is: unmet demand is a variable); the LP path still gives a plan.
            x, note = _lp_round(program, limits, inputs)
            note = "; ".join(
                filter(
                    None,
                    [
                        f"the MIP solver failed ({exc}); used the LP relaxation with whole lots",
                        note,
                    ],
                )
            )
    seconds = time.perf_counter() - began
    limit_frame = _binding_limits(program, x, inputs, limits, measure_shortfall)
    return replace(_explain(inputs, limits, program, x, seconds, limit_frame), solver_note=note)


# --------------------------------------------------------------------------------------
# Explaining a solution
# --------------------------------------------------------------------------------------
def _binding_limits(
    program: _Program,
    x: np.ndarray,
    inputs: PlanInputs,
    limits: PlanLimits,
    measure_shortfall: bool,
) -> pl.DataFrame:
    """Every limit row with its use; binding ones with what the plan without them would use."""
    rows: list[dict[str, Any]] = []
    activity = program.matrix @ x
    steps: list[float] = []
    lot_capex = [p.capex_usd * p.lot_chips for p in inputs.pools]
    smallest_capex = min(lot_capex, default=0.0)
    for t, row in enumerate(program.budget_rows.tolist()):
        rows.append(
            {
                "limit": "capex budget",
                "where": "all pools",
                "quarter": inputs.quarters[t],
                "unit": "USD",
                "limit_value": float(program.row_upper[row]),
                "used": float(activity[row]),
            }
        )
        steps.append(smallest_capex)
    for (region, t), row in program.power_rows.items():
        headroom = float(program.row_upper[row])
        limit_kw = program.power_limit_kw[(region, t)]
        rows.append(
            {
                "limit": "power",
                "where": region,
                "quarter": inputs.quarters[t],
                "unit": "MW",
                "limit_value": limit_kw / 1000,
                "used": (limit_kw - headroom + float(activity[row])) / 1000,
            }
        )
        lot_mw = [p.lot_chips * p.power_w * p.pue / 1e6 for p in inputs.pools if p.region == region]
        steps.append(min(lot_mw, default=0.0))
    schema = {
        "limit": pl.String,
        "where": pl.String,
        "quarter": pl.String,
        "unit": pl.String,
        "limit_value": pl.Float64,
        "used": pl.Float64,
    }
    frame = pl.DataFrame(rows, schema=schema)
    if frame.is_empty():
        return frame.with_columns(
            pl.lit(False).alias("binding"),
            pl.lit(None, pl.Float64).alias("wanted"),
            pl.lit(None, pl.Float64).alias("short_by"),
        )
    # A limit binds when not even the smallest lot it governs fits in what is left.
    frame = frame.with_columns(
        (pl.col("limit_value") - pl.col("used") < pl.Series(steps) - 1e-9).alias("binding")
    )
    if not frame["binding"].any() or not measure_shortfall:
        return frame.with_columns(
            pl.lit(None, pl.Float64).alias("wanted"), pl.lit(None, pl.Float64).alias("short_by")
        )
    # How far the target is out of reach: what the plan would use with no limit of that kind.
    wanted: dict[tuple[str, str, str], float] = {}
    for kind in frame.filter(pl.col("binding"))["limit"].unique().to_list():
        loose = replace(
            limits,
            capex_budget_usd=None if kind == "capex budget" else limits.capex_budget_usd,
            power_mw={} if kind == "power" else limits.power_mw,
        )
        free = solve_plan(inputs, loose, measure_shortfall=False)
        if kind == "capex budget":
            capex = np.array([p.capex_usd * p.lot_chips for p in inputs.pools])
            spend = (free.buy_lots * capex[:, None]).sum(axis=0)
            for t, q in enumerate(inputs.quarters):
                wanted[(kind, "all pools", q)] = float(spend[t])
        else:
            kw = np.array([p.power_w / 1000 * p.pue for p in inputs.pools])
            in_service = inputs.installed + inputs.on_order + _landed(free.buy_lots, inputs)
            for region in limits.power_mw:
                members = np.array([p.region == region for p in inputs.pools])
                for t, q in enumerate(inputs.quarters):
                    wanted[(kind, region, q)] = float(
                        (in_service[members, t] * kw[members, None]).sum() / 1000
                    )
    return frame.with_columns(
        pl.struct("limit", "where", "quarter")
        .map_elements(
            lambda s: wanted.get((s["limit"], s["where"], s["quarter"])), return_dtype=pl.Float64
        )
        .alias("wanted")
    ).with_columns(
        pl.when(pl.col("binding"))
        .then((pl.col("wanted") - pl.col("limit_value")).clip(lower_bound=0.0))
        .alias("short_by")
    )


def _landed(buy_lots: np.ndarray, inputs: PlanInputs) -> np.ndarray:
    """Chips of new purchases in service per pool and quarter (cumulative)."""
    out = np.zeros_like(buy_lots, dtype=float)
    n_t = len(inputs.quarters)
    for p, pool in enumerate(inputs.pools):
        d = pool.lead_quarters
        chips = buy_lots[p] * pool.lot_chips
        for tau in range(n_t):
            if tau + d < n_t:
                out[p, tau + d :] += chips[tau]
    return out


def _cents(usd: np.ndarray) -> np.ndarray:
    return np.rint(usd * 100).astype(np.int64)


def _explain(
    inputs: PlanInputs,
    limits: PlanLimits,
    program: _Program,
    x: np.ndarray,
    seconds: float,
    limit_frame: pl.DataFrame,
) -> PlanResult:
    layout = program.layout
    n_p, n_t, n_s = layout.n_pools, layout.n_quarters, layout.n_scenarios
    pt = layout.pt
    buy_lots = np.rint(x[:pt]).reshape(n_p, n_t)
    c1 = x[layout.off_c1 : layout.off_c1 + pt].reshape(n_p, n_t)
    c3 = x[layout.off_c3 : layout.off_c3 + pt].reshape(n_p, n_t)
    capacity = x[layout.off_cap : layout.off_cap + pt].reshape(n_p, n_t)
    # Capacity per scenario: later commitments differ by scenario (with recourse); the rows
    # show their expected chips.
    scenario_capacity = capacity[:, :, None] + _scenario_commitments(layout, program.bundles, x)[1]
    if layout.recourse:
        c1 = c1 + x[_bundle_columns(layout, program.bundles, layout.off_rc1)].mean(axis=2)
        c3 = c3 + x[_bundle_columns(layout, program.bundles, layout.off_rc3)].mean(axis=2)
        capacity = scenario_capacity.mean(axis=2)
    burst = x[layout.off_burst : layout.off_unmet].reshape(n_p, n_t, n_s)
    demand = inputs.demand
    if limits.fungible:
        group_unmet = x[layout.off_unmet : layout.off_rc1].reshape(layout.n_groups, n_t, n_s)
        perf = np.array([p.perf_index for p in inputs.pools])
        # A group's shortfall is shown on its pools by their own gap (in chips).
        gap = np.maximum(demand - scenario_capacity - burst, 0.0)
        gap_perf = gap * perf[:, None, None]
        group_gap = np.zeros_like(group_unmet)
        np.add.at(group_gap, program.groups, gap_perf)
        share = np.divide(
            gap_perf,
            group_gap[program.groups],
            out=np.zeros_like(gap_perf),
            where=group_gap[program.groups] > 0,
        )
        unmet = share * group_unmet[program.groups] / perf[:, None, None]
    else:
        unmet = x[layout.off_unmet : layout.off_rc1].reshape(n_p, n_t, n_s)
    unmet = np.where(unmet > 1e-6, unmet, 0.0)
    landed = _landed(buy_lots, inputs)
    active_c1 = np.zeros_like(c1)
    active_c3 = np.zeros_like(c3)
    for t in range(n_t):
        active_c1[:, t] = c1[:, max(0, t - 3) : t + 1].sum(axis=1)
        active_c3[:, t] = c3[:, max(0, t - 11) : t + 1].sum(axis=1)
    hours = HOURS_PER_QUARTER
    owned = np.array([p.owned_usd_per_chip_hour for p in inputs.pools])
    on_demand = np.array([p.on_demand_usd_per_hour for p in inputs.pools])
    c1_price = np.array([p.commit_1y_usd_per_hour or 0.0 for p in inputs.pools])
    c3_price = np.array([p.commit_3y_usd_per_hour or 0.0 for p in inputs.pools])
    penalty = _penalties(inputs.pools, limits)
    installed_all = inputs.installed + inputs.on_order
    cost_installed = _cents(installed_all * owned[:, None] * hours)
    cost_new = _cents(landed * owned[:, None] * hours)
    cost_commit = _cents((active_c1 * c1_price[:, None] + active_c3 * c3_price[:, None]) * hours)
    shares = _shortfall_shares(inputs.pools, limits)[:, None]
    cost_burst = _cents(burst.mean(axis=2) * on_demand[:, None] * hours * shares)
    penalty_cents = _cents(unmet.mean(axis=2) * penalty[:, None] * hours * shares)
    served = np.minimum(demand, scenario_capacity).mean(axis=2)
    utilization = np.divide(served, capacity, out=np.zeros_like(served), where=capacity > 0)
    shortfall = (unmet > 1e-6).mean(axis=2)
    quantiles = np.quantile(demand, [0.5, 0.9, 0.95], axis=2)
    binding = limit_frame.filter(pl.col("binding")) if limit_frame.height else limit_frame
    budget_quarters = set(binding.filter(pl.col("limit") == "capex budget")["quarter"].to_list())
    power_keys = {
        (w, q)
        for w, q in binding.filter(pl.col("limit") == "power")
        .select("where", "quarter")
        .iter_rows()
    }

    records: list[dict[str, Any]] = []
    for p, pool in enumerate(inputs.pools):
        d = pool.lead_quarters
        for t, quarter in enumerate(inputs.quarters):
            bought = int(buy_lots[p, t] * pool.lot_chips)
            land_q = inputs.quarters[t + d] if t + d < n_t else None
            gap_now = float(burst[p, t].mean() + unmet[p, t].mean())
            reasons: list[str] = []
            binds: list[str] = []
            committed = float(active_c1[p, t] + active_c3[p, t])
            ordered_by_now = {inputs.quarters[k] for k in range(0, max(0, t - d + 1))}
            if (quarter in budget_quarters and bought) or (
                gap_now > 0 and ordered_by_now & budget_quarters
            ):
                binds.append("budget")
            if (pool.region, quarter) in power_keys and (gap_now > 0 or committed > 0):
                binds.append("power")
            if t < d and (gap_now > 0 or c1[p, t] + c3[p, t] > 0):
                binds.append("lead time")
            if bought and t + d < n_t:
                need = float(np.quantile(demand[p, t + d], limits.service_level))
                surplus = float(capacity[p, t + d] - need)
                if 0 < surplus < pool.lot_chips:
                    binds.append("lot size")
            if bought:
                reasons.append(
                    f"buy {bought:,} chips ({int(buy_lots[p, t]):,} lot(s) of {pool.lot_chips:,}) "
                    f"to serve from {land_q} ({pool.lead_time_weeks:g}-week lead time)"
                )
            new_commit = c1[p, t] + c3[p, t]
            if new_commit > 0.5:
                reasons.append(
                    f"commit {c1[p, t]:,.0f} chips for 1 year and {c3[p, t]:,.0f} for 3 years"
                )
            if burst[p, t].mean() > 0.5:
                reasons.append(
                    f"burst {burst[p, t].mean():,.0f} chips on demand on average "
                    f"(at most {burst[p, t].max():,.0f})"
                )
            if shortfall[p, t] > 0:
                reasons.append(
                    f"short in {shortfall[p, t]:.0%} of scenarios "
                    f"({unmet[p, t].mean():,.0f} chips expected)"
                )
            reasons.append(
                f"p95 demand {quantiles[2, p, t]:,.0f} vs capacity {capacity[p, t]:,.0f}"
            )
            if t < d:
                first = inputs.quarters[d] if d < n_t else "the horizon's end"
                reasons.append(f"no new purchase serves before {first}")
            if binds:
                reasons.append("binding: " + ", ".join(binds))
            if inputs.extrapolated and inputs.extrapolated[t]:
                reasons.append("demand extrapolated beyond the forecast")
            records.append(
                {
                    "accelerator": pool.accelerator,
                    "region": pool.region,
                    "quarter": quarter,
                    "extrapolated": bool(inputs.extrapolated[t]) if inputs.extrapolated else False,
                    "demand_p50": float(quantiles[0, p, t]),
                    "demand_p90": float(quantiles[1, p, t]),
                    "demand_p95": float(quantiles[2, p, t]),
                    "installed": float(inputs.installed[p, t]),
                    "on_order": float(inputs.on_order[p, t]),
                    "buy_chips": bought,
                    "buy_lots": int(buy_lots[p, t]),
                    "lands_in": land_q,
                    "landed_chips": float(landed[p, t]),
                    "commit_1y_chips": float(c1[p, t]),
                    "commit_3y_chips": float(c3[p, t]),
                    "committed_chips": float(active_c1[p, t] + active_c3[p, t]),
                    "capacity": float(capacity[p, t]),
                    "burst_mean": float(burst[p, t].mean()),
                    "burst_max": float(burst[p, t].max()),
                    "unmet_mean": float(unmet[p, t].mean()),
                    "shortfall_probability": float(shortfall[p, t]),
                    "utilization": float(utilization[p, t]),
                    "installed_cost_cents": int(cost_installed[p, t]),
                    "new_owned_cost_cents": int(cost_new[p, t]),
                    "commit_cost_cents": int(cost_commit[p, t]),
                    "burst_cost_cents": int(cost_burst[p, t]),
                    "unmet_penalty_cents": int(penalty_cents[p, t]),
                    "binding": ", ".join(binds) if binds else "cost",
                    "rationale": "; ".join(reasons),
                }
            )
    rows = pl.DataFrame(records).with_columns(
        (
            pl.col("installed_cost_cents")
            + pl.col("new_owned_cost_cents")
            + pl.col("commit_cost_cents")
            + pl.col("burst_cost_cents")
        ).alias("cost_cents")
    )
    attached = _attached(inputs, buy_lots)
    objective = float(program.cost @ x)
    status = "ok"
    if limit_frame.height and limit_frame["binding"].any():
        status = "limited"
    return PlanResult(
        rows=rows,
        limits=limit_frame,
        attached=attached,
        method=limits.method,
        solve_seconds=seconds,
        objective_usd=objective,
        status=status,
        buy_lots=buy_lots,
        commit_1y=c1,
        commit_3y=c3,
        capacity=capacity,
        burst=burst,
        unmet=unmet,
    )


def _attached(inputs: PlanInputs, buy_lots: np.ndarray) -> pl.DataFrame:
    """Host cores, storage and network the purchases need, per region and landing quarter."""
    records = []
    n_t = len(inputs.quarters)
    for p, pool in enumerate(inputs.pools):
        for t in range(n_t):
            land = t + pool.lead_quarters
            chips = buy_lots[p, t] * pool.lot_chips
            if chips <= 0 or land >= n_t:
                continue
            records.append(
                {
                    "region": pool.region,
                    "quarter": inputs.quarters[land],
                    "new_chips": float(chips),
                    "host_cores": chips * pool.host_cores_per_chip,
                    "storage_tb": chips * pool.storage_tb_per_chip,
                    "network_gbps": chips * pool.network_gbps_per_chip,
                    "power_mw": chips * pool.power_w * pool.pue / 1e6,
                }
            )
    schema = {
        "region": pl.String,
        "quarter": pl.String,
        "new_chips": pl.Float64,
        "host_cores": pl.Float64,
        "storage_tb": pl.Float64,
        "network_gbps": pl.Float64,
        "power_mw": pl.Float64,
    }
    frame = pl.DataFrame(records, schema=schema)
    return frame.group_by("region", "quarter").agg(pl.all().sum()).sort("region", "quarter")
