"""Past runs side by side: what changed between two runs of the same kind, and why.

Pure functions over :class:`workbench.store.RunInfo` manifests and run outputs. A
forecast comparison is per series (mean and p90 over the dates both runs forecast); a
plan comparison per pool and quarter (buy, commit, cost). :func:`manifest_differences`
lists what differs in the manifests (settings, input files and their hashes, package
versions, seed) and :func:`explain` turns that into sentences.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from workbench.store import RunInfo

__all__ = [
    "COMPARABLE_KINDS",
    "compare_forecasts",
    "compare_plans",
    "explain",
    "forecast_data_summary",
    "manifest_differences",
    "runs_table",
]

COMPARABLE_KINDS: tuple[str, ...] = ("forecast", "plan")
"""Kinds whose outputs this module compares; other kinds compare by manifest only."""

_PLAN_KEYS = ["accelerator", "region", "quarter"]


def runs_table(runs: Sequence[RunInfo]) -> pl.DataFrame:
    """One row per run, newest first: id, kind, start, seconds, outputs and row counts."""
    rows = [
        {
            "run_id": run.run_id,
            "kind": run.kind,
            "started_at": run.started_at,
            "seconds": float(run.manifest.get("timings", {}).get("total", 0.0) or 0.0),
            "outputs": ", ".join(run.outputs()),
            "rows": int(sum((run.manifest.get("row_counts") or {}).values())),
            "inputs": len(run.manifest.get("inputs") or []),
        }
        for run in runs
    ]
    schema = {
        "run_id": pl.String,
        "kind": pl.String,
        "started_at": pl.String,
        "seconds": pl.Float64,
        "outputs": pl.String,
        "rows": pl.Int64,
        "inputs": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema).sort("started_at", "run_id", descending=True)


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key in sorted(value):
            out.update(_flatten(value[key], f"{prefix}{key}."))
        return out
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return {prefix.rstrip("."): text}


def _inputs(manifest: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(item.get("path")): str(item.get("sha256", ""))
        for item in manifest.get("inputs") or []
        if isinstance(item, Mapping)
    }


def manifest_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> pl.DataFrame:
    """What differs between two manifests: ``section, key, a, b``.

    Sections: ``config`` (settings, flattened to dotted keys), ``input`` (files by path,
    compared by SHA-256; ``(absent)`` when only one run read the file), ``versions``
    (packages) and ``seed``. Timings, row counts and ids always differ and are left out.
    """
    rows: list[dict[str, str]] = []
    for section, left, right in (
        ("config", _flatten(a.get("config") or {}), _flatten(b.get("config") or {})),
        ("input", _inputs(a), _inputs(b)),
        ("versions", _flatten(a.get("versions") or {}), _flatten(b.get("versions") or {})),
        ("seed", {"seed": str(a.get("seed"))}, {"seed": str(b.get("seed"))}),
    ):
        for key in sorted(set(left) | set(right)):
            if left.get(key) != right.get(key):
                rows.append(
                    {
                        "section": section,
                        "key": key,
                        "a": left.get(key, "(absent)"),
                        "b": right.get(key, "(absent)"),
                    }
                )
    return pl.DataFrame(
        rows, schema={"section": pl.String, "key": pl.String, "a": pl.String, "b": pl.String}
    )


def forecast_data_summary(history: pl.DataFrame) -> dict[str, Any]:
    """What a forecast run learned from: history end, series, days and a content hash."""
    if history.is_empty():
        return {"history_end": None, "series": 0, "days": 0, "fingerprint": 0}
    fleet = history.filter(pl.col("level") == "fleet") if "level" in history.columns else history
    return {
        "history_end": history["ds"].max(),
        "series": history["series_id"].n_unique(),
        "days": fleet["ds"].n_unique(),
        "fingerprint": int(
            history.sort("series_id", "ds").select("series_id", "ds", "y").hash_rows(seed=0).sum()
        ),
    }


def explain(
    kind: str,
    differences: pl.DataFrame,
    data_a: Mapping[str, Any] | None = None,
    data_b: Mapping[str, Any] | None = None,
) -> list[str]:
    """Sentences on why two runs of ``kind`` differ, most telling first.

    ``data_a``/``data_b`` are :func:`forecast_data_summary` of forecast runs (what data
    they learned from, which their manifests do not record).
    """
    reasons: list[str] = []
    if data_a is not None and data_b is not None:
        if data_a["history_end"] != data_b["history_end"]:
            reasons.append(
                f"Different data: history ends {data_a['history_end']} in A and "
                f"{data_b['history_end']} in B."
            )
        elif data_a["fingerprint"] != data_b["fingerprint"]:
            reasons.append(
                "Different data over the same dates: usage was re-ingested or corrected "
                "(late data, a newer export) between the runs."
            )
        if data_a["series"] != data_b["series"]:
            reasons.append(f"Series: {data_a['series']:,} in A, {data_b['series']:,} in B.")
    for row in differences.iter_rows(named=True):
        section, key = row["section"], row["key"]
        if section == "config" and key == "forecast_run":
            reasons.append(
                f"Planned from different forecast runs ({row['a']} vs {row['b']}): "
                "compare those forecasts for the demand behind the change."
            )
        elif section == "config" and key != "seed":  # the seed section says it
            reasons.append(f"Setting {key}: {row['a']} in A, {row['b']} in B.")
        elif section == "input":
            if "(absent)" in (row["a"], row["b"]):
                only = "A" if row["b"] == "(absent)" else "B"
                reasons.append(f"Input {key} was read by {only} only.")
            else:
                reasons.append(f"Input {key} changed (SHA-256 {row['a'][:8]} -> {row['b'][:8]}).")
        elif section == "seed":
            reasons.append(f"Seed {row['a']} in A, {row['b']} in B (sampling differs).")
    versions = differences.filter(pl.col("section") == "versions")
    if versions.height:
        names = ", ".join(f"{k} {a} -> {b}" for _, k, a, b in versions.iter_rows())
        reasons.append(f"Software: {names}.")
    if not reasons:
        reasons.append(
            f"The two {kind} runs have the same settings, inputs and versions: their outputs "
            "should match (up to solver time limits)."
        )
    return reasons


def compare_forecasts(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Per series: mean demand and p90 over the dates both runs forecast, A vs B.

    Columns ``series_id, level, accelerator, region, team, days, mean_a, mean_b,
    mean_change, mean_change_pct, p90_a, p90_b, p90_change``, largest absolute mean
    change first. Series forecast by one run only are left out (see the manifests).
    """
    keys = ["series_id", "level", "accelerator", "region", "team"]
    keys = [k for k in keys if k in a.columns and k in b.columns]
    joined = a.select(*keys, "ds", "mean", "p90").join(
        b.select("series_id", "ds", pl.col("mean").alias("mean_b"), pl.col("p90").alias("p90_b")),
        on=["series_id", "ds"],
        how="inner",
    )
    return (
        joined.group_by(keys)
        .agg(
            pl.len().alias("days"),
            pl.col("mean").mean().alias("mean_a"),
            pl.col("mean_b").mean(),
            pl.col("p90").mean().alias("p90_a"),
            pl.col("p90_b").mean(),
        )
        .with_columns(
            (pl.col("mean_b") - pl.col("mean_a")).alias("mean_change"),
            (pl.col("p90_b") - pl.col("p90_a")).alias("p90_change"),
        )
        .with_columns(
            pl.when(pl.col("mean_a").abs() > 0)
            .then(pl.col("mean_change") / pl.col("mean_a"))
            .alias("mean_change_pct")
        )
        .select(
            *keys,
            "days",
            "mean_a",
            "mean_b",
            "mean_change",
            "mean_change_pct",
            "p90_a",
            "p90_b",
            "p90_change",
        )
        .sort(pl.col("mean_change").abs(), "series_id", descending=[True, False])
    )


