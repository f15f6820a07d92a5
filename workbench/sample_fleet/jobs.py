"""Scheduler job records that realize the simulated usage exactly.

Each series runs its chips in *lanes* of one job size. On a day where a series uses ``n``
lanes' worth of chips, ``floor(n)`` lanes are busy all day and one more runs a single job
for the fractional part. Busy lanes form runs of consecutive days, cut into back-to-back
jobs at random instants, so jobs cross midnight and last minutes to days. Because a busy
lane covers whole days, the chip-hours of each day are known exactly without splitting any
job: the ground truth does not depend on the code it is used to test.

On a day when the series' pool is full, jobs that start after midnight were submitted
earlier and waited, within the same day, for the unmet chip-hours of that day. Queued
chip-hours are therefore zero on every day the pool had room, and positive on full days
except where no job of the series started after midnight (rare: its lanes ran all day).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.sample_fleet.demand import Fleet

__all__ = ["JobSet", "generate_jobs"]

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class JobSet:
    """Clean jobs (epoch seconds) and the exact daily truth they realize."""

    series: np.ndarray
    submit: np.ndarray
    start: np.ndarray
    end: np.ndarray
    chips: np.ndarray
    used_chip_hours: np.ndarray
    """(series, history day) chip-hours run, exact."""
    queued_chip_hours: np.ndarray
    """(series, history day) chip-hours waited, exact."""


def generate_jobs(fleet: Fleet, rng: np.random.Generator) -> JobSet:
    """Generate job records whose day totals equal the fleet's used and queued chip-hours."""
    n_series = len(fleet.series)
    n_days = fleet.history_days
    epoch0 = int(fleet.days[0].astype("datetime64[s]").astype(np.int64))
    used = fleet.used_chips[:, :n_days]
    unmet = (fleet.demand_chips[:, :n_days] - used) * 24.0
    chips = np.array([s.job_chips for s in fleet.series], dtype=np.int64)
    mean_seconds = np.array([s.job_hours * 3600.0 for s in fleet.series])
    lanes = used / chips[:, None]
    full = np.floor(lanes).astype(np.int64)
    partial_seconds = np.rint((lanes - full) * SECONDS_PER_DAY).astype(np.int64)
    partial_seconds[partial_seconds < 60] = 0  # a job shorter than a minute is not recorded

    # Runs of consecutive busy days, per series and lane.
    run_series: list[np.ndarray] = []
    run_first: list[np.ndarray] = []
    run_last: list[np.ndarray] = []
    for s in range(n_series):
        top = int(full[s].max(initial=0))
        for lane in range(top):
            busy = np.concatenate(([0], (full[s] > lane).astype(np.int8), [0]))
            edges = np.diff(busy)
            firsts = np.flatnonzero(edges == 1)
            lasts = np.flatnonzero(edges == -1) - 1
            run_series.append(np.full(firsts.size, s))
            run_first.append(firsts)
            run_last.append(lasts)
    r_series = np.concatenate(run_series) if run_series else np.zeros(0, np.int64)
    r_first = np.concatenate(run_first) if run_first else np.zeros(0, np.int64)
    r_last = np.concatenate(run_last) if run_last else np.zeros(0, np.int64)
    r_length = (r_last - r_first + 1) * SECONDS_PER_DAY
    cuts_per_run = rng.poisson(r_length / mean_seconds[r_series])
    total_cuts = int(cuts_per_run.sum())
    cut_run = np.repeat(np.arange(r_series.size), cuts_per_run)
    cut_at = np.floor(rng.random(total_cuts) * r_length[cut_run]).astype(np.int64)
    # Boundaries of each run: 0, its sorted interior cuts, its length.
    bound_run = np.concatenate([np.arange(r_series.size), cut_run, np.arange(r_series.size)])
    bound_at = np.concatenate([np.zeros(r_series.size, np.int64), cut_at, r_length])
    order = np.lexsort((bound_at, bound_run))
    bound_run, bound_at = bound_run[order], bound_at[order]
    is_job_start = np.ones(bound_run.size, bool)
    is_job_start[-1] = False
    is_job_start[:-1] = bound_run[:-1] == bound_run[1:]
    job_run = bound_run[is_job_start]
    offset_start = bound_at[is_job_start]
    offset_end = bound_at[np.flatnonzero(is_job_start) + 1]
    keep = offset_end > offset_start
    job_run, offset_start, offset_end = job_run[keep], offset_start[keep], offset_end[keep]
    run_origin = epoch0 + r_first * SECONDS_PER_DAY
    full_series = r_series[job_run]
    full_start = run_origin[job_run] + offset_start
    full_end = run_origin[job_run] + offset_end

    # One job per series-day for the fractional lane.
    p_series, p_day = np.nonzero(partial_seconds)
    p_duration = partial_seconds[p_series, p_day]
    p_offset = np.floor(rng.random(p_series.size) * (SECONDS_PER_DAY - p_duration + 1)).astype(
        np.int64
    )
    p_start = epoch0 + p_day * SECONDS_PER_DAY + p_offset
    p_end = p_start + p_duration

    series = np.concatenate([full_series, p_series])
    start = np.concatenate([full_start, p_start])
    end = np.concatenate([full_end, p_end])
    job_chips = chips[series]

    # Waits on full days: every job starting after midnight waited the same share of its
    # start's offset into the day, the share chosen so the day's waits meet the unmet demand.
    start_day = (start - epoch0) // SECONDS_PER_DAY
    into_day = (start - epoch0) - start_day * SECONDS_PER_DAY
    cell = series * n_days + start_day
    weight = np.bincount(cell, weights=job_chips * into_day / 3600.0, minlength=n_series * n_days)
    unmet_flat = np.where(unmet > 1e-9, unmet, 0.0).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(weight > 0, np.minimum(1.0, unmet_flat / weight), 0.0)
    wait = np.floor(share[cell] * into_day).astype(np.int64)
    submit = start - wait

    used_truth = (full * chips[:, None] * 24).astype(np.float64) + (
        partial_seconds * chips[:, None] / 3600.0
    )
    queued_truth = np.bincount(cell, weights=job_chips * wait / 3600.0, minlength=n_series * n_days)
    order = np.lexsort((series, start, submit))
    return JobSet(
        series=series[order],
        submit=submit[order],
        start=start[order],
        end=end[order],
        chips=job_chips[order],
        used_chip_hours=used_truth,
        queued_chip_hours=queued_truth.reshape(n_series, n_days),
    )
