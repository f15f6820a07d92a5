"""No code from data: user files are parsed, never executed, and names from users stay names.

* The library never loads user files with pickle, marshal, shelve or YAML object loading,
  never calls eval/exec/compile, and never runs a shell.
* SQL over the workspace is built without pasting names into SQL text.
* Text from the data (a team called ``=HYPERLINK(...)``) is text in the finance workbook,
  not a formula; HTML reports are autoescaped (see ``test_report_quarterly``).
* File names from users (uploads, scenario names) cannot leave their folder.
"""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from openpyxl import load_workbook

from workbench.errors import WorkbenchError
from workbench.report_finance import SHEETS, FinanceReport, write_workbook
from workbench.scenarios import sanitize_name
from workbench.store import Workspace
from workbench.uploads import safe_download_name, safe_upload_name

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted(
    [
        *(ROOT / "workbench").rglob("*.py"),
        *(ROOT / "pipelines").rglob("*.py"),
        *(ROOT / "models").rglob("*.py"),
        ROOT / "app.py",
    ]
)
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "yaml"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append(f"{func.id}() at line {node.lineno}")
            if isinstance(func, ast.Attribute) and func.attr in ("system", "popen"):
                found.append(f".{func.attr}() at line {node.lineno}")
            for keyword in node.keywords:
                if keyword.arg == "shell" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    found.append(f"shell=... at line {node.lineno}")
            sql_call = isinstance(func, ast.Attribute) and func.attr in ("execute", "sql")
            if sql_call and node.args and isinstance(node.args[0], ast.JoinedStr):
                found.append(f"SQL built with an f-string at line {node.lineno}")
    return [f"{path.relative_to(ROOT)}: {item}" for item in found]


def test_library_never_executes_or_unpickles_anything():
    assert len(LIBRARY) > 50
    problems = [v for path in LIBRARY for v in _violations(path)]
    assert problems == []


def test_sql_views_take_any_table_and_folder_name(tmp_path):
    root = tmp_path / 'it\'s a "workspace"; DROP TABLE x'
    workspace = Workspace(root).init()
    workspace.write_table("usage_daily", pl.DataFrame({"chip_hours_used": [1.0, 2.0]}))
    odd = 'weird"; SELECT 1; --'
    pl.DataFrame({"x": [7]}).write_parquet(workspace.tables_dir / f"{odd}.parquet")
    total = workspace.sql("SELECT sum(chip_hours_used) AS t FROM usage_daily")["t"][0]
    assert total == 3.0
    assert workspace.sql('SELECT x FROM "weird""; SELECT 1; --"')["x"][0] == 7


def test_finance_workbook_keeps_formula_text_as_text(tmp_path):
    hostile = ['=HYPERLINK("http://evil.example","click")', "+1+1", "@SUM(A1)", "plain"]
    report = FinanceReport(
        months=(date(2026, 10, 1),),
        tables={
            sheet: pl.DataFrame({"team": hostile, "cost_usd": [1.0, 2.0, 3.0, 4.0]})
            for sheet in SHEETS
        },
        pool_cost_cents=1000,
        balanced=True,
    )
    path = write_workbook(report, tmp_path / "finance.xlsx")
    sheet = load_workbook(path)["by_team"]
    cells = [sheet.cell(row=r, column=1) for r in range(2, 2 + len(hostile))]
    assert [c.value for c in cells] == hostile
    assert all(c.data_type == "s" for c in cells)


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "..\\..\\win.ini", "/abs/path.csv", ".hidden", "a/../../b.csv", "", ".."],
)
def test_user_file_names_stay_in_their_folder(tmp_path, name):
    try:
        scenario = sanitize_name(name)
    except WorkbenchError:
        scenario = "refused"  # nothing usable left: refused with a clear error
    for safe in (safe_upload_name(name), scenario):
        assert "/" not in safe
        assert "\\" not in safe
        assert not safe.startswith(".")
        assert (tmp_path / safe).resolve().parent == tmp_path.resolve()


def test_download_names_from_data_are_plain_names():
    assert safe_download_name("reclaim_a/b_history.csv") == "reclaim_a_b_history.csv"
    assert safe_download_name("forecast_team-../../x.csv") == "forecast_team-._._x.csv"
    assert safe_download_name('scenario_"a\r\nb"_plan.csv') == "scenario__a_b__plan.csv"
    # Every download in the app built from data goes through it.
    pages = ROOT / "workbench" / "ui"
    for path in pages.glob("*_page.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "file_name":
                value = node.value
                interpolates_data = isinstance(value, ast.JoinedStr) and any(
                    isinstance(part, ast.FormattedValue)
                    and not (isinstance(part.value, ast.Attribute) and part.value.attr == "run_id")
                    for part in value.values
                )
                assert not interpolates_data, f"{path.name}:{node.value.lineno}"
