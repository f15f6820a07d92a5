"""Runs: every committed run with its manifest, and two runs of a kind compared.

Forecast runs compare per series (mean and p90 over the common horizon), plan runs per
pool and quarter (buy, commit, cost); the manifests' differences say why.
"""

from __future__ import annotations

import polars as pl
import streamlit as st

from workbench.run_compare import (
    COMPARABLE_KINDS,
    compare_forecasts,
    compare_plans,
    explain,
    forecast_data_summary,
    manifest_differences,
    runs_table,
)
from workbench.store import RunInfo, Workspace
from workbench.ui.cache import cached_run_output, workspace_root
from workbench.ui.format import chips, usd
from workbench.ui.shell import current_filter

__all__ = ["render"]

_KEY = "runs_"


def _pick(label: str, runs: list[RunInfo], key: str, default: int) -> RunInfo:
    ids = [r.run_id for r in runs]
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[default]
    chosen = st.selectbox(label, ids, key=key)
    return runs[ids.index(chosen)]


def _compare_forecasts(root: str, a: RunInfo, b: RunInfo) -> list[str]:
    table = compare_forecasts(
        cached_run_output(root, a.run_id, "forecast"), cached_run_output(root, b.run_id, "forecast")
    )
    table = current_filter().apply(table)
    fleet = table.filter(pl.col("level") == "fleet")
    if fleet.height:
        row = fleet.row(0, named=True)
        tiles = st.columns(3)
        tiles[0].metric("Fleet mean demand, A", chips(row["mean_a"]))
        tiles[1].metric(
            "Fleet mean demand, B",
            chips(row["mean_b"]),
            delta=f"{row['mean_change']:+,.0f} chips ({row['mean_change_pct']:+.1%})",
            delta_color="off",
        )
        tiles[2].metric("Fleet p90, change", f"{row['p90_change']:+,.0f} chips")
    st.caption(
        f"{table.height:,} series forecast by both runs, largest change of the mean first "
        "(demand in average chips over the dates both runs forecast)."
    )
    st.dataframe(
        table,
        hide_index=True,
        key=f"{_KEY}forecast_table",
        column_config={
            c: st.column_config.NumberColumn(c.replace("_", " "), format="%,.1f")
            for c in ("mean_a", "mean_b", "mean_change", "p90_a", "p90_b", "p90_change")
        }
        | {"mean_change_pct": st.column_config.NumberColumn("mean change", format="percent")},
    )
    st.download_button(
        "Download the comparison (CSV)",
        table.write_csv(),
        file_name=f"forecast_{a.run_id}_vs_{b.run_id}.csv",
        mime="text/csv",
        key=f"{_KEY}forecast_download",
    )
    return explain(
        "forecast",
        manifest_differences(a.manifest, b.manifest),
        forecast_data_summary(cached_run_output(root, a.run_id, "history")),
        forecast_data_summary(cached_run_output(root, b.run_id, "history")),
    )


def _compare_plans(root: str, a: RunInfo, b: RunInfo) -> list[str]:
    table = current_filter().apply(
        compare_plans(
            cached_run_output(root, a.run_id, "plan"), cached_run_output(root, b.run_id, "plan")
        )
    )
    totals = table.select(pl.col("buy_change", "commit_change", "cost_change_usd").sum()).row(
        0, named=True
    )
    tiles = st.columns(3)
    tiles[0].metric("Chips bought, B - A", f"{totals['buy_change']:+,.0f} chips")
    tiles[1].metric("Chips committed, B - A", f"{totals['commit_change']:+,.0f} chips")
    tiles[2].metric(
        "Expected cost, B - A",
        ("+" if totals["cost_change_usd"] >= 0 else "-") + usd(abs(totals["cost_change_usd"])),
    )
    st.dataframe(
        table,
        hide_index=True,
        key=f"{_KEY}plan_table",
        column_config={
            c: st.column_config.NumberColumn(c.replace("_", " "), format="%,.0f")
            for c in ("buy_a", "buy_b", "buy_change", "commit_a", "commit_b", "commit_change")
        }
        | {
            c: st.column_config.NumberColumn(c.replace("_", " "), format="dollar")
            for c in ("cost_a_usd", "cost_b_usd", "cost_change_usd")
        },
    )
    st.download_button(
        "Download the comparison (CSV)",
        table.write_csv(),
        file_name=f"plan_{a.run_id}_vs_{b.run_id}.csv",
        mime="text/csv",
        key=f"{_KEY}plan_download",
    )
    return explain("plan", manifest_differences(a.manifest, b.manifest))


def render() -> None:
    """Draw the runs page."""
    root = workspace_root()
    st.title("Runs")
    runs = Workspace(root).runs()
    if not runs:
        st.info(
            f"No runs in the workspace `{root}` yet. `workbench demo` ingests the sample fleet "
            "and forecasts it; every ingest, forecast, plan and costs command writes a run."
        )
        return
    table = runs_table(runs)
    kinds = sorted(set(table["kind"].to_list()))
    kind = st.radio(
        "Kind",
        kinds,
        index=kinds.index("forecast") if "forecast" in kinds else 0,
        horizontal=True,
        key=f"{_KEY}kind",
    )
    shown = table.filter(pl.col("kind") == kind) if kind else table
    st.dataframe(
        shown,
        hide_index=True,
        key=f"{_KEY}table",
        column_config={"seconds": st.column_config.NumberColumn("seconds", format="%.2f")},
    )
    of_kind = sorted(
        (r for r in runs if not kind or r.kind == kind), key=lambda r: r.started_at, reverse=True
    )
    if not of_kind:
        return
    with st.expander("Manifest of a run"):
        run = _pick("Run", of_kind, f"{_KEY}manifest_run", 0)
        st.json(run.manifest, expanded=1)
    st.subheader("Compare two runs")
    if len(of_kind) < 2:
        st.info(
            f"Only one {kind} run so far: run `workbench {kind}` again (for example with "
            "other settings) to compare."
        )
        return
    columns = st.columns(2)
    with columns[0]:
        a = _pick("Run A (before)", of_kind, f"{_KEY}a", 1)
    with columns[1]:
        b = _pick("Run B (after)", of_kind, f"{_KEY}b", 0)
    if a.run_id == b.run_id:
        st.warning("Pick two different runs.")
        return
    if kind == "forecast" and {"forecast", "history"} <= set(a.outputs()) & set(b.outputs()):
        reasons = _compare_forecasts(str(root), a, b)
    elif kind == "plan" and "plan" in set(a.outputs()) & set(b.outputs()):
        reasons = _compare_plans(str(root), a, b)
    else:
        reasons = explain(kind or "", manifest_differences(a.manifest, b.manifest))
        if kind not in COMPARABLE_KINDS:
            st.caption(f"{kind} runs compare by their manifests only.")
    st.markdown("**Why they differ**")
    st.markdown("\n".join(f"- {reason}" for reason in reasons))
    differences = manifest_differences(a.manifest, b.manifest)
    if differences.height:
        with st.expander(f"Manifest differences ({differences.height})"):
            st.dataframe(differences, hide_index=True, key=f"{_KEY}differences")
