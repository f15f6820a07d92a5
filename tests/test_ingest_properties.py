"""Properties of the workspace ingest on random job sets (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.ingest import ingest
from workbench.store import Workspace

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "data_samples" / "catalog" / "sku_catalog.toml"
HEADER = "job_id,submit_time,start_time,end_time,chips,accelerator,region,team,workload"

times = st.integers(0, 3 * 86_400)
rows = st.lists(
    st.tuples(
        st.integers(0, 5),  # job id (repeats make exact duplicates likely)
        times,
        st.integers(0, 2 * 86_400),
        st.integers(0, 3_600),
        st.sampled_from(["8", "1", "0.5", "-4", "eight"]),  # some rows must be quarantined
        st.sampled_from(["h100", "NVIDIA L4", "tpu-v5e", "MI300X"]),
        st.sampled_from(["vision", "maps", ""]),
    ),
    min_size=1,
    max_size=25,
)


def _iso(seconds: int) -> str:
    day, rest = divmod(seconds, 86_400)
    return f"2026-01-{day + 1:02d}T{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}Z"


def _line(row: tuple[int, int, int, int, str, str, str]) -> str:
    job, start, span, wait, chips, accelerator, team = row
    return ",".join(
        [
            f"j{job}",
            _iso(max(start - wait, 0)),
            _iso(start),
            _iso(start + span),
            chips,
            f'"{accelerator}"',
            "us-central1",
            team,
            "batch",
        ]
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows)
def test_ingest_twice_equals_ingest_once_and_every_row_is_accounted_for(jobs):
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Workspace(Path(scratch) / "ws").init()
        ingest(workspace, "catalog", [CATALOG])
        path = Path(scratch) / "jobs.csv"
        path.write_text("\n".join([HEADER, *(_line(r) for r in jobs)]) + "\n")
        first = ingest(workspace, "jobs", [path])
        rec = first.files[0].reconciliation
        assert rec["rows_read"] == len(jobs)
        assert rec["rows_read"] == (
            rec["rows_loaded"] + rec["rows_quarantined"] + rec["duplicates_dropped"]
        )
        assert rec["balanced"]
        once_usage = workspace.read_table("usage_daily")
        once_quarantine = workspace.read_table("quarantine")
        # Same bytes: nothing happens. Changed bytes, same rows: the same tables.
        assert ingest(workspace, "jobs", [path]).run_id is None
        path.write_text(path.read_text() + "\n")
        ingest(workspace, "jobs", [path])
        assert workspace.read_table("usage_daily").equals(once_usage)
        assert workspace.read_table("quarantine").sort("line").equals(once_quarantine.sort("line"))
        used = once_usage["chip_hours_used"].to_list()
        total = float(sum(used))
        assert abs(total - float(rec["chip_hours_in"])) <= 1e-9 * max(1.0, total)
        assert all(value >= 0 for value in used)
