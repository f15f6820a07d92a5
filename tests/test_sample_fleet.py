"""The seeded sample fleet: byte-identical for a seed, equal to the committed data_samples/,
and realistic enough to plan on (growth, weekly and year-end cycles, censoring, late orders)."""

from __future__ import annotations

import gzip
import io
import json
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from workbench.catalog import load_price_book
from workbench.sample_fleet import generate_sample_fleet

HISTORY_START = date(2023, 11, 1)
HISTORY_END = date(2026, 10, 31)


def relative_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def differing_files(left: Path, right: Path) -> list[str]:
    """Files present in only one folder, or whose bytes differ."""
    left_files, right_files = relative_files(left), relative_files(right)
    only = sorted(left_files ^ right_files)
    changed = sorted(
        name
        for name in left_files & right_files
        if (left / name).read_bytes() != (right / name).read_bytes()
    )
    return only + changed


@pytest.fixture(scope="module")
def demand(sample_dir: Path) -> pl.DataFrame:
    """Ground-truth demand of the committed fleet, history days only."""
    return pl.read_parquet(sample_dir / "truth" / "demand_daily.parquet").filter("in_history")


@pytest.fixture(scope="module")
def daily_total(demand: pl.DataFrame) -> pl.DataFrame:
    return demand.group_by("date").agg(pl.col("demand_chip_hours").sum()).sort("date")


# -- determinism ----------------------------------------------------------------------------


def test_the_committed_sample_equals_the_generator_output_byte_for_byte(
    generated_fleet, sample_dir
):
    generated = relative_files(generated_fleet.path)
    assert "jobs/jobs.csv.gz" in generated
    assert len(generated) >= 15
    assert differing_files(generated_fleet.path, sample_dir) == [], (
        "data_samples/ drifted from the generator: regenerate it on purpose with "
        "'workbench sample-fleet --scale small --seed 7 --out data_samples'"
    )


def test_generating_twice_gives_byte_identical_files(generated_fleet, tmp_path):
    summary = generate_sample_fleet(tmp_path / "again", scale="small", seed=7)
    assert summary == generated_fleet.summary
    assert differing_files(generated_fleet.path, tmp_path / "again") == []


def test_a_different_seed_gives_different_jobs(generated_fleet, tmp_path):
    other = tmp_path / "seed8"
    generate_sample_fleet(other, scale="small", seed=8)
    assert relative_files(other) == relative_files(generated_fleet.path)
    seven = gzip.decompress((generated_fleet.path / "jobs" / "jobs.csv.gz").read_bytes())
    eight = gzip.decompress((other / "jobs" / "jobs.csv.gz").read_bytes())
    assert seven.splitlines()[0] == eight.splitlines()[0], "same header"
    assert seven != eight
    shared = set(seven.splitlines()[1:]) & set(eight.splitlines()[1:])
    assert len(shared) < 0.01 * len(seven.splitlines())


def test_an_unknown_scale_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        generate_sample_fleet(tmp_path, scale="huge", seed=7)


