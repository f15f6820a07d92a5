"""The Data page through AppTest: sources, reconciliation and quarantine are the
workspace's own; an upload is ingested like ``workbench ingest`` (bad rows quarantined with
their reasons, good rows loaded), an oversized one is refused, and a hostile file name
stays inside the workspace."""

from __future__ import annotations

import gzip
import io

import polars as pl
import pytest

from tests.app_money import open_page
from tests.conftest import JOB_HEADER, IngestedSample
from workbench.data_views import ingest_files, quarantine_reasons, table_summary
from workbench.errors import WorkbenchError
from workbench.store import Workspace
from workbench.uploads import (
    UploadSettings,
    count_records,
    ingest_upload,
    safe_upload_name,
    save_upload,
    upload_row_limit,
)

PAGE = "data_page"
JOB = (
    "{id},2026-10-01T01:00:00Z,2026-10-01T01:00:00Z,2026-10-01T05:00:00Z,{chips},{acc},"
    "us-central1,upload-team,batch"
)


def _jobs_csv(good: int, bad_chips: int = 0, bad_accelerator: int = 0) -> bytes:
    lines = [JOB_HEADER]
    lines += [JOB.format(id=f"g{i}", chips=8, acc="h100-80gb") for i in range(good)]
    lines += [JOB.format(id=f"b{i}", chips=-1, acc="h100-80gb") for i in range(bad_chips)]
    lines += [JOB.format(id=f"u{i}", chips=8, acc="warp-drive") for i in range(bad_accelerator)]
    return ("\n".join(lines) + "\n").encode()


def _metrics(app) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def _upload(app, name: str, content: bytes) -> None:
    app.file_uploader(key="data_upload_file").set_value((name, content, "text/csv"))
    app.run()
    app.button(key="data_ingest").click().run()
    assert not app.exception, app.exception


def test_sources_reconciliation_and_quarantine_are_the_workspaces(
    sample_workspace: IngestedSample, monkeypatch
):
    workspace = sample_workspace.workspace
    app = open_page(workspace.root, monkeypatch, PAGE)
    shown = _metrics(app)
    quarantine = workspace.read_table("quarantine")
    assert shown["Tables"] == f"{len(workspace.table_names()):,}"
    assert shown["Ingest runs"] == f"{len(workspace.runs('ingest')):,}"
    assert shown["Quarantined rows"] == f"{quarantine.height:,}"
    tables = app.dataframe[0].value
    expected = table_summary(workspace)
    assert tables["rows"].tolist() == expected["rows"].to_list()
    files = app.dataframe[1].value
    every = ingest_files(workspace.runs("ingest"))
    assert len(files) == every.height
    assert files["rows_read"].sum() == every["rows_read"].sum()
    reasons = app.dataframe[2].value
    assert reasons["rows"].sum() == quarantine.height
    assert set(reasons["reason_kind"]) == set(quarantine_reasons(quarantine)["reason_kind"])
    app.selectbox(key="data_kind_filter").set_value("jobs").run()
    assert set(app.dataframe[1].value["kind"]) == {"jobs"}


def test_a_bad_upload_quarantines_its_bad_rows_with_reasons_and_loads_the_good(
    workspace_copy: Workspace, monkeypatch
):
    app = open_page(workspace_copy.root, monkeypatch, PAGE)
    _upload(app, "cluster-b.csv", _jobs_csv(good=3, bad_chips=2, bad_accelerator=1))
    assert "3 loaded + 3 quarantined" in app.success[0].value
    assert "3 row(s) quarantined" in app.warning[0].value
    reasons = app.dataframe[-1].value["reason"].tolist()
    assert sum("chips must be positive" in r for r in reasons) == 2
    assert sum("unknown accelerator" in r for r in reasons) == 1
    usage = workspace_copy.read_table("usage_daily").filter(pl.col("team") == "upload-team")
    assert usage["chip_hours_used"].sum() == pytest.approx(3 * 8 * 4)
    source = usage["source"][0]
    assert source == f"jobs:{(workspace_copy.root / 'uploads' / 'cluster-b.csv').resolve()}"
    # The same bytes again change nothing, as on the command line.
    _upload(app, "cluster-b.csv", _jobs_csv(good=3, bad_chips=2, bad_accelerator=1))
    assert "already ingested" in app.info[-1].value


def test_an_upload_over_the_limit_is_refused_with_a_clear_message(
    workspace_copy: Workspace, monkeypatch
):
    monkeypatch.setenv("WORKBENCH_UPLOAD_MAX_MB", "0.0005")  # 500 bytes
    runs_before = len(workspace_copy.runs("ingest"))
    app = open_page(workspace_copy.root, monkeypatch, PAGE)
    _upload(app, "big.csv", _jobs_csv(good=20))
    message = app.error[0].value
    assert "over the limit of" in message and "WORKBENCH_UPLOAD_MAX_MB" in message
    assert "Traceback" not in message
    assert len(workspace_copy.runs("ingest")) == runs_before
    assert not (workspace_copy.root / "uploads" / "big.csv").exists()


def test_an_upload_over_the_row_limit_is_refused_with_a_clear_message(
    workspace_copy: Workspace, monkeypatch
):
    monkeypatch.setenv("WORKBENCH_UPLOAD_MAX_ROWS", "5")
    runs_before = len(workspace_copy.runs("ingest"))
    app = open_page(workspace_copy.root, monkeypatch, PAGE)
    _upload(app, "many.csv", _jobs_csv(good=6))
    message = app.error[0].value
    assert "holds 6 records, over the limit of 5" in message
    assert "WORKBENCH_UPLOAD_MAX_ROWS" in message and "Traceback" not in message
    assert len(workspace_copy.runs("ingest")) == runs_before
    assert not any((workspace_copy.root / "uploads").iterdir())  # nor a staged part


