"""Reading raw exports in bounded memory without losing a single row.

:class:`RecordReader` streams a file (CSV or other delimited text, JSON Lines, Parquet;
``.gz`` and ``.zst`` read directly) as batches of records, each with its 1-based physical
``line`` in the file (for Parquet: the row number), so a row rejected later can be traced to
the exact line. Every column comes as text, exactly as written, for validation to judge.

Rows a parser would choke on (wrong number of fields, bytes that are not UTF-8, a JSON line
that does not parse) are returned too, marked in ``__problem``, so validation quarantines
them instead of failing the file. Blank lines are counted, not returned. Problems with the
whole file (missing, unreadable, no header, a required column absent) raise one
:class:`~workbench.errors.WorkbenchError` naming the file, the line and the column.

Delimited text is cut into blocks at line ends and each block parsed by polars, one record
per physical line (fields may be quoted and contain the delimiter, not a line break; a block
that breaks that rule is re-read with Python's ``csv`` module, line by line).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, cast

import numpy as np
import polars as pl

from workbench.errors import WorkbenchError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

__all__ = [
    "PROBLEM_COLUMN",
    "RAW_COLUMN",
    "RawTable",
    "RecordReader",
    "file_format",
    "open_binary",
    "read_delimited",
    "split_broken_rows",
]

PROBLEM_COLUMN = "__problem"
RAW_COLUMN = "__raw"
"""The text of a JSON line that could not be read as an object (absent when all could)."""
BinaryStream = io.BufferedIOBase | IO[bytes]
Format = Literal["csv", "jsonl", "parquet"]
_BLOCK_BYTES = 8 << 20
_PARQUET_ROWS = 100_000
_NEWLINE = 10
_CARRIAGE = 13
_QUOTE = 34


def file_format(path: Path) -> Format:
    """The format a file's name says: ``.parquet``, ``.jsonl``/``.ndjson``, else CSV."""
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in (".gz", ".zst", ".zstd"):
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    if last in (".parquet", ".pq"):
        return "parquet"
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "csv"


