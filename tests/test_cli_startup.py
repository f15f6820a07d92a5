"""``workbench`` starts without loading the engines behind its commands.

Every command, even ``workbench --help``, imports :mod:`workbench.cli`; the commands import
polars, the forecasting models, the solver and the workspace store where they run. The
light copies of the constants shown in option defaults and help are pinned to their owners.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from models.engine import DEFAULT_CANDIDATES
from workbench import cli_defaults
from workbench.ingest import INGEST_KINDS
from workbench.showback import DIMENSIONS

HEAVY_PACKAGES = (
    "scipy",
    "statsmodels",
    "prophet",
    "sklearn",
    "plotly",
    "streamlit",
    "polars",
    "numpy",
    "pyarrow",
    "duckdb",
)
HEAVY_MODULES = (
    "workbench.forecasting",
    "workbench.procurement",
    "workbench.planning_inputs",
    "workbench.showback",
    "workbench.tco",
    "workbench.reclaim",
    "workbench.ingest",
    "workbench.store",
    "models.engine",
)


def _modules_loaded_by(statement: str) -> list[str]:
    code = (
        f"import json, sys\n{statement}\n"
        f"heavy_packages, heavy_modules = {HEAVY_PACKAGES!r}, {HEAVY_MODULES!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules\n"
        "    if m.split('.')[0] in heavy_packages or m in heavy_modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(done.stdout.splitlines()[-1])  # after any help text


def test_importing_the_cli_loads_no_engine() -> None:
    assert _modules_loaded_by("import workbench.cli") == []


@pytest.mark.parametrize(
    "command", [[], ["ingest"], ["forecast"], ["plan"], ["costs"], ["report", "quarterly"]]
)
def test_help_loads_no_engine(command: list[str]) -> None:
    statement = (
        "import contextlib\n"
        "from workbench.cli import app\n"
        "with contextlib.suppress(SystemExit):\n"
        f"    app({[*command, '--help']!r})"
    )
    assert _modules_loaded_by(statement) == []


def test_the_light_constants_equal_their_owners() -> None:
    assert cli_defaults.DEFAULT_CANDIDATES == DEFAULT_CANDIDATES
    assert cli_defaults.DIMENSIONS == DIMENSIONS
    assert cli_defaults.INGEST_KINDS == INGEST_KINDS
    assert list(cli_defaults.INGEST_KINDS) == list(INGEST_KINDS)  # the help lists them in order
