"""A seeded generator of a realistic accelerator fleet and its raw exports.

``generate_sample_fleet(out, scale="small", seed=7)`` writes scheduler job records,
utilization metrics, FOCUS billing, inventory, orders, events, allocations, a SKU catalog and
a price book, each with the defects real exports carry, plus a ``truth/`` folder with the
unconstrained demand and the exact usage the exports encode. The same scale and seed always
give byte-identical files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench.sample_fleet.demand import Scale, simulate_fleet
from workbench.sample_fleet.exports import write_exports
from workbench.sample_fleet.jobs import generate_jobs
from workbench.sample_fleet.readme import write_readme

__all__ = ["Scale", "generate_sample_fleet"]


def generate_sample_fleet(out: Path, *, scale: str = "small", seed: int = 7) -> dict[str, Any]:
    """Generate the sample fleet into ``out`` and return a summary of what was written."""
    preset = Scale.named(scale)
    out.mkdir(parents=True, exist_ok=True)
    fleet = simulate_fleet(preset, seed)
    jobs = generate_jobs(fleet, np.random.default_rng([seed, 1]))
    summary = write_exports(out, fleet, jobs, preset, seed, np.random.default_rng([seed, 2]))
    write_readme(out, summary)
    return summary
