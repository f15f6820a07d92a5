"""``workbench costs`` and ``workbench tco`` on the ingested sample fleet (with its bill)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.test_cli import invoke, run_workbench
from workbench import cli
from workbench.ingest import ingest
from workbench.store import Workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    monkeypatch.setattr(cli.console, "width", 200)


@pytest.fixture(scope="module")
def billed_workspace(sample_workspace, tmp_path_factory) -> Workspace:
    """The sample workspace plus the sample FOCUS bill (module-wide; do not change it)."""
    target = tmp_path_factory.mktemp("costs") / "workspace"
    shutil.copytree(sample_workspace.workspace.root, target)
    workspace = Workspace(target)
    ingest(workspace, "billing", [ROOT / "data_samples" / "billing" / "focus_billing.csv"])
    return workspace


@pytest.fixture
def billed_copy(billed_workspace, tmp_path) -> Workspace:
    target = tmp_path / "workspace"
    shutil.copytree(billed_workspace.root, target)
    return Workspace(target)


def dollars(text: str) -> int:
    return int(text.replace("$", "").replace(",", "").replace(".", ""))


def test_costs_by_team_and_accelerator_prints_a_table_that_reconciles_and_writes_files(
    billed_copy, tmp_path
):
    out = tmp_path / "exports"
    result = invoke(
        "costs",
        "--by",
        "team,accelerator",
        "--month",
        "2026-10",
        "--workspace",
        str(billed_copy.root),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Costs 2026-10 by team, accelerator" in text
    assert re.search(
        r"search-ranking\s+tpu-v6e\s+[\d,]+\s+[\d,]+\s+[\d,]+\s+\d+%\s+\$[\d,]+\.\d\d", text
    )
    assert "(idle)" in text
    # The reconciliation line, and its figures add up.
    line = re.search(
        r"teams (\$[\d,.]+) \+ idle (\$[\d,.]+) = (\$[\d,.]+) = pool cost (\$[\d,.]+) "
        r"\(owned (\$[\d,.]+) \+ cloud (\$[\d,.]+)\)",
        text,
    )
    assert line, text
    teams, idle, total, pool, owned, cloud = (dollars(g) for g in line.groups())
    assert teams + idle == total == pool == owned + cloud
    waste = re.search(
        r"cloud part (\$[\d,.]+) \(usage (\$[\d,.]+) \+ commitment waste (\$[\d,.]+)\) = "
        r"billing EffectiveCost (\$[\d,.]+)",
        text,
    )
    assert waste, text
    part, used, wasted, billed = (dollars(g) for g in waste.groups())
    assert part == used + wasted == billed == cloud
    bill = billed_copy.read_table("billing").filter(
        pl.col("ChargePeriodStart").dt.strftime("%Y-%m") == "2026-10"
    )
    assert billed == round(bill["EffectiveCost"].sum() * 100)
    assert wasted == round(
        bill.filter(pl.col("CommitmentDiscountStatus") == "Unused")["EffectiveCost"].sum() * 100
    )
    assert "balanced" in text and "NOT BALANCED" not in text
    assert "oversubscribe" not in text or "exactly the pool cost" in text

    # Written twice: into a costs run and into --out, as CSV and Parquet.
    (run,) = billed_copy.runs("costs")
    assert {"costs", "cost_cells", "cost_pools"} <= set(run.outputs())
    assert (run.path / "costs.csv").exists()
    assert run.manifest["config"]["months"] == ["2026-10"]
    assert len(run.manifest["inputs"]) == 5
    reconciliation = json.loads((run.path / "reconciliation.json").read_text())
    assert reconciliation["months"][0]["balanced"] is True
    exported = pl.read_parquet(out / "costs.parquet")
    assert exported.equals(run.read("costs"))
    assert pl.read_csv(out / "costs.csv").height == exported.height
    assert exported.columns[:2] == ["team", "accelerator"]
    assert round(float(exported["total_usd"].sum()) * 100) == pool
    assert f"Run {run.run_id} committed" in text


def test_shared_idle_shows_an_idle_share_and_no_idle_line(billed_copy):
    result = invoke(
        "costs",
        "--by",
        "team",
        "--month",
        "2026-10",
        "--idle",
        "shared",
        "--workspace",
        str(billed_copy.root),
    )
    assert result.exit_code == 0, result.output
    assert "idle" in result.output and "share" in result.output
    assert "+ idle $0.00 =" in result.output
    assert not re.search(r"^\(idle\)", result.output, re.MULTILINE)


def test_a_month_range_prints_one_reconciliation_per_month(billed_copy):
    result = invoke(
        "costs",
        "--by",
        "month,region",
        "--month",
        "2026-08..2026-10",
        "--workspace",
        str(billed_copy.root),
    )
    assert result.exit_code == 0, result.output
    for month in ("2026-08", "2026-09", "2026-10"):
        assert f"Reconciliation {month} (balanced)" in result.output


def test_costs_default_to_the_latest_month_with_usage(billed_copy):
    result = invoke("costs", "--by", "accelerator", "--workspace", str(billed_copy.root))
    assert result.exit_code == 0, result.output
    assert "Costs 2026-10 by accelerator" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--month", "October"), "field '--month': 'October' is not a month"),
        (("--by", "team,colour"), "field '--by': cannot break costs down by 'colour'"),
        (("--idle", "sometimes"), "field '--idle'"),
    ],
)
def test_bad_options_are_one_line_errors(billed_workspace, args, words):
    result = run_workbench("costs", *args, "--workspace", str(billed_workspace.root))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert words in result.stderr


def test_a_missing_price_for_a_pool_in_use_stops_with_accelerator_region_and_field(billed_copy):
    book = billed_copy.read_table("price_book")
    billed_copy.write_table(
        "price_book",
        book.filter(~((pl.col("accelerator") == "h100-80gb") & (pl.col("region") == "us-east4"))),
    )
    result = run_workbench("costs", "--month", "2026-10", "--workspace", str(billed_copy.root))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "accelerator 'h100-80gb'" in line
    assert "region 'us-east4'" in line
    assert "field 'capex_usd'" in line
    assert billed_copy.runs("costs") == []


def test_a_negative_price_stops_tco_naming_the_field(billed_copy):
    book = billed_copy.read_table("price_book")
    billed_copy.write_table(
        "price_book",
        book.with_columns(
            pl.when(pl.col("accelerator") == "l4-24gb")
            .then(-0.5)
            .otherwise(pl.col("on_demand_usd_per_hour"))
            .alias("on_demand_usd_per_hour")
        ),
    )
    result = run_workbench("tco", "--workspace", str(billed_copy.root))
    assert result.returncode == 2, result.stderr
    assert "field 'on_demand_usd_per_hour'" in result.stderr
    assert "'l4-24gb'" in result.stderr and "region '" in result.stderr
    assert "negative" in result.stderr


def test_tco_prints_components_and_break_evens_for_every_pool(billed_workspace):
    result = invoke("tco", "--workspace", str(billed_workspace.root))
    assert result.exit_code == 0, result.output
    text = result.output
    for header in ("capex", "power", "facility", "network", "owned", "break-even"):
        assert header in text
    # H100 in us-central1: $1.062 owned per installed chip-hour, $1.771 per used at 60%,
    # break-even 15.2% against $6.98 on demand (see test_tco for the hand computation).
    assert re.search(
        r"h100-80gb\s+us-central1\s+700\s+\$0\.628\s+\$0\.055\s+\$0\.134\s+\$0\.094\s+\$0\.151\s+"
        r"\$1\.062\s+\$1\.771\s+\$6\.980\s+\$4\.400\s+\$3\.140\s+15\.2%\s+24\.1%\s+33\.8%",
        text,
    ), text
    assert len(re.findall(r"^(a100|b200|h100|h200|l4|tpu)", text, re.MULTILINE)) == 32
    assert "Prices as of 2026-09-30" in text


def test_tco_filters_by_alias_and_region_and_shows_the_sensitivity(billed_workspace):
    result = invoke(
        "tco",
        "--accelerator",
        "H100 SXM",
        "--region",
        "us-east4",
        "--utilization",
        "0.8",
        "--sensitivity",
        "--workspace",
        str(billed_workspace.root),
    )
    assert result.exit_code == 0, result.output
    rows = re.findall(r"^h100-80gb\s+us-east4\s", result.output, re.MULTILINE)
    assert len(rows) == 1 + 5  # the cost row and five drivers
    assert "at 80% utilization" in result.output
    for driver in ("utilization", "depreciation life", "capex", "power price", "PUE"):
        assert driver in result.output


def test_tco_refuses_an_unknown_accelerator(billed_workspace):
    result = run_workbench(
        "tco", "--accelerator", "MI300X", "--workspace", str(billed_workspace.root)
    )
    assert result.returncode == 2
    assert "unknown accelerator 'MI300X'" in result.stderr
    assert "field '--accelerator'" in result.stderr
