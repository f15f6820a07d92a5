"""What every connector returns: rows produced, rows rejected, and proof nothing was lost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

__all__ = ["TableIngest"]


@dataclass(frozen=True)
class TableIngest:
    """The outcome of reading one file into one canonical table.

    ``rows_read`` counts data rows (blank lines excluded); every one of them is loaded,
    quarantined or a dropped exact duplicate. Connectors that carry a quantity (chip-hours,
    USD) also report it in and out in ``totals``, e.g. ``{"usd_in": ..., "usd_out": ...}``.
    """

    table: str
    source: str
    good: pl.DataFrame
    quarantine: pl.DataFrame
    rows_read: int
    duplicates_dropped: int = 0
    blank_lines: int = 0
    totals: dict[str, float] = field(default_factory=dict)
    extra_tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    """Further tables the same file feeds (e.g. a daily roll-up beside the raw rows)."""

    @property
    def rows_loaded(self) -> int:
        """Rows that reached the table."""
        return self.good.height

    @property
    def rows_quarantined(self) -> int:
        """Rows rejected with a reason."""
        return self.quarantine.height

    @property
    def balanced(self) -> bool:
        """Rows read = loaded + quarantined + duplicates, and each ``*_in`` total = ``*_out``."""
        rows_ok = (
            self.rows_read == self.rows_loaded + self.rows_quarantined + self.duplicates_dropped
        )
        for name, value_in in self.totals.items():
            if name.endswith("_in"):
                value_out = self.totals.get(name[:-3] + "_out", value_in)
                if abs(value_in - value_out) > 1e-6 * max(1.0, abs(value_in)):
                    return False
        return rows_ok

    def reconciliation(self) -> dict[str, Any]:
        """The reconciliation as a plain mapping, for manifests and printing."""
        return {
            "source": self.source,
            "table": self.table,
            "rows_read": self.rows_read,
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "blank_lines": self.blank_lines,
            **self.totals,
            "balanced": self.balanced,
        }
