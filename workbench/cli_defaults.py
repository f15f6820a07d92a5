"""Values the CLI shows in its options' defaults and help, importable without the libraries.

``workbench --help`` (and every command) registers its options at start-up; reading these
from :mod:`models.engine`, :mod:`workbench.ingest` or :mod:`workbench.showback` would load
polars, scipy and the forecasting models first. ``INGEST_KINDS`` and ``DIMENSIONS`` live
here and those modules import them; ``DEFAULT_CANDIDATES`` is a copy (``models`` does not
import ``workbench``), and ``tests/test_cli_startup.py`` pins it equal to its source.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CANDIDATES", "DIMENSIONS", "INGEST_KINDS"]

DEFAULT_CANDIDATES: tuple[str, ...] = ("seasonal_naive", "naive2", "theta", "ets", "gbm")
"""``models.engine.DEFAULT_CANDIDATES``: the models ``--models`` chooses among by default."""

DIMENSIONS: tuple[str, ...] = ("month", "team", "accelerator", "region", "workload")
"""What a cost breakdown can be grouped by (``workbench costs --by``; used by
:mod:`workbench.showback`)."""

INGEST_KINDS: dict[str, str] = {
    "catalog": "SKU catalog TOML -> sku_catalog",
    "price-book": "price book TOML -> price_book",
    "jobs": "scheduler job records (CSV, JSON Lines, Parquet; .gz/.zst; --map for other layouts)"
    " -> usage_daily (usage_hourly with --grain hour)",
    "billing": "FOCUS 1.0-1.3 billing export (CSV, Parquet) -> billing",
    "metrics": "utilization metrics (Prometheus range-query JSON, or CSV) -> utilization_daily",
    "inventory": "inventory snapshots CSV -> inventory",
    "allocations": "team reservations and quotas CSV -> allocations",
    "orders": "hardware orders CSV -> orders",
    "events": "known future events CSV -> events",
}
"""The KINDs ``workbench ingest`` takes, described (used by :mod:`workbench.ingest`)."""