def open_binary(path: Path) -> BinaryStream:
    """A file's bytes, decompressed when its name ends in .gz or .zst/.zstd."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith((".zst", ".zstd")):
        try:
            import zstandard
        except ImportError:  # pragma: no cover - zstandard is a dependency
            raise WorkbenchError(
                "reading .zst files needs the zstandard package",
                file=path,
                fix="pip install zstandard",
            ) from None
        reader = zstandard.ZstdDecompressor().stream_reader(
            path.open("rb"), read_across_frames=True, closefd=True
        )
        # The zstd reader has no readline(): a buffered reader on top gives it one.
        return io.BufferedReader(cast(io.RawIOBase, reader), buffer_size=1 << 20)
    return path.open("rb")


@dataclass
class RecordReader:
    """Stream a file's records as string batches with line numbers.

    Iterate to get batches (polars frames of the header's columns as strings, plus ``line``
    and ``__problem``); ``header``, ``rows_read`` and ``blank_lines`` are filled as it goes.
    """

    path: Path
    required: Sequence[str] = ()
    optional: Iterable[str] = ()
    delimiter: str = ","
    has_header: bool = True
    column_names: Sequence[str] | None = None
    format: Format | None = None
    block_bytes: int = _BLOCK_BYTES

    def __post_init__(self) -> None:
        self.header: tuple[str, ...] = ()
        self.rows_read = 0
        self.blank_lines = 0
        self._wanted = list(self.required) + [c for c in self.optional if c not in self.required]
        if not self.path.exists():
            raise WorkbenchError(
                "file not found", file=self.path, fix="check the path and try again"
            )
        if self.path.is_dir():
            raise WorkbenchError(
                "is a folder, not a file", file=self.path, fix="name a file inside it"
            )
        self.kind: Format = self.format or file_format(self.path)

    # -- public -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[pl.DataFrame]:
        try:
            if self.kind == "parquet":
                yield from self._parquet()
            else:
                yield from self._text()
        except WorkbenchError:
            raise
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise WorkbenchError(f"cannot read file: {exc}", file=self.path) from None

    def read_all(self) -> pl.DataFrame:
        """All records in one frame (for small files)."""
        batches = list(self)
        if not batches:
            return self._empty()
        return pl.concat(batches, how="diagonal_relaxed")

    # -- helpers ----------------------------------------------------------------------
    def _empty(self) -> pl.DataFrame:
        names = list(dict.fromkeys([*self.header, *self._wanted]))
        return pl.DataFrame(
            schema={**{n: pl.String for n in names}, "line": pl.Int64, PROBLEM_COLUMN: pl.String}
        )

    def _check_header(self, header: Sequence[str], line: int) -> None:
        missing = [c for c in self.required if c not in header]
        if missing:
            raise WorkbenchError(
                f"missing required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (found: {', '.join(header) or 'nothing'})",
                file=self.path,
                line=line,
                field=missing[0],
                fix="rename the column in the file, or map it with a column map (--map)",
            )
        seen: set[str] = set()
        for name in header:
            if name in seen:
                raise WorkbenchError(
                    f"column '{name}' appears twice in the header",
                    file=self.path,
                    line=line,
                    field=name,
                    fix="remove one of them",
                )
            seen.add(name)

    def _finish(self, frame: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in self._wanted if c not in frame.columns]
        if missing:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in missing)
        self.rows_read += frame.height
        return frame

    # -- Parquet ----------------------------------------------------------------------
    def _parquet(self) -> Iterator[pl.DataFrame]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as exc:
            raise WorkbenchError(f"not a readable Parquet file: {exc}", file=self.path) from None
        self.header = tuple(parquet.schema_arrow.names)
        self._check_header(self.header, 1)
        offset = 1
        for batch in self._parquet_batches(parquet):
            frame = batch.with_columns(_as_text(batch.schema[c], c) for c in batch.columns)
            frame = frame.with_columns(
                pl.int_range(offset, offset + frame.height, dtype=pl.Int64).alias("line"),
                pl.lit(None, dtype=pl.String).alias(PROBLEM_COLUMN),
            )
            offset += frame.height
            yield self._finish(frame)

    def _parquet_batches(self, parquet: pq.ParquetFile) -> Iterator[pl.DataFrame]:
        """Batches about as large as a text block: memory stays flat on big files.

        polars' own reader is faster and keeps less memory than pyarrow's batches; a file
        it cannot read from the start (a type it does not know) is read with pyarrow.
        """
        scan = pl.scan_parquet(self.path, glob=False)  # a name with [ or * is still one file
        batches = iter(scan.collect_batches(chunk_size=_PARQUET_ROWS))
        try:
            first = next(batches, None)
        except Exception:
            for batch in parquet.iter_batches(batch_size=_PARQUET_ROWS):
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame
            return
        if first is None:
            return
        try:
            if first.height:
                yield first
            for frame in batches:
                if frame.height:
                    yield frame
        except pl.exceptions.PolarsError as exc:
            raise WorkbenchError(f"not a readable Parquet file: {exc}", file=self.path) from None

    # -- delimited text and JSON Lines --------------------------------------------------
    def _text(self) -> Iterator[pl.DataFrame]:
        with open_binary(self.path) as stream:
            line_base = 0  # physical lines consumed before the current block
            header: list[str] | None = None
            if self.kind == "csv" and self.has_header:
                header, line_base = self._read_header(stream)
            elif self.kind == "csv":
                header = list(self.column_names or self.required)
                if not header:
                    raise WorkbenchError(
                        "no column names for a file without a header",
                        file=self.path,
                        fix="set column_names in the column map",
                    )
            if header is not None:
                self.header = tuple(header)
                self._check_header(header, max(line_base, 1))
            leftover = b""
            while True:
                chunk = stream.read(self.block_bytes)
                block = leftover + chunk
                if not chunk:
                    if not block:
                        break
                    if not block.endswith(b"\n"):
                        block += b"\n"
                    leftover = b""
                else:
                    cut = block.rfind(b"\n")
                    if cut < 0:
                        leftover = block
                        continue
                    block, leftover = block[: cut + 1], block[cut + 1 :]
                frame, lines = self._parse_block(block, line_base)
                line_base += lines
                if frame is not None and frame.height:
                    yield self._finish(frame)
                if not chunk:
                    break
            if self.kind == "csv" and header is None:  # pragma: no cover - guarded above
                raise WorkbenchError("file is empty (no header line)", file=self.path, line=1)

    def _read_header(self, stream: BinaryStream) -> tuple[list[str], int]:
        lines = 0
        while True:
            raw = stream.readline()
            if not raw:
                raise WorkbenchError(
                    "file is empty (no header line)",
                    file=self.path,
                    line=1,
                    field=self.required[0] if self.required else None,
                    fix=f"export it with a header line: {self.delimiter.join(self.required)}",
                )
            lines += 1
            text = raw.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
            if not text:
                self.blank_lines += 1
                continue
            try:
                fields = next(csv.reader([text], delimiter=self.delimiter))
            except csv.Error as exc:
                raise WorkbenchError(
                    f"the header line is not readable CSV ({exc})",
                    file=self.path,
                    line=lines,
                    fix="export the file again with a plain header line",
                ) from None
            return [f.strip() for f in fields], lines

    def _parse_block(self, block: bytes, line_base: int) -> tuple[pl.DataFrame | None, int]:
        data = np.frombuffer(block, dtype=np.uint8)
        ends = np.flatnonzero(data == _NEWLINE)
        n_lines = int(ends.size)
        starts = np.empty(n_lines, dtype=np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        content_ends = ends.copy()
        has_cr = (ends > starts) & (data[np.maximum(ends - 1, 0)] == _CARRIAGE)
        content_ends[has_cr] -= 1
        blank = content_ends == starts
        fields: np.ndarray | None = None
        guessed = False
        if self.kind == "csv":
            width = len(self.header)
            separators = data == ord(self.delimiter)
            filled = n_lines - int(blank.sum())
            if (
                width > 1
                and int(np.count_nonzero(separators)) == filled * (width - 1)
                and not np.any(data == _QUOTE)
            ):
                # The block holds exactly as many separators as well-formed lines would. A
                # line with too many fields makes the strict parse below fail, and then every
                # line is counted; so here every non-empty line has exactly `width` fields.
                fields = np.full(n_lines, width, dtype=np.int64)
                guessed = True
            else:
                fields = _fields_per_line(separators, starts, ends)
        # Whitespace-only lines are blank too. They have no separator (CSV) or are short
        # (JSON), so only those few candidates are looked at one by one.
        if guessed:
            candidates = np.zeros(0, dtype=np.int64)
        elif fields is not None and len(self.header) > 1:
            candidates = np.flatnonzero((fields == 1) & ~blank)
        else:
            candidates = np.flatnonzero(((content_ends - starts) <= 64) & ~blank)
        for index in candidates:
            if not block[starts[index] : content_ends[index]].strip():
                blank[index] = True
        n_blank = int(blank.sum())
        self.blank_lines += n_blank
        line_numbers = line_base + 1 + np.arange(n_lines, dtype=np.int64)
        if n_blank:
            keep = ~blank
            # Drop the blank lines' bytes (few lines) with one mask over the block.
            keep_bytes = np.ones(data.size, dtype=bool)
            for index in np.flatnonzero(blank):
                keep_bytes[starts[index] : ends[index] + 1] = False
            kept_block = data[keep_bytes].tobytes()
            line_numbers = line_numbers[keep]
            if fields is not None:
                fields = fields[keep]
            data = np.frombuffer(kept_block, dtype=np.uint8)
            ends = np.flatnonzero(data == _NEWLINE)
            block = kept_block
        n_records = int(line_numbers.size)
        if n_records == 0:
            return None, n_lines
        try:
            text_ok = True
            block.decode("utf-8")
        except UnicodeDecodeError:
            text_ok = False
        if self.kind == "jsonl":
            frame = self._parse_jsonl(block, n_records)
        else:
            assert fields is not None
            frame = self._parse_csv(block, data, ends, fields, n_records, guessed=guessed)
        frame = frame.with_columns(pl.Series("line", line_numbers, dtype=pl.Int64))
        text_columns = [
            c for c in frame.columns if frame.schema[c] == pl.String and c != PROBLEM_COLUMN
        ]
        if not text_ok and text_columns:
            bad_utf8 = pl.any_horizontal(
                pl.col(c).str.contains("\ufffd", literal=True).fill_null(False)
                for c in text_columns
            )
            frame = frame.with_columns(
                pl.when(bad_utf8 & pl.col(PROBLEM_COLUMN).is_null())
                .then(pl.lit("line is not valid UTF-8"))
                .otherwise(pl.col(PROBLEM_COLUMN))
                .alias(PROBLEM_COLUMN)
            )
        return frame, n_lines

    def _parse_csv(
        self,
        block: bytes,
        data: np.ndarray,
        ends: np.ndarray,
        fields: np.ndarray,
        n_records: int,
        *,
        guessed: bool = False,
    ) -> pl.DataFrame:
        header = list(self.header)
        width = len(header)
        if guessed:
            try:
                strict = self._read_block(block, header, ragged=False)
                if strict.height == n_records:
                    # No quotes in the block, so no quoted "" either: polars already reads
                    # every empty field as null.
                    return strict.with_columns(pl.lit(None, dtype=pl.String).alias(PROBLEM_COLUMN))
            except Exception:
                pass
            # A ragged line after all: count every line's fields.
            starts = np.concatenate([[0], ends[:-1] + 1])
            fields = _fields_per_line(data == ord(self.delimiter), starts, ends)
        quoted = np.zeros(n_records, dtype=bool)
        quote_positions = np.flatnonzero(data == _QUOTE)
        if quote_positions.size:
            quoted[np.searchsorted(ends, quote_positions)] = True
        frame: pl.DataFrame | None = None
        try:
            frame = self._read_block(block, header, ragged=True)
        except Exception:
            frame = None
        text_lines: list[str] | None = None
        if frame is None or frame.height != n_records:
            # The fast parse did not give one record per line (a quote left open, say):
            # re-read the block line by line so a bad line spoils only itself.
            text_lines = block.decode("utf-8", errors="replace").split("\n")[:n_records]
            return self._parse_lines(text_lines, header)
        found = np.where(fields != width, fields, 0)
        if quoted.any():
            # Separators inside quotes were counted above: count those lines properly.
            text_lines = block.decode("utf-8", errors="replace").split("\n")[:n_records]
            for index in np.flatnonzero(quoted):
                try:
                    parsed = next(
                        csv.reader(
                            [text_lines[index].removesuffix("\r")],
                            delimiter=self.delimiter,
                            strict=True,
                        )
                    )
                    found[index] = 0 if len(parsed) == width else len(parsed)
                except csv.Error:
                    found[index] = -1
        frame = frame.with_columns(_empty_to_null(header))
        return frame.with_columns(_problem_column(found, width))

    def _read_block(self, block: bytes, header: list[str], *, ragged: bool) -> pl.DataFrame:
        """Parse a block with polars, every field as text; ``ragged`` tolerates extra fields."""
        return pl.read_csv(
            io.BytesIO(block),
            has_header=False,
            new_columns=header,
            schema={name: pl.String for name in header},
            separator=self.delimiter,
            truncate_ragged_lines=ragged,
            encoding="utf8-lossy",
            raise_if_empty=False,
        )

    def _parse_lines(self, text_lines: list[str], header: list[str]) -> pl.DataFrame:
        width = len(header)
        columns: list[list[str | None]] = [[] for _ in header]
        problems: list[str | None] = []
        for text in text_lines:
            line = text.removesuffix("\r")
            problem: str | None = None
            try:
                parsed = next(csv.reader([line], delimiter=self.delimiter, strict=True))
                if len(parsed) != width:
                    problem = f"expected {width} fields, found {len(parsed)}"
            except csv.Error as exc:
                parsed = line.split(self.delimiter)
                problem = f"malformed CSV line ({exc}): fix its quoting"
            padded = (parsed + [""] * width)[:width]
            for column, value in zip(columns, padded, strict=True):
                column.append(value if value != "" else None)
            problems.append(problem)
        return pl.DataFrame(
            {**dict(zip(header, columns, strict=True)), PROBLEM_COLUMN: problems},
            schema={**{name: pl.String for name in header}, PROBLEM_COLUMN: pl.String},
        )

    def _parse_jsonl(self, block: bytes, n_records: int) -> pl.DataFrame:
        try:
            frame = pl.read_ndjson(io.BytesIO(block), infer_schema_length=None)
            if frame.height == n_records:
                frame = frame.with_columns(_as_text(frame.schema[c], c) for c in frame.columns)
                return self._jsonl_finish(frame)
        except Exception:
            pass
        rows: list[dict[str, object]] = []
        problems: list[str | None] = []
        raw: list[str | None] = []
        for text in block.decode("utf-8", errors="replace").split("\n")[:n_records]:
            try:
                value = json.loads(text)
                if not isinstance(value, dict):
                    raise ValueError("not a JSON object")
                _check_text(value)
                rows.append(value)
                problems.append(None)
                raw.append(None)
            except UnicodeEncodeError:
                rows.append({})
                problems.append("line holds a lone surrogate escape (\\udXXX): not text")
                raw.append(_printable(text))
            except ValueError as exc:
                rows.append({})
                problems.append(f"not a JSON object: {str(exc)[:80]}")
                raw.append(_printable(text))
        frame = (
            _frame_of_records(rows) if any(rows) else pl.DataFrame({"__empty": [None] * n_records})
        )
        if frame.height != n_records:  # pragma: no cover - from_dicts keeps one row each
            frame = pl.DataFrame({"__empty": [None] * n_records})
        frame = frame.with_columns(_as_text(frame.schema[c], c) for c in frame.columns)
        # A line that is no JSON object keeps its text (RAW_COLUMN): it is the record the
        # quarantine shows, and two different broken lines are not duplicates of each other.
        frame = frame.with_columns(
            pl.Series(PROBLEM_COLUMN, problems, dtype=pl.String),
            pl.Series(RAW_COLUMN, raw, dtype=pl.String),
        )
        return self._jsonl_finish(frame, has_problem=True)

    def _jsonl_finish(self, frame: pl.DataFrame, *, has_problem: bool = False) -> pl.DataFrame:
        if "__empty" in frame.columns:
            frame = frame.drop("__empty")
        if not self.header:
            self.header = tuple(c for c in frame.columns if c not in (PROBLEM_COLUMN, RAW_COLUMN))
        if not has_problem:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(PROBLEM_COLUMN))
        return frame


def _printable(text: str) -> str:
    """A broken line's text as it can be stored (lone surrogates replaced)."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _check_text(value: object) -> None:
    """Raise UnicodeEncodeError if JSON gave text no UTF-8 can hold (a lone surrogate)."""
    json.dumps(value, ensure_ascii=False).encode("utf-8")


