"""Procurement solve time against pools and scenarios (``make bench-plan``).

A synthetic fleet: pools in 4 regions with the sample price book's spread of prices, lead
times (8-36 weeks) and lots (8-256 chips); demand grows 5-20% a quarter with lognormal
scenario noise that persists along each path. Every pool has the 4 supply options (owned
purchases, 1-year and 3-year commitments, on-demand burst) and a capex budget and a power
budget per region that bind in some quarters. Prints a Markdown table: size, method, solve
seconds (build + HiGHS + explanation), expected cost, and the LP-and-repair plan's cost
against the MILP's.

    python benchmarks/plan_bench.py                  # the README table
    python benchmarks/plan_bench.py --pools 200 --scenarios 100 --methods lp_round
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from workbench.procurement import PlanInputs, PlanLimits, PoolSpec, solve_plan

REGIONS = ("us-central1", "us-east4", "europe-west4", "asia-northeast1")
LEADS = (8, 12, 20, 24, 26, 30, 36)
LOTS = (8, 32, 64, 256)


def synthetic(n_pools: int, n_quarters: int, n_scenarios: int, seed: int = 0) -> PlanInputs:
    rng = np.random.default_rng(seed)
    pools = []
    for i in range(n_pools):
        owned = rng.uniform(0.4, 1.6)
        on_demand = owned * rng.uniform(4, 8)
        pools.append(
            PoolSpec(
                accelerator=f"sku{i // len(REGIONS)}",
                region=REGIONS[i % len(REGIONS)],
                family=f"family{i % 5}",
                perf_index=float(rng.uniform(1, 8)),
                power_w=float(rng.choice((300, 400, 700, 1000))),
                pue=float(rng.uniform(1.1, 1.4)),
                lot_chips=int(rng.choice(LOTS)),
                lead_time_weeks=float(rng.choice(LEADS)),
                capex_usd=owned * 6 * 8760 * 0.6,
                owned_usd_per_chip_hour=owned,
                on_demand_usd_per_hour=on_demand,
                commit_1y_usd_per_hour=on_demand * 0.63,
                commit_3y_usd_per_hour=on_demand * 0.45,
                burst_cap_chips=0.0,
            )
        )
    level = rng.uniform(200, 5000, n_pools)
    growth = rng.uniform(1.05, 1.2, n_pools)
    installed = np.repeat((level * rng.uniform(0.7, 1.0))[:, None], n_quarters, axis=1)
    # Scenario noise last and from its own stream: the same fleet at every scenario count.
    noise = np.random.default_rng(seed + 1)
    steps = noise.normal(0, 0.06, (n_pools, n_quarters, n_scenarios)).cumsum(axis=1)
    trend = level[:, None] * growth[:, None] ** np.arange(n_quarters)[None, :]
    demand = trend[:, :, None] * np.exp(steps)
    pools = [
        PoolSpec(**{**p.__dict__, "burst_cap_chips": 0.25 * installed[k, 0]})
        for k, p in enumerate(pools)
    ]
    return PlanInputs(
        quarters=tuple(f"Q{t + 1}" for t in range(n_quarters)),
        pools=tuple(pools),
        installed=installed,
        on_order=np.zeros((n_pools, n_quarters)),
        healthy_ratio=np.full(n_pools, 0.98),
        demand=demand,
    )


def limits_for(inputs: PlanInputs, method: str, time_limit: float) -> PlanLimits:
    """A capex budget at 30% of what growth needs, and power at 110% of today's."""
    growth_capex = sum(
        p.capex_usd * float(inputs.demand[i, -1].mean() - inputs.installed[i, 0])
        for i, p in enumerate(inputs.pools)
    ) / len(inputs.quarters)
    power: dict[str, float] = {}
    for i, p in enumerate(inputs.pools):
        power[p.region] = (
            power.get(p.region, 0.0) + inputs.installed[i, 0] * p.power_w * p.pue / 1e6 * 1.1
        )
    return PlanLimits(
        capex_budget_usd=0.3 * max(growth_capex, 1.0),
        power_mw=power,
        method=method,
        time_limit_s=time_limit,
    )


def run(
    n_pools: int, n_quarters: int, n_scenarios: int, method: str, time_limit: float
) -> dict[str, float | str]:
    inputs = synthetic(n_pools, n_quarters, n_scenarios)
    limits = limits_for(inputs, method, time_limit)
    began = time.perf_counter()
    # The solve alone; naming how far a binding limit falls short costs one more solve.
    result = solve_plan(inputs, limits, measure_shortfall=False)
    seconds = time.perf_counter() - began
    return {
        "pools": n_pools,
        "quarters": n_quarters,
        "scenarios": n_scenarios,
        "method": method,
        "seconds": seconds,
        "solver_seconds": result.solve_seconds,
        "objective": result.objective_usd,
        "note": result.solver_note,
        "binding": int(result.limits["binding"].sum()) if result.limits.height else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pools", type=int, nargs="*", default=[25, 50, 100, 200])
    parser.add_argument("--scenarios", type=int, nargs="*", default=[25, 50, 100])
    parser.add_argument("--quarters", type=int, default=12)
    parser.add_argument("--methods", default="lp_round,milp")
    parser.add_argument("--time-limit", type=float, default=30.0)
    args = parser.parse_args()
    methods = args.methods.split(",")
    sizes = [(p, max(args.scenarios)) for p in args.pools] + [
        (max(args.pools), s) for s in args.scenarios if s != max(args.scenarios)
    ]
    print(
        "| pools | quarters | scenarios | method | seconds | of which build, HiGHS, repair | "
        "objective (USD) | vs MILP | binding limits | note |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for n_pools, n_scenarios in sizes:
        found = {}
        for method in methods:
            found[method] = run(n_pools, args.quarters, n_scenarios, method, args.time_limit)
        for method, row in found.items():
            versus = ""
            if "milp" in found and method != "milp":
                versus = f"{float(row['objective']) / float(found['milp']['objective']) - 1:+.2%}"
            print(
                f"| {n_pools} | {args.quarters} | {n_scenarios} | {method} | "
                f"{float(row['seconds']):.2f} | {float(row['solver_seconds']):.2f} | "
                f"{float(row['objective']):,.0f} | {versus} | {row['binding']} | {row['note']} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
