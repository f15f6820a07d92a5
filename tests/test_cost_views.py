"""Finance's views of a showback: totals, the monthly trend and treemap nodes, each checked
against the showback's own breakdown and reconciliation (the oracle)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl
import pytest

from tests.test_cli_costs import billed_workspace  # noqa: F401  (module fixture)
from workbench.cost_views import (
    cost_totals,
    monthly_trend,
    slice_showback,
    treemap_nodes,
    usage_months,
)
from workbench.showback import IDLE, Showback, ShowbackPolicy, breakdown, reconcile, showback
from workbench.store import Workspace

MONTHS = [date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1)]


def _showback(workspace: Workspace, policy: ShowbackPolicy) -> Showback:
    return showback(
        workspace.read_table("usage_daily"),
        workspace.read_table("inventory"),
        workspace.read_table("billing"),
        workspace.read_table("price_book"),
        workspace.read_table("sku_catalog"),
        MONTHS,
        policy,
    )


@pytest.fixture(scope="module")
def separate(billed_workspace: Workspace) -> Showback:  # noqa: F811
    return _showback(billed_workspace, ShowbackPolicy())


@pytest.fixture(scope="module")
def shared(billed_workspace: Workspace) -> Showback:  # noqa: F811
    return _showback(billed_workspace, ShowbackPolicy(idle="shared"))


def test_totals_match_the_breakdown_and_the_reconciliation(separate: Showback) -> None:
    totals = cost_totals(separate)
    whole = breakdown(separate, []).row(0, named=True)
    assert totals.total_usd == whole["total_usd"]
    assert totals.commitment_waste_usd == whole["commitment_waste_usd"]
    check = reconcile(separate)
    assert totals.total_usd == Decimal(int(check["pool_cost_cents"].sum())) / 100
    assert totals.idle_usd == Decimal(int(check["idle_cents"].sum())) / 100
    assert totals.owned_usd + totals.cloud_usd + totals.commitment_waste_usd == totals.total_usd
    assert totals.unit_cost_usd_per_used_chip_hour == pytest.approx(
        float(totals.total_usd) / whole["chip_hours_used"]
    )


def test_shared_idle_is_still_counted_as_idle(separate: Showback, shared: Showback) -> None:
    assert cost_totals(shared).total_usd == cost_totals(separate).total_usd
    assert cost_totals(shared).idle_usd == pytest.approx(cost_totals(separate).idle_usd)


def test_the_monthly_trend_adds_up_to_each_months_pool_cost(separate: Showback) -> None:
    trend = monthly_trend(separate)
    check = reconcile(separate)
    assert trend["month"].to_list() == MONTHS
    parts = trend["teams_usd"] + trend["idle_usd"] + trend["commitment_waste_usd"]
    assert parts.to_list() == pytest.approx(trend["total_usd"].to_list())
    assert (trend["total_usd"] * 100).round(0).cast(pl.Int64).to_list() == check[
        "pool_cost_cents"
    ].to_list()
    assert (trend["idle_usd"] * 100).round(0).cast(pl.Int64).to_list() == check[
        "idle_cents"
    ].to_list()


def test_a_team_slice_drops_the_idle_line_and_matches_a_plain_filter(separate: Showback) -> None:
    team = "search-ranking"
    sliced = slice_showback(separate, pl.col("team") == team)
    assert IDLE not in sliced.cells["team"].to_list()
    by_team = breakdown(separate, ["team"]).filter(pl.col("team") == team).row(0, named=True)
    totals = cost_totals(sliced)
    assert totals.total_usd == by_team["total_usd"]
    assert totals.idle_usd == 0
    assert monthly_trend(sliced)["idle_usd"].sum() == 0


def test_treemap_nodes_sum_their_children(separate: Showback) -> None:
    path = ("accelerator", "region", "team")
    table = breakdown(separate, list(path))
    nodes = treemap_nodes(table, path, "total_usd")
    values = dict(zip(nodes["id"], nodes["value"], strict=True))
    for node_id, parent in zip(nodes["id"], nodes["parent"], strict=True):
        children = nodes.filter(pl.col("parent") == node_id)
        if children.height:
            assert values[node_id] == pytest.approx(children["value"].sum())
        assert parent == "" or parent in values
    top = nodes.filter(pl.col("parent") == "")["value"].sum()
    assert top == pytest.approx(float(cost_totals(separate).total_usd))
    with pytest.raises(ValueError, match="one level"):
        treemap_nodes(table, (), "total_usd")


def test_usage_months_cover_first_to_last_day() -> None:
    usage = pl.DataFrame({"date": [date(2026, 1, 31), date(2026, 3, 1)]})
    assert usage_months(usage) == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    assert usage_months(usage.clear()) == []