def _frame_of_records(rows: list[dict[str, object]]) -> pl.DataFrame:
    """JSON objects as one frame, even when a key's values differ in type across lines.

    Such a key (a number here, text there) comes as text, JSON-encoded where not a string,
    for validation to judge.
    """
    try:
        return pl.from_dicts(rows, infer_schema_length=None)
    except (TypeError, ValueError, OverflowError, pl.exceptions.PolarsError):
        texts = [
            {
                key: value if value is None or isinstance(value, str) else json.dumps(value)
                for key, value in row.items()
            }
            for row in rows
        ]
        names = list(dict.fromkeys(key for row in texts for key in row))
        return pl.from_dicts(texts, schema={name: pl.String for name in names})


def _fields_per_line(separators: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Fields of each line, from a running count of separators (exact, one pass)."""
    running = np.cumsum(separators, dtype=np.int32)
    before = np.where(starts > 0, running[np.maximum(starts - 1, 0)], 0)
    return np.asarray(running[ends] - before + 1, dtype=np.int64)


def _as_text(dtype: pl.DataType, column: str) -> pl.Expr:
    """Keep strings and nested values; render scalars as text in a lossless, ISO form."""
    if dtype == pl.String or isinstance(dtype, (pl.Struct, pl.List)):
        return pl.col(column)
    if isinstance(dtype, pl.Datetime):
        expr = pl.col(column)
        if dtype.time_zone is None:
            expr = expr.dt.replace_time_zone("UTC")
        return expr.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ").alias(column)
    return pl.col(column).cast(pl.String)


def _empty_to_null(columns: Sequence[str]) -> list[pl.Expr]:
    return [pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in columns]


def _problem_column(found: np.ndarray, width: int) -> pl.Series:
    """Per record: null if it had ``width`` fields, else why not (-1: broken quoting)."""
    if not found.any():
        return pl.Series(PROBLEM_COLUMN, [None] * found.size, dtype=pl.String)
    counts = pl.Series("__found", found, dtype=pl.Int64)
    return pl.select(
        pl.when(counts == 0)
        .then(None)
        .when(counts < 0)
        .then(pl.lit("malformed CSV line: fix its quoting"))
        .otherwise(pl.format("expected {} fields, found {}", pl.lit(width), counts))
        .cast(pl.String)
        .alias(PROBLEM_COLUMN)
    ).to_series()


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


def read_delimited(
    path: Path,
    *,
    required: Sequence[str],
    optional: Iterable[str] = (),
    delimiter: str = ",",
) -> RawTable:
    """Read a whole (small) delimited file into strings, one row per data line."""
    reader = RecordReader(
        path, required=required, optional=optional, delimiter=delimiter, format="csv"
    )
    frame = reader.read_all()
    return RawTable(path=path, frame=frame, blank_lines=reader.blank_lines, header=reader.header)


def split_broken_rows(
    frame: pl.DataFrame, *, table: str, source: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Separate rows the reader could not split right from the rest.

    Returns the sound rows (without ``__problem``) and a quarantine frame for the broken
    ones, with field ``line``, the reader's reason and the raw fields as JSON.
    """
    data_columns = [c for c in frame.columns if c != "line" and not c.startswith("__")]
    broken = frame.filter(pl.col(PROBLEM_COLUMN).is_not_null())
    sound = frame.filter(pl.col(PROBLEM_COLUMN).is_null()).drop(PROBLEM_COLUMN)
    fields = pl.struct(data_columns).struct.json_encode()
    if RAW_COLUMN in frame.columns:
        sound = sound.drop(RAW_COLUMN)
        fields = pl.coalesce(pl.col(RAW_COLUMN), fields)
    quarantine = broken.select(
        pl.lit(table).alias("table"),
        pl.lit(source).alias("source"),
        pl.col("line").cast(pl.Int64),
        pl.lit("line").alias("field"),
        pl.lit(None, dtype=pl.String).alias("value"),
        pl.col(PROBLEM_COLUMN).alias("reason"),
        fields.alias("record"),
    )
    return sound, quarantine
