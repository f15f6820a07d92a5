"""Reading raw delimited exports without losing a single row.

:func:`read_delimited` returns every data row as strings with its 1-based line number in the
file, so that a row rejected later can be traced to the exact line. Rows a CSV parser would
choke on (wrong number of fields, bytes that are not UTF-8) are returned too, marked with a
``__problem`` so validation can quarantine them instead of failing the file. Problems with
the whole file (missing, unreadable, no header, a required column absent) raise one
:class:`~workbench.errors.WorkbenchError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from workbench.errors import WorkbenchError

__all__ = ["PROBLEM_COLUMN", "RawTable", "read_delimited", "split_broken_rows"]

PROBLEM_COLUMN = "__problem"
_REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class RawTable:
    """Rows of one file as strings, with their line numbers and what was skipped."""

    path: Path
    frame: pl.DataFrame
    """Columns of the header (strings), ``line`` (Int64) and ``__problem`` (null if fine)."""
    blank_lines: int
    header: tuple[str, ...]

    @property
    def rows_read(self) -> int:
        """Data rows read (blank lines are not rows)."""
        return self.frame.height


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline=""
        )
    return path.open("r", encoding="utf-8", errors="replace", newline="")


def read_delimited(
    path: Path,
    *,
    required: Sequence[str],
    optional: Iterable[str] = (),
    delimiter: str = ",",
) -> RawTable:
    """Read a CSV (optionally gzip-compressed) into strings, one row per data line.

    Header names are matched after trimming spaces; extra columns are kept. Each data row
    gets its physical 1-based ``line``; blank lines are counted, not returned.
    """
    if not path.exists():
        raise WorkbenchError("file not found", file=path, fix="check the path and try again")
    if path.is_dir():
        raise WorkbenchError("is a folder, not a file", file=path, fix="name a file inside it")
    wanted = list(required) + [c for c in optional if c not in required]
    try:
        with _open(path) as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header: list[str] | None = None
            header_line = 0
            columns: list[list[str | None]] = []
            lines: list[int] = []
            problems: list[str | None] = []
            blank = 0
            previous_end = 0
            for record in reader:
                first_line = previous_end + 1
                previous_end = reader.line_num
                if not record or (all(not field.strip() for field in record) and len(record) <= 1):
                    blank += 1
                    continue
                if header is None:
                    header = [name.strip().lstrip("\ufeff") for name in record]
                    header_line = first_line
                    missing = [c for c in required if c not in header]
                    if missing:
                        raise WorkbenchError(
                            f"missing required column{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)} (found: {', '.join(header)})",
                            file=path,
                            line=header_line,
                            field=missing[0],
                            fix="rename the column in the file, or map it with a column map",
                        )
                    columns = [[] for _ in header]
                    continue
                problem = None
                if len(record) != len(header):
                    problem = f"expected {len(header)} fields, found {len(record)}"
                elif any(_REPLACEMENT in field for field in record):
                    problem = "line is not valid UTF-8"
                padded = (record + [""] * len(header))[: len(header)]
                for index, value in enumerate(padded):
                    columns[index].append(value)
                lines.append(first_line)
                problems.append(problem)
    except csv.Error as exc:
        raise WorkbenchError(
            f"malformed CSV: {exc}",
            file=path,
            line=reader.line_num,
            fix="fix the quoting on that line (a field with a comma must be in double quotes)",
        ) from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise WorkbenchError(f"cannot read file: {exc}", file=path) from None
    if header is None:
        raise WorkbenchError(
            "file is empty (no header line)",
            file=path,
            line=1,
            field=required[0] if required else None,
            fix=f"export it with a header line: {','.join(required)}",
        )
    data: dict[str, list[str | None]] = {}
    for name, values in zip(header, columns, strict=True):
        if name in data:
            raise WorkbenchError(
                f"column '{name}' appears twice in the header",
                file=path,
                line=header_line,
                field=name,
                fix="remove one of them",
            )
        data[name] = values
    for name in wanted:
        if name not in data:
            data[name] = [None] * len(lines)
    frame = pl.DataFrame(
        {**data, "line": lines, PROBLEM_COLUMN: problems},
        schema={**{name: pl.String for name in data}, "line": pl.Int64, PROBLEM_COLUMN: pl.String},
    )
    return RawTable(path=path, frame=frame, blank_lines=blank, header=tuple(header))


def split_broken_rows(
    frame: pl.DataFrame, *, table: str, source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Separate rows the reader could not split right from the rest.

    Returns the sound rows (without ``__problem``) and a quarantine frame for the broken
    ones, with field ``line``, the reader's reason and the raw fields as JSON.
    """
    data_columns = [c for c in frame.columns if c not in ("line", PROBLEM_COLUMN)]
    broken = frame.filter(pl.col(PROBLEM_COLUMN).is_not_null())
    sound = frame.filter(pl.col(PROBLEM_COLUMN).is_null()).drop(PROBLEM_COLUMN)
    quarantine = broken.select(
        pl.lit(table).alias("table"),
        pl.lit(source).alias("source"),
        pl.col("line").cast(pl.Int64),
        pl.lit("line").alias("field"),
        pl.lit(None, dtype=pl.String).alias("value"),
        pl.col(PROBLEM_COLUMN).alias("reason"),
        pl.struct(data_columns).struct.json_encode().alias("record"),
    )
    return sound, quarantine