def test_the_summary_and_readme_match_the_files(generated_fleet, sample_dir):
    summary = json.loads((sample_dir / "truth" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(generated_fleet.summary, default=str))
    with gzip.open(sample_dir / "jobs" / "jobs.csv.gz", "rt") as handle:
        lines = handle.read().splitlines()
    defects = pl.read_csv(sample_dir / "truth" / "defects.csv")
    extra_lines = defects.filter(pl.col("line").is_not_null()).height
    assert len(lines) - 1 == summary["jobs"] + extra_lines
    readme = (sample_dir / "README.md").read_text()
    assert f"{summary['jobs']:,} job records" in readme
    assert "--seed 7" in readme


# -- realism ---------------------------------------------------------------------------------


def test_the_fleet_has_gpus_tpus_regions_and_teams(demand, sample_dir):
    accelerators = set(demand["accelerator"])
    assert len(accelerators) >= 8
    assert {"h100-80gb", "b200-180gb"} <= accelerators
    assert any(a.startswith("tpu-") for a in accelerators)
    assert demand["region"].n_unique() >= 4
    assert demand["team"].n_unique() >= 15
    assert set(demand["workload"]) == {"training", "serving", "research", "batch"}
    catalog = (sample_dir / "catalog" / "sku_catalog.toml").read_text()
    for accelerator in accelerators:
        assert f'id = "{accelerator}"' in catalog


def test_history_is_three_years_of_days(demand, daily_total):
    assert demand["date"].min() == HISTORY_START
    assert demand["date"].max() == HISTORY_END
    assert daily_total.height == (HISTORY_END - HISTORY_START).days + 1
    assert daily_total.height >= 3 * 365


def test_demand_roughly_doubles_yearly(daily_total):
    end = daily_total["date"].max()

    def window_total(last_day: date) -> float:
        window = daily_total.filter(
            (pl.col("date") > last_day - timedelta(days=90)) & (pl.col("date") <= last_day)
        )
        assert window.height == 90
        return float(window["demand_chip_hours"].sum())

    ratio = window_total(end) / window_total(end - timedelta(days=365))
    assert 1.5 < ratio < 3.0, ratio


def _weekend_ratio(demand: pl.DataFrame, workload: str) -> float:
    by_kind = (
        demand.filter(pl.col("workload") == workload)
        .group_by("date")
        .agg(pl.col("demand_chip_hours").sum())
        .group_by(weekend=pl.col("date").dt.weekday() >= 6)
        .agg(pl.col("demand_chip_hours").mean())
    )
    means = dict(by_kind.iter_rows())
    return means[True] / means[False]


@pytest.mark.parametrize("workload", ["research", "batch"])
def test_research_and_batch_dip_at_weekends(demand, workload):
    assert _weekend_ratio(demand, workload) < 0.8


def test_serving_is_flat_over_the_week(demand):
    assert 0.93 < _weekend_ratio(demand, "serving") < 1.07


@pytest.mark.parametrize("year", [2023, 2024, 2025])
def test_demand_dips_over_the_year_end(daily_total, year):
    def mean(first: date, last: date) -> float:
        days = daily_total.filter(pl.col("date").is_between(first, last))
        return float(days["demand_chip_hours"].sum()) / days.height

    holidays = mean(date(year, 12, 24), date(year + 1, 1, 1))
    around = (
        mean(date(year, 12, 1), date(year, 12, 14))
        + mean(date(year + 1, 1, 8), date(year + 1, 1, 21))
    ) / 2
    assert holidays < 0.95 * around


def test_b200_is_new_with_only_weeks_of_history(demand):
    b200 = demand.filter(pl.col("accelerator") == "b200-180gb")
    days = b200["date"].n_unique()
    assert 14 <= days <= 9 * 7, days
    assert b200["used_chip_hours"].sum() > 0
    h100_days = demand.filter(pl.col("accelerator") == "h100-80gb")["date"].n_unique()
    assert h100_days > 10 * days


def test_full_pools_exist_and_their_jobs_queue(demand):
    full = demand.filter("pool_full")
    assert full.height > 0
    assert full["queued_chip_hours"].sum() > 0
    assert full.filter(pl.col("queued_chip_hours") > 0).height > 0.95 * full.height
    assert demand.filter(~pl.col("pool_full"))["queued_chip_hours"].max() == 0
    # Censoring: on full days usage is below demand.
    assert (full["used_chip_hours"] < full["demand_chip_hours"]).all()


def test_some_orders_are_delivered_late(sample_dir):
    orders = pl.read_csv(sample_dir / "orders" / "orders.csv", try_parse_dates=True)
    assert set(orders["status"]) <= {"open", "delivered", "cancelled"}
    delivered = orders.filter(pl.col("status") == "delivered")
    assert delivered.height > 0
    late = delivered.filter(pl.col("delivered_on") > pl.col("expected_on") + timedelta(days=7))
    assert 0 < late.height < delivered.height
    assert orders.filter(pl.col("status") == "open").height > 0


def test_inventory_grows_in_steps_of_whole_purchase_lots(sample_dir, catalog):
    lots = dict(
        load_price_book(sample_dir / "catalog" / "price_book.toml", catalog)
        .select("accelerator", "min_order_chips")
        .unique()
        .iter_rows()
    )
    inventory = pl.read_csv(sample_dir / "inventory" / "inventory.csv", try_parse_dates=True)
    assert (inventory["healthy_chips"] <= inventory["installed_chips"]).all()
    steps = (
        inventory.sort("date")
        .with_columns(pl.col("installed_chips").diff().over("accelerator", "region").alias("step"))
        .drop_nulls("step")
    )
    assert steps["step"].min() == 0, "installed chips never go down"
    rises = steps.filter(pl.col("step") > 0)
    assert 0 < rises.height < 0.2 * steps.height, "growth comes in a few steps, not daily"
    for accelerator, step in rises.select("accelerator", "step").iter_rows():
        assert step % lots[accelerator] == 0, (accelerator, step)


def test_the_jobs_export_carries_aliases_and_local_offsets(sample_dir):
    with gzip.open(sample_dir / "jobs" / "jobs.csv.gz", "rb") as handle:
        jobs = pl.read_csv(io.BytesIO(handle.read()), infer_schema=False)
    assert jobs.filter(pl.col("start_time").str.ends_with("+09:00")).height > 0
    assert jobs.filter(pl.col("accelerator") == "NVIDIA H100 80GB HBM3").height > 0