def test_records_are_counted_as_the_ingest_reads_them(tmp_path):
    csv = _jobs_csv(good=4)
    (tmp_path / "a.csv").write_bytes(csv)
    (tmp_path / "b.csv").write_bytes(csv.rstrip(b"\n"))  # no newline at the end
    (tmp_path / "c.csv.gz").write_bytes(gzip.compress(csv))
    (tmp_path / "d.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    pl.DataFrame({"a": range(7)}).write_parquet(tmp_path / "e.parquet")
    (tmp_path / "f.toml").write_text("[x]\na = 1\n")
    (tmp_path / "g.csv.gz").write_bytes(b"not gzip at all")
    counted = {p.name: count_records(p) for p in sorted(tmp_path.iterdir())}
    assert counted == {
        "a.csv": 4,  # the header is no record
        "b.csv": 4,
        "c.csv.gz": 4,  # counted decompressed
        "d.jsonl": 2,
        "e.parquet": 7,
        "f.toml": None,  # not a table of records
        "g.csv.gz": None,  # broken: the ingest refuses it, naming the file
    }


def test_a_small_compressed_upload_cannot_hide_its_rows(empty_workspace):
    body = gzip.compress(_jobs_csv(good=3000))  # 3,000 rows in a few kB
    assert len(body) < 10_000
    with pytest.raises(WorkbenchError, match="holds 3,000 records, over the limit of 2,999"):
        save_upload(empty_workspace, "jobs.csv.gz", io.BytesIO(body), len(body), 1.0, 2_999)
    assert not any((empty_workspace.root / "uploads").iterdir())
    kept = save_upload(empty_workspace, "jobs.csv.gz", io.BytesIO(body), len(body), 1.0, 3_000)
    assert kept.read_bytes() == body


@pytest.mark.parametrize("text", ["many", "-3", "0", "1.5"])
def test_a_bad_row_limit_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv("WORKBENCH_UPLOAD_MAX_ROWS", text)
    with pytest.raises(WorkbenchError) as caught:
        upload_row_limit()
    assert caught.value.field == "WORKBENCH_UPLOAD_MAX_ROWS"


def test_a_row_limit_may_be_written_with_separators(monkeypatch):
    monkeypatch.setenv("WORKBENCH_UPLOAD_MAX_ROWS", "2,500,000")
    assert upload_row_limit() == 2_500_000
    monkeypatch.delenv("WORKBENCH_UPLOAD_MAX_ROWS")
    assert upload_row_limit() == 5_000_000


def test_a_file_name_with_folders_is_kept_inside_the_workspace(
    workspace_copy: Workspace, monkeypatch, tmp_path
):
    app = open_page(workspace_copy.root, monkeypatch, PAGE)
    _upload(app, "../../etc/x.csv", _jobs_csv(good=1))
    assert not app.error
    saved = workspace_copy.root / "uploads" / "x.csv"
    assert saved.exists()
    assert sorted(p.name for p in (workspace_copy.root / "uploads").iterdir()) == ["x.csv"]
    assert not (workspace_copy.root.parent.parent / "etc").exists()
    assert "x.csv" in app.success[0].value


def test_a_file_the_ingest_refuses_shows_its_one_line_error(workspace_copy, monkeypatch):
    app = open_page(workspace_copy.root, monkeypatch, PAGE)
    _upload(app, "jobs.csv", b"job_id,submit_time\n1,2026-01-01T00:00:00Z\n")
    message = app.error[0].value
    assert "jobs.csv" in message and "missing required column" in message
    assert "Traceback" not in message


def test_a_preset_column_map_is_applied_to_the_upload(workspace_copy, monkeypatch):
    app = open_page(workspace_copy.root, monkeypatch, PAGE)
    app.selectbox(key="data_upload_preset").set_value("generic").run()
    _upload(app, "generic.csv", _jobs_csv(good=2))
    assert "2 loaded" in app.success[0].value
    run = workspace_copy.runs("ingest")[-1]
    assert "map=generic" in run.manifest["config"]["settings"]


def test_an_empty_workspace_explains_and_still_offers_the_upload(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path / "empty").init()
    app = open_page(workspace.root, monkeypatch, PAGE)
    assert "workbench demo" in app.info[0].value
    assert app.file_uploader(key="data_upload_file") is not None


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/x.csv", "x.csv"),
        ("C:\\exports\\jobs 1.csv", "jobs_1.csv"),
        (".bashrc", "upload.bashrc"),
        ("..", "upload"),
        ("", "upload"),
        ("jobs.csv.gz", "jobs.csv.gz"),
        ("a..b.csv", "a.b.csv"),
    ],
)
def test_safe_upload_names(name, safe):
    assert safe_upload_name(name) == safe
    assert "/" not in safe_upload_name(name) and not safe_upload_name(name).startswith(".")


def test_save_upload_refuses_empty_and_oversized_files_before_writing(empty_workspace):
    with pytest.raises(WorkbenchError, match="empty"):
        save_upload(empty_workspace, "a.csv", io.BytesIO(b""), 0, 1.0)
    with pytest.raises(WorkbenchError, match="over the limit"):
        save_upload(empty_workspace, "a.csv", io.BytesIO(b"x" * 2000), 2000, 0.001)
    assert not (empty_workspace.root / "uploads" / "a.csv").exists()
    with pytest.raises(WorkbenchError, match="column map applies to job records only"):
        ingest_upload(
            empty_workspace,
            "a.csv",
            io.BytesIO(b"x"),
            1,
            UploadSettings(kind="orders"),
            column_map=("m.toml", io.BytesIO(b"x"), 1),
        )