def compare_plans(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Per pool and quarter: chips bought, committed and expected cost, A vs B.

    Columns ``accelerator, region, quarter``, then ``buy_a, buy_b, buy_change``,
    ``commit_a, commit_b, commit_change``, ``cost_a_usd, cost_b_usd, cost_change_usd``;
    a pool-quarter planned by one run only counts as zero in the other. Largest absolute
    cost change first.
    """
    columns = {"buy_chips": "buy", "committed_chips": "commit", "cost_cents": "cost"}

    def side(frame: pl.DataFrame, suffix: str) -> pl.DataFrame:
        return frame.select(
            *_PLAN_KEYS,
            *[pl.col(c).cast(pl.Float64).alias(f"{n}_{suffix}") for c, n in columns.items()],
        )

    joined = side(a, "a").join(side(b, "b"), on=_PLAN_KEYS, how="full", coalesce=True)
    value_columns = [f"{n}_{s}" for n in columns.values() for s in ("a", "b")]
    return (
        joined.with_columns(pl.col(value_columns).fill_null(0.0))
        .with_columns(
            (pl.col("cost_a") / 100).alias("cost_a_usd"),
            (pl.col("cost_b") / 100).alias("cost_b_usd"),
            (pl.col("buy_b") - pl.col("buy_a")).alias("buy_change"),
            (pl.col("commit_b") - pl.col("commit_a")).alias("commit_change"),
        )
        .with_columns((pl.col("cost_b_usd") - pl.col("cost_a_usd")).alias("cost_change_usd"))
        .select(
            *_PLAN_KEYS,
            "buy_a",
            "buy_b",
            "buy_change",
            "commit_a",
            "commit_b",
            "commit_change",
            "cost_a_usd",
            "cost_b_usd",
            "cost_change_usd",
        )
        .sort(pl.col("cost_change_usd").abs(), *_PLAN_KEYS, descending=[True, False, False, False])
    )
