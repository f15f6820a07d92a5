r"""Column maps: a scheduler export of any shape -> the canonical job-record columns.

A column map is a small TOML file (or a shipped preset: ``generic``, ``slurm-sacct``,
``k8s-pods``) that says where each canonical job column comes from, so a user can ingest
``sacct`` output or a Kubernetes pod list with ``workbench ingest jobs FILE --map MAP`` and
no code change. This module loads maps (:func:`load_column_map`) and applies them to raw
rows (:func:`apply_column_map`); reading files and validating rows are done elsewhere.

Invariants of :func:`apply_column_map`:

* every input row comes back exactly once: in ``mapped`` or, if an ``[[exclude]]`` rule
  matched, in ``excluded`` with the rule's reason (rows the reader marked broken are never
  excluded, so they reach the quarantine);
* ``mapped`` has exactly the columns of :data:`MAPPED_SCHEMA`: the nine canonical job
  columns as strings (timestamps as ISO 8601 UTC, ``2026-01-05T13:22:10Z``; chips as a
  decimal number), ``running``, and ``line`` / ``__problem`` passed through;
* a value that cannot be converted is passed on as its raw text, so the job-record
  validator quarantines the row with a reason quoting it; nothing becomes null silently.

The TOML format (every key is optional; a map file may start from another map)::

    name = "my-cluster"
    extends = "slurm-sacct"             # a preset name, or a map file relative to this one
    missing_values = ["", "Unknown"]    # texts that mean "no value" ("" always does)

    [file]
    format = "csv"                      # csv | jsonl | parquet; omitted: from the extension
    delimiter = "|"                     # csv only (default ",")
    has_header = true                   # false: then name them, column_names = ["id", ...]
    timezone = "America/Chicago"        # IANA name for naive timestamps (default UTC)
    export_time = 2026-01-05T12:00:00Z  # when the file was exported (cuts running jobs)

    [timestamps]                        # default unit of the three timestamp columns
    unit = "iso"                        # iso | epoch_s | epoch_ms | seconds_since
    origin = 2026-01-01T00:00:00Z       # the zero of seconds_since

    [columns]                           # canonical column = where it comes from
    job_id = "JobID"                                    # a source column (or path)
    team = ["metadata.labels.team", "metadata.namespace"]  # first non-missing wins
    region = { value = "us-central1" }                  # a constant
    submit_time = { column = "Submit", unit = "epoch_ms" }
    start_time = { column = "t0", unit = "seconds_since", origin = 2026-01-01T00:00:00 }
    chips = { expr = "gpus * share", inputs = { share = { column = "frac", default = "1" } } }
    accelerator = { column = "AllocTRES", regex = 'gres/gpu:([^=,:]+)=' }
    workload = { column = "QOS", values = { high = "serving", low = "batch" }, default = "unknown" }

    [[exclude]]                         # rows to leave out, each rule with its reason
    column = "JobID"
    contains = "."                      # also: not_contains, regex, not_regex, equals, missing
    reason = "job step"

Rules of one column (a table under ``[columns]``): exactly one of ``column`` (a source path
or a list of them: the first that is not missing wins; a list's columns may be absent from
the file), ``value`` (a constant), ``expr`` (``chips`` only: ``+ - * /``, parentheses,
numbers and operand names; an operand is an entry of ``inputs`` if one has that name, else
a source path) or ``must_override`` (a preset's way of saying "you must set this"). Then,
in order: ``regex`` (one pattern or a list, first match wins; the first capture group, or
the whole match without groups, is kept; no match passes the raw text on), ``values`` (a
value map, matched trimmed and case-insensitively; an unlisted value passes through unless
``default`` is set), ``default`` (used when the value is missing or unlisted), ``unit`` and
``origin`` (timestamp columns), ``optional = true`` (the source column may be absent from
the file; ``workload`` of the generic map is). A column not named in ``[columns]`` is read
from the source column of the same name. With ``extends``, a column given here replaces the
base's whole rule, ``[file]`` and ``[timestamps]`` keys override one by one, and
``[[exclude]]`` rules are added to the base's. The presets ``slurm-sacct`` and ``k8s-pods``
leave ``region`` to the user: extend them, or pass ``overrides={"region": ...}`` to
:func:`load_column_map`.

:attr:`ColumnMap.source_columns` are the top-level columns a file must have;
:attr:`ColumnMap.optional_columns` are read when present.

Source paths: ``JobID`` names a column; for JSON Lines read as nested objects (polars
Struct and List columns) ``metadata.namespace`` steps into an object, ``containers[0]``
takes a list element, and a double-quoted segment holds dots, slashes or spaces:
``spec.containers[0].resources.requests."nvidia.com/gpu"``. Write a whole column name that
contains a dot in quotes too: ``'"job.id"'``. A path through a string column holding JSON
text is looked up inside that JSON. In ``expr``, a bare operand is ``[A-Za-z_]\w*`` with
the same dots, brackets and quotes: ``requests."nvidia.com/gpu" * "gpu share"``.

Timestamps: ``iso`` reads ``2026-01-05T13:22:10`` with or without fractional seconds, a
space instead of ``T``, minutes only, or a bare date; with ``Z`` or an offset it is exact,
without one it is local time in the map's ``timezone`` (an ambiguous hour at a DST change
takes the earlier instant; a time inside a DST gap is not a time there and is passed on
annotated, ``2026-03-08T02:30:00 (not a valid time in America/Chicago)``). ``epoch_s``,
``epoch_ms`` and ``seconds_since`` read decimal numbers. Naive ``export_time`` and
``origin`` values, in the file or as arguments, are in the map's ``timezone`` too.

Fill-ins: a missing end means the job was still running at the export: its end becomes the
export time and ``running`` is true. A missing start means it never ran (pending, or
cancelled while pending): its start becomes its end, so it counts as queued from submit to
then. The export time given to :func:`apply_column_map` wins over the map's.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, cast

import polars as pl

from workbench.errors import WorkbenchError
from workbench.schema import JOB_RECORDS

__all__ = [
    "CANONICAL_COLUMNS",
    "EXCLUDED_SCHEMA",
    "FILE_FORMATS",
    "MAPPED_SCHEMA",
    "TIMESTAMP_COLUMNS",
    "TIMESTAMP_UNITS",
    "ColumnMap",
    "ColumnMapResult",
    "ExcludeRule",
    "Expression",
    "FieldRule",
    "apply_column_map",
    "available_presets",
    "load_column_map",
    "parse_source_path",
]

FileFormat: TypeAlias = Literal["csv", "jsonl", "parquet"]
TimestampUnit: TypeAlias = Literal["iso", "epoch_s", "epoch_ms", "seconds_since"]
SourcePath: TypeAlias = tuple[str | int, ...]

FILE_FORMATS: tuple[str, ...] = ("csv", "jsonl", "parquet")
TIMESTAMP_UNITS: tuple[str, ...] = ("iso", "epoch_s", "epoch_ms", "seconds_since")
CANONICAL_COLUMNS: tuple[str, ...] = tuple(JOB_RECORDS.schema.names())
TIMESTAMP_COLUMNS: tuple[str, ...] = ("submit_time", "start_time", "end_time")
_TEXT_COLUMNS = tuple(c for c in CANONICAL_COLUMNS if c not in (*TIMESTAMP_COLUMNS, "chips"))

# The readers' marker of a row they could not split right (pipelines.readers.PROBLEM_COLUMN);
# spelled out here so this module does not depend on the reader being rewritten.
_PROBLEM = "__problem"
_LINE = "line"

MAPPED_SCHEMA = pl.Schema(
    [(c, pl.String()) for c in CANONICAL_COLUMNS]
    + [("running", pl.Boolean()), (_LINE, pl.Int64()), (_PROBLEM, pl.String())]
)
"""Columns of :attr:`ColumnMapResult.mapped`, in order."""

EXCLUDED_SCHEMA = pl.Schema([(_LINE, pl.Int64()), ("reason", pl.String()), ("record", pl.String())])
"""Columns of :attr:`ColumnMapResult.excluded`: the line, the rule's reason, the raw row as
JSON."""

_ISO_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
_UNIT_WORDS = {
    "iso": "an ISO 8601 timestamp",
    "epoch_s": "seconds since 1970-01-01 UTC",
    "epoch_ms": "milliseconds since 1970-01-01 UTC",
    "seconds_since": "seconds since the origin",
}
_US_PER_S = 1_000_000
# chrono's representable range (years 1 to 9999): beyond it polars cannot format a datetime.
_MIN_US = -62_135_596_800 * _US_PER_S
_MAX_US = 253_402_300_799 * _US_PER_S
_EXPR_HINT = "write + - * / over operand names, numbers and parentheses, e.g. 'gpus * gpu_share'"
_MAX_EXTENDS_DEPTH = 8
_MAX_CHUNKS = 64


# --------------------------------------------------------------------------- source paths


_BARE_SEGMENT = re.compile(r'[^."\[\]]+')
_INDEX = re.compile(r"\[\s*(\d+)\s*\]")


def parse_source_path(text: str) -> SourcePath:
    """Split a source path into names and list indexes.

    ``'spec.containers[0].resources.requests."nvidia.com/gpu"'`` becomes
    ``("spec", "containers", 0, "resources", "requests", "nvidia.com/gpu")``. Raises
    ``ValueError`` saying where the path is malformed.
    """
    source = text.strip()
    parts: list[str | int] = []
    position = 0
    want_name = True
    while position < len(source):
        char = source[position]
        if want_name:
            if char == '"':
                end = source.find('"', position + 1)
                if end < 0:
                    raise ValueError(f"unclosed quote at character {position + 1}")
                name = source[position + 1 : end]
                position = end + 1
            else:
                match = _BARE_SEGMENT.match(source, position)
                if match is None:
                    raise ValueError(f"expected a name at character {position + 1}")
                name = match.group().strip()
                position = match.end()
            if not name:
                raise ValueError(f"empty name at character {position}")
            parts.append(name)
            want_name = False
        elif char == ".":
            want_name = True
            position += 1
        elif char == "[":
            index = _INDEX.match(source, position)
            if index is None:
                raise ValueError(f"expected an index like [0] at character {position + 1}")
            parts.append(int(index.group(1)))
            position = index.end()
        else:
            raise ValueError(f"unexpected {char!r} at character {position + 1}")
    if want_name:
        raise ValueError("the path is empty" if not parts else "the path ends with '.'")
    return tuple(parts)


def _top_column(text: str) -> str:
    first = parse_source_path(text)[0]
    return str(first)


# ---------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class _Number:
    value: float


@dataclass(frozen=True)
class _Operand:
    name: str


@dataclass(frozen=True)
class _Negate:
    operand: _Node


@dataclass(frozen=True)
class _Binary:
    op: str
    left: _Node
    right: _Node


_Node: TypeAlias = _Number | _Operand | _Negate | _Binary

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<operand>(?:[A-Za-z_]\w*|"[^"]*")(?:\.(?:[A-Za-z_]\w*|"[^"]*")|\[\d+\])*)
      | (?P<op>[-+*/()])
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Expression:
    """An arithmetic expression over operands and numbers: ``+ - * /`` and parentheses.

    Parsed by a small recursive-descent parser (no ``eval``); ``*`` and ``/`` bind tighter
    than ``+`` and ``-``, all are left-associative, and a leading ``-`` negates.
    """

    text: str
    root: _Node = field(repr=False)
    tokens: tuple[tuple[str, str], ...] = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> Expression:
        """Parse ``text``; raises ``ValueError`` naming the column where it goes wrong."""
        tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            if text[position:].strip() == "":
                break
            match = _TOKEN.match(text, position)
            if match is None or match.lastgroup is None:
                column = position + len(text[position:]) - len(text[position:].lstrip()) + 1
                raise ValueError(f"unexpected {text[column - 1]!r} at column {column}")
            kind = match.lastgroup
            tokens.append((kind, match.group(kind), match.start(kind) + 1))
            position = match.end()
        if not tokens:
            raise ValueError("the expression is empty")
        parser = _Parser(tokens)
        root = parser.expression()
        if parser.index < len(tokens):
            _, value, column = tokens[parser.index]
            raise ValueError(f"unexpected {value!r} at column {column}")
        return cls(text=text, root=root, tokens=tuple((k, v) for k, v, _ in tokens))

    @property
    def operands(self) -> tuple[str, ...]:
        """Operand names in order of first appearance."""
        return tuple(dict.fromkeys(v for k, v in self.tokens if k == "operand"))

    def evaluate(self, numbers: Mapping[str, pl.Expr]) -> pl.Expr:
        """The expression as a Float64 polars expression, given each operand's number."""

        def build(node: _Node) -> pl.Expr:
            if isinstance(node, _Number):
                return pl.lit(node.value, dtype=pl.Float64)
            if isinstance(node, _Operand):
                return numbers[node.name]
            if isinstance(node, _Negate):
                return -build(node.operand)
            left, right = build(node.left), build(node.right)
            if node.op == "+":
                return left + right
            if node.op == "-":
                return left - right
            if node.op == "*":
                return left * right
            return left / right

        return build(self.root)

    def render(self, texts: Mapping[str, pl.Expr]) -> pl.Expr:
        """The expression with each operand replaced by its raw text (``null`` if missing)."""
        parts: list[pl.Expr] = []
        previous = ""
        for kind, value in self.tokens:
            spaced = bool(parts) and previous != "(" and value != ")"
            if spaced:
                parts.append(pl.lit(" "))
            if kind == "operand":
                parts.append(texts[value].fill_null("null"))
            else:
                parts.append(pl.lit(value))
            previous = value
        return pl.concat_str(parts)


class _Parser:
    """Recursive descent over tokens: expression := term (('+'|'-') term)*, and so on."""

    def __init__(self, tokens: list[tuple[str, str, int]]) -> None:
        self.tokens = tokens
        self.index = 0

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def expression(self) -> _Node:
        node = self.term()
        while (token := self._peek()) is not None and token[1] in ("+", "-"):
            self.index += 1
            node = _Binary(token[1], node, self.term())
        return node

    def term(self) -> _Node:
        node = self.factor()
        while (token := self._peek()) is not None and token[1] in ("*", "/"):
            self.index += 1
            node = _Binary(token[1], node, self.factor())
        return node

    def factor(self) -> _Node:
        token = self._peek()
        if token is None:
            raise ValueError("the expression ends too early")
        kind, value, column = token
        self.index += 1
        if kind == "number":
            return _Number(float(value))
        if kind == "operand":
            parse_source_path(value)
            return _Operand(value)
        if value == "-":
            return _Negate(self.factor())
        if value == "+":
            return self.factor()
        if value == "(":
            inner = self.expression()
            closing = self._peek()
            if closing is None or closing[1] != ")":
                raise ValueError(f"the '(' at column {column} is not closed")
            self.index += 1
            return inner
        raise ValueError(f"unexpected {value!r} at column {column}")


# ------------------------------------------------------------------------------ the map


@dataclass(frozen=True)
class FieldRule:
    """Where one canonical column comes from and how its text is converted.

    Exactly one of ``columns``, ``value``, ``expr`` or ``must_override`` is set. See the
    module docstring for the order in which ``regex``, ``values`` and ``default`` apply.
    """

    columns: tuple[str, ...] = ()
    """Source paths; the first that is not missing wins."""
    value: str | None = None
    """A constant text."""
    expr: Expression | None = None
    """``chips`` only: arithmetic over ``inputs`` and source paths."""
    inputs: Mapping[str, FieldRule] = field(default_factory=dict)
    """Named operands of ``expr`` (each a rule without ``expr``)."""
    regex: tuple[str, ...] = ()
    """Patterns tried in order; the first capture group of the first match is kept."""
    values: Mapping[str, str] = field(default_factory=dict)
    """Value map: lower-cased trimmed source text -> output text."""
    default: str | None = None
    """The text when the value is missing, or not listed in ``values``."""
    unit: TimestampUnit | None = None
    """Timestamp columns: the unit (None: the map's ``timestamp_unit``)."""
    origin: datetime | None = None
    """Zero of ``seconds_since`` (None: the map's ``timestamp_origin``)."""
    optional: bool = False
    """The source column may be absent from the file (then the value is missing)."""
    must_override: str | None = None
    """A preset's note: this column has no sensible default; the user must set it."""
    defined_in: str = field(default="", compare=False)
    """The map file this rule was written in, for messages."""

    def paths(self) -> tuple[str, ...]:
        """Every source path this rule reads, inputs and expression operands included."""
        found = list(self.columns)
        if self.expr is not None:
            for name in self.expr.operands:
                found.extend(self.inputs[name].paths() if name in self.inputs else (name,))
        return tuple(dict.fromkeys(found))

    def required_paths(self) -> tuple[str, ...]:
        """Source paths whose top-level column must be in the file."""
        if self.optional:
            return ()
        found: list[str] = []
        if len(self.columns) == 1:
            found.append(self.columns[0])
        if self.expr is not None:
            for name in self.expr.operands:
                found.extend(self.inputs[name].required_paths() if name in self.inputs else (name,))
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class ExcludeRule:
    """Leave out rows whose ``columns`` value meets every condition given; say why.

    ``contains``/``not_contains`` are literal, ``regex``/``not_regex`` search, ``equals`` is
    exact; on a missing value they all fail (only ``missing = true`` matches it).
    """

    columns: tuple[str, ...]
    reason: str
    contains: str | None = None
    not_contains: str | None = None
    regex: str | None = None
    not_regex: str | None = None
    equals: tuple[str, ...] | None = None
    missing: bool | None = None
    optional: bool = False
    defined_in: str = field(default="", compare=False)


@dataclass(frozen=True)
class ColumnMap:
    """How one export's columns become the canonical job columns.

    File settings are for the reader (:meth:`format_for`, ``delimiter``, ``has_header``,
    ``column_names``); the rest is used by :func:`apply_column_map`. ``export_time`` and
    ``timestamp_origin`` are timezone-aware (UTC) once loaded.
    """

    name: str
    columns: Mapping[str, FieldRule] = field(default_factory=dict)
    """Canonical column -> rule; a column not listed reads the source column of its name."""
    format: FileFormat | None = None
    delimiter: str = ","
    has_header: bool = True
    column_names: tuple[str, ...] | None = None
    timezone: str = "UTC"
    export_time: datetime | None = None
    timestamp_unit: TimestampUnit = "iso"
    timestamp_origin: datetime | None = None
    missing_values: tuple[str, ...] = ("",)
    exclude: tuple[ExcludeRule, ...] = ()
    source: str = ""
    """The file (or preset) the map was loaded from."""

    def rule(self, column: str) -> FieldRule:
        """The rule of a canonical column (the same-named source column if none is set)."""
        rule = self.columns.get(column)
        if rule is None:
            return FieldRule(columns=(column,), optional=column == "workload")
        return rule

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Top-level source columns the map needs: the file must have them (in map order).

        For the reader's required-column check. Columns of a multi-entry list, of
        ``optional`` rules and of optional exclude rules are in :attr:`optional_columns`.
        """
        paths = [p for c in CANONICAL_COLUMNS for p in self.rule(c).required_paths()]
        paths += [
            rule.columns[0] for rule in self.exclude if len(rule.columns) == 1 and not rule.optional
        ]
        return tuple(dict.fromkeys(_top_column(p) for p in paths))

    @property
    def optional_columns(self) -> tuple[str, ...]:
        """Top-level source columns the map reads when present (absent: values missing)."""
        paths = [p for c in CANONICAL_COLUMNS for p in self.rule(c).paths()]
        paths += [p for rule in self.exclude for p in rule.columns]
        needed = set(self.source_columns)
        return tuple(c for c in dict.fromkeys(_top_column(p) for p in paths) if c not in needed)

    def format_for(self, path: str | Path) -> FileFormat:
        """The file format: the map's ``format``, or else the one the extension names."""
        if self.format is not None:
            return self.format
        suffixes = [s.lower() for s in Path(path).suffixes]
        if suffixes and suffixes[-1] in (".gz", ".zst", ".bz2"):
            suffixes = suffixes[:-1]
        last = suffixes[-1] if suffixes else ""
        if last in (".csv", ".txt"):
            return "csv"
        if last in (".jsonl", ".ndjson"):
            return "jsonl"
        if last in (".parquet", ".pq"):
            return "parquet"
        raise WorkbenchError(
            f"cannot tell the format of '{Path(path).name}' from its extension",
            file=path,
            field="file.format",
            fix='set format = "csv", "jsonl" or "parquet" in the column map\'s [file] table',
        )


@dataclass(frozen=True)
class ColumnMapResult:
    """Raw rows after a column map: the mapped ones and the ones a map rule excluded."""

    mapped: pl.DataFrame
    """Columns of :data:`MAPPED_SCHEMA`, all strings but ``running`` and ``line``."""
    excluded: pl.DataFrame
    """Columns of :data:`EXCLUDED_SCHEMA`: ``line``, ``reason`` and the raw ``record``."""

    @property
    def rows_in(self) -> int:
        """Rows that went in: mapped plus excluded."""
        return self.mapped.height + self.excluded.height


# ------------------------------------------------------------------------------ loading


def _presets_dir() -> Path:
    return Path(str(resources.files("pipelines").joinpath("presets")))


def available_presets() -> tuple[str, ...]:
    """Names of the column maps shipped with the package (``pipelines/presets/*.toml``)."""
    return tuple(sorted(p.stem for p in _presets_dir().glob("*.toml")))


@dataclass(frozen=True)
class _Doc:
    """One map file being read: where it is and its text, for messages that point at it."""

    path: Path
    text: str

    def error(
        self, keys: Sequence[str | int], message: str, fix: str, *, line: int | None = None
    ) -> WorkbenchError:
        return WorkbenchError(
            message,
            file=self.path,
            line=line if line is not None else _line_of(self.text, keys),
            field=_key_name(keys),
            fix=fix,
        )


def _key_name(keys: Sequence[str | int]) -> str:
    name = ""
    for key in keys:
        if isinstance(key, int):
            name += f"[{key}]"
        else:
            plain = re.fullmatch(r"[A-Za-z0-9_-]+", key) is not None
            part = key if plain else f'"{key}"'
            name += f".{part}" if name else part
    return name


def _line_of(text: str, keys: Sequence[str | int]) -> int | None:
    """Best-effort 1-based line where a key path is written (tomllib does not say)."""
    position = 0
    found: int | None = None
    previous: re.Pattern[str] | None = None
    for key in keys:
        if isinstance(key, int):
            if previous is None:
                return found
            # The n-th [[table]] of an array of tables (1-based).
            position = 0
            for count, occurrence in enumerate(previous.finditer(text), start=1):
                if count == key:
                    position = found = occurrence.start()
                    break
            continue
        pattern = re.compile(
            r"(?<![\w-])[\"']?" + re.escape(key) + r"[\"']?\s*(?:=|\]|\.(?=[\w\"']))"
        )
        match = next(
            (
                m
                for m in pattern.finditer(text, position)
                if "#" not in text[text.rfind("\n", 0, m.start()) + 1 : m.start()]
            ),
            None,
        )
        if match is None:
            break
        position = found = match.start()
        previous = pattern
    if found is None:
        return None
    return text.count("\n", 0, found) + 1


def _locate(spec: str | Path, *, base: _Doc | None) -> Path:
    """The file a map spec names: a preset name, or a path (relative to ``base``'s folder)."""
    key = "extends" if base is not None else "map"
    presets = available_presets()
    if isinstance(spec, str) and spec in presets:
        return _presets_dir() / f"{spec}.toml"
    path = Path(spec)
    if base is not None and not path.is_absolute():
        path = base.path.parent / path
    looks_like_file = (
        isinstance(spec, Path) or "/" in spec or "\\" in spec or spec.endswith(".toml")
    )
    if path.is_file():
        return path
    if not looks_like_file:
        raise WorkbenchError(
            f"unknown column map preset '{spec}'",
            file=base.path if base is not None else spec,
            line=_line_of(base.text, ["extends"]) if base is not None else None,
            field=key,
            fix=f"use one of {', '.join(presets)}, or the path of a column map TOML file",
        )
    if path.is_dir():
        raise WorkbenchError(
            "is a folder, not a column map file",
            file=path,
            field=key,
            fix="name the .toml file inside it",
        )
    raise WorkbenchError(
        "column map file not found",
        file=path,
        field=key,
        fix=f"check the path, or use a preset: {', '.join(presets)}",
    )


def _read_doc(path: Path) -> tuple[_Doc, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(
            f"cannot read column map: {exc}", file=path, fix="check the file's permissions"
        ) from None
    doc = _Doc(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line = getattr(exc, "lineno", None)
        # Before Python 3.14 the position is only in the text: "... (at line 3, column 5)".
        position = re.search(r" \(at line (\d+), column (\d+)\)$", message)
        if position:
            line = line or int(position.group(1))
            message = f"{message[: position.start()]} at column {position.group(2)}"
        key: str | None = None
        if line is not None and 0 < line <= len(text.splitlines()):
            written = text.splitlines()[line - 1]
            header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]", written)
            assignment = re.match(r"\s*([^=\s\[][^=]*?)\s*=", written)
            key = header.group(1) if header else assignment.group(1) if assignment else None
        raise WorkbenchError(
            f"not valid TOML: {message}",
            file=path,
            line=line,
            field=key,
            fix="correct the TOML syntax on that line (strings need quotes, tables [name])",
        ) from None
    return doc, data


_TOP_KEYS = (
    "name",
    "description",
    "extends",
    "missing_values",
    "file",
    "timestamps",
    "columns",
    "exclude",
)
_FILE_KEYS = ("format", "delimiter", "has_header", "column_names", "timezone", "export_time")
_TIMESTAMP_KEYS = ("unit", "origin")
_RULE_KEYS = (
    "column",
    "value",
    "expr",
    "inputs",
    "regex",
    "values",
    "default",
    "unit",
    "origin",
    "optional",
    "must_override",
)
_INPUT_KEYS = ("column", "value", "regex", "values", "default", "optional")
_EXCLUDE_KEYS = (
    "column",
    "reason",
    "contains",
    "not_contains",
    "regex",
    "not_regex",
    "equals",
    "missing",
    "optional",
)


def _check_keys(
    doc: _Doc, where: Sequence[str | int], table: Mapping[str, Any], allowed: Sequence[str]
) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            place = f"[{_key_name(where)}]" if where else "the top level"
            raise doc.error(
                [*where, key],
                f"unknown key '{key}' in {place}",
                f"{hint}known keys there: {', '.join(allowed)}",
            )


def _text(doc: _Doc, keys: Sequence[str | int], value: Any, *, scalar: bool = False) -> str:
    """A TOML string (or, where ``scalar``, a number or datetime) as text."""
    if isinstance(value, str):
        return value
    if scalar and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if scalar and isinstance(value, datetime | date):
        return value.isoformat()
    wanted = "a string or a number" if scalar else "a string"
    raise doc.error(
        keys,
        f"expected {wanted}, got {type(value).__name__} {value!r}",
        "write the value in double quotes",
    )


def _texts(doc: _Doc, keys: Sequence[str | int], value: Any) -> tuple[str, ...]:
    """A string or a non-empty list of strings."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise doc.error(keys, "the list is empty", "give at least one value")
    return tuple(_text(doc, [*keys], item) for item in items)


def _flag(doc: _Doc, keys: Sequence[str | int], value: Any) -> bool:
    if not isinstance(value, bool):
        raise doc.error(keys, f"expected true or false, got {value!r}", "write true or false")
    return value


def _table(doc: _Doc, keys: Sequence[str | int], value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise doc.error(
            keys,
            f"expected a table, got {type(value).__name__} {value!r}",
            f"write it as [{_key_name(keys)}] or {{ key = value }}",
        )
    return value


def _instant(doc: _Doc, keys: Sequence[str | int], value: Any) -> datetime:
    """A TOML datetime, date or ISO string; may be naive (resolved in the map's timezone)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise doc.error(
        keys,
        f"expected a date and time, got {value!r}",
        "write it like 2026-01-05T12:00:00Z (UTC) or 2026-01-05T12:00:00 (the map's timezone)",
    )


def _paths(doc: _Doc, keys: Sequence[str | int], value: Any) -> tuple[str, ...]:
    paths = _texts(doc, keys, value)
    for path in paths:
        try:
            parse_source_path(path)
        except ValueError as exc:
            raise doc.error(
                keys,
                f"bad source path '{path}': {exc}",
                'write a column name, or a path like metadata.labels."team.name" or items[0].x',
            ) from None
    return paths


def _pattern(doc: _Doc, keys: Sequence[str | int], pattern: str) -> str:
    try:
        pl.Series([""], dtype=pl.String).str.contains(pattern)
    except pl.exceptions.PolarsError as exc:
        detail = str(exc).split("\n\nThis error occurred")[0].replace("\n", " ")
        raise doc.error(
            keys,
            f"bad regular expression {pattern!r}: {detail}",
            "fix the pattern (Rust regex syntax: no look-around; write it in 'single quotes')",
        ) from None
    return pattern


def _regex_group(pattern: str) -> int:
    groups = pl.Series([""], dtype=pl.String).str.extract_groups(pattern).struct.fields
    return 1 if groups else 0


def _timezone(doc: _Doc, keys: Sequence[str | int], value: Any) -> str:
    name = _text(doc, keys, value)
    try:
        pl.Series([datetime(2000, 1, 1)]).dt.replace_time_zone(name)
    except pl.exceptions.PolarsError:
        raise doc.error(
            keys,
            f"unknown timezone '{name}'",
            "use an IANA name such as UTC, Europe/Berlin or America/Chicago",
        ) from None
    return name


def _unit(doc: _Doc, keys: Sequence[str | int], value: Any) -> TimestampUnit:
    unit = _text(doc, keys, value)
    if unit not in TIMESTAMP_UNITS:
        close = difflib.get_close_matches(unit, TIMESTAMP_UNITS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise doc.error(
            keys,
            f"unknown timestamp unit '{unit}'",
            f"{hint}use one of {', '.join(TIMESTAMP_UNITS)}",
        )
    return cast(TimestampUnit, unit)


def _rule(doc: _Doc, keys: list[str | int], column: str | None, value: Any) -> FieldRule:
    """Parse a rule of a canonical ``column``, or of an expression input (``column=None``)."""
    where = str(doc.path)
    if isinstance(value, str | list):
        return FieldRule(columns=_paths(doc, keys, value), defined_in=where)
    table = _table(doc, keys, value)
    _check_keys(doc, keys, table, _RULE_KEYS if column is not None else _INPUT_KEYS)
    sources = [k for k in ("column", "value", "expr", "must_override") if k in table]
    if len(sources) != 1:
        say = "none" if not sources else " and ".join(sources)
        raise doc.error(
            keys,
            f"needs exactly one of column, value{', expr' if column == 'chips' else ''}; "
            f"found {say}",
            'e.g. { column = "Account" } or { value = "us-central1" }',
        )
    timestamp = column in TIMESTAMP_COLUMNS
    for key, allowed, why in (
        ("expr", column == "chips", "expr is only for chips"),
        ("inputs", "expr" in table, "inputs name the operands of expr"),
        ("unit", timestamp, "unit is only for submit_time, start_time and end_time"),
        ("origin", timestamp, "origin is only for submit_time, start_time and end_time"),
    ):
        if key in table and not allowed:
            raise doc.error([*keys, key], f"'{key}' is not allowed here", why)

    expr: Expression | None = None
    inputs: dict[str, FieldRule] = {}
    if "expr" in table:
        text = _text(doc, [*keys, "expr"], table["expr"])
        try:
            expr = Expression.parse(text)
        except ValueError as exc:
            raise doc.error(
                [*keys, "expr"], f"bad expression '{text}': {exc}", _EXPR_HINT
            ) from None
        raw_inputs = _table(doc, [*keys, "inputs"], table.get("inputs", {}))
        for name, spec in raw_inputs.items():
            if name not in expr.operands:
                raise doc.error(
                    [*keys, "inputs", name],
                    f"input '{name}' is not used in expr '{text}'",
                    f"use it in expr, or remove it (operands: {', '.join(expr.operands)})",
                )
            inputs[name] = _rule(doc, [*keys, "inputs", name], None, spec)
    values: dict[str, str] = {}
    if "values" in table:
        for key, mapped in _table(doc, [*keys, "values"], table["values"]).items():
            values[key.strip().lower()] = _text(doc, [*keys, "values", key], mapped, scalar=True)
    regex = (
        tuple(
            _pattern(doc, [*keys, "regex"], p)
            for p in _texts(doc, [*keys, "regex"], table["regex"])
        )
        if "regex" in table
        else ()
    )
    return FieldRule(
        columns=_paths(doc, [*keys, "column"], table["column"]) if "column" in table else (),
        value=_text(doc, [*keys, "value"], table["value"], scalar=True)
        if "value" in table
        else None,
        expr=expr,
        inputs=MappingProxyType(inputs),
        regex=regex,
        values=MappingProxyType(values),
        default=_text(doc, [*keys, "default"], table["default"], scalar=True)
        if "default" in table
        else None,
        unit=_unit(doc, [*keys, "unit"], table["unit"]) if "unit" in table else None,
        origin=_instant(doc, [*keys, "origin"], table["origin"]) if "origin" in table else None,
        optional=_flag(doc, [*keys, "optional"], table["optional"])
        if "optional" in table
        else False,
        must_override=_text(doc, [*keys, "must_override"], table["must_override"])
        if "must_override" in table
        else None,
        defined_in=where,
    )


def _exclude(doc: _Doc, keys: list[str | int], value: Any) -> ExcludeRule:
    table = _table(doc, keys, value)
    _check_keys(doc, keys, table, _EXCLUDE_KEYS)
    for key in ("column", "reason"):
        if key not in table:
            raise doc.error(
                [*keys, key],
                f"an [[exclude]] rule needs '{key}'",
                'e.g. column = "JobID", contains = ".", reason = "job step"',
            )
    conditions = [k for k in _EXCLUDE_KEYS if k not in ("column", "reason", "optional")]
    if not any(k in table for k in conditions):
        raise doc.error(
            keys,
            "an [[exclude]] rule needs a condition",
            f"add one of {', '.join(conditions)}",
        )

    def text(key: str) -> str | None:
        return _text(doc, [*keys, key], table[key]) if key in table else None

    regex, not_regex = text("regex"), text("not_regex")
    return ExcludeRule(
        columns=_paths(doc, [*keys, "column"], table["column"]),
        reason=_text(doc, [*keys, "reason"], table["reason"]),
        contains=text("contains"),
        not_contains=text("not_contains"),
        regex=_pattern(doc, [*keys, "regex"], regex) if regex is not None else None,
        not_regex=_pattern(doc, [*keys, "not_regex"], not_regex) if not_regex is not None else None,
        equals=_texts(doc, [*keys, "equals"], table["equals"]) if "equals" in table else None,
        missing=_flag(doc, [*keys, "missing"], table["missing"]) if "missing" in table else None,
        optional=_flag(doc, [*keys, "optional"], table["optional"])
        if "optional" in table
        else False,
        defined_in=str(doc.path),
    )


@dataclass(frozen=True)
class _Layer:
    """The settings one map file writes (only those it writes), already checked."""

    doc: _Doc
    settings: dict[str, Any]
    columns: dict[str, FieldRule]
    exclude: list[ExcludeRule]
    extends: str | None


def _parse_layer(doc: _Doc, data: dict[str, Any]) -> _Layer:
    _check_keys(doc, [], data, _TOP_KEYS)
    settings: dict[str, Any] = {}
    if "name" in data:
        settings["name"] = _text(doc, ["name"], data["name"])
    if "description" in data:
        _text(doc, ["description"], data["description"])
    if "missing_values" in data:
        values = data["missing_values"]
        if not isinstance(values, list):
            raise doc.error(
                ["missing_values"], "expected a list of strings", 'e.g. ["", "Unknown", "None"]'
            )
        settings["missing_values"] = tuple(
            _text(doc, ["missing_values"], v).strip() for v in values
        )
    file_table = _table(doc, ["file"], data.get("file", {}))
    _check_keys(doc, ["file"], file_table, _FILE_KEYS)
    if "format" in file_table:
        fmt = _text(doc, ["file", "format"], file_table["format"])
        if fmt not in FILE_FORMATS:
            raise doc.error(
                ["file", "format"],
                f"unknown format '{fmt}'",
                f"use one of {', '.join(FILE_FORMATS)}, or leave it out to go by the extension",
            )
        settings["format"] = fmt
    if "delimiter" in file_table:
        delimiter = _text(doc, ["file", "delimiter"], file_table["delimiter"])
        if len(delimiter) != 1:
            raise doc.error(
                ["file", "delimiter"],
                f"the delimiter must be one character, got {delimiter!r}",
                'e.g. delimiter = "|" or "\\t"',
            )
        settings["delimiter"] = delimiter
    if "has_header" in file_table:
        settings["has_header"] = _flag(doc, ["file", "has_header"], file_table["has_header"])
    if "column_names" in file_table:
        names = _texts(doc, ["file", "column_names"], file_table["column_names"])
        if len(set(names)) != len(names):
            raise doc.error(
                ["file", "column_names"], "a column name appears twice", "make the names unique"
            )
        settings["column_names"] = names
    if "timezone" in file_table:
        settings["timezone"] = _timezone(doc, ["file", "timezone"], file_table["timezone"])
    if "export_time" in file_table:
        settings["export_time"] = _instant(doc, ["file", "export_time"], file_table["export_time"])
    stamps = _table(doc, ["timestamps"], data.get("timestamps", {}))
    _check_keys(doc, ["timestamps"], stamps, _TIMESTAMP_KEYS)
    if "unit" in stamps:
        settings["timestamp_unit"] = _unit(doc, ["timestamps", "unit"], stamps["unit"])
    if "origin" in stamps:
        settings["timestamp_origin"] = _instant(doc, ["timestamps", "origin"], stamps["origin"])

    columns: dict[str, FieldRule] = {}
    for name, spec in _table(doc, ["columns"], data.get("columns", {})).items():
        if name not in CANONICAL_COLUMNS:
            close = difflib.get_close_matches(name, CANONICAL_COLUMNS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise doc.error(
                ["columns", name],
                f"unknown column '{name}' in [columns]",
                f"{hint}map the canonical columns: {', '.join(CANONICAL_COLUMNS)}",
            )
        columns[name] = _rule(doc, ["columns", name], name, spec)

    raw_exclude = data.get("exclude", [])
    if not isinstance(raw_exclude, list):
        raise doc.error(
            ["exclude"],
            "expected [[exclude]] tables",
            "write each rule as its own [[exclude]] table",
        )
    exclude = [_exclude(doc, ["exclude", i + 1], item) for i, item in enumerate(raw_exclude)]
    extends = _text(doc, ["extends"], data["extends"]) if "extends" in data else None
    return _Layer(doc, settings, columns, exclude, extends)


def _load_layers(path: Path, seen: tuple[Path, ...]) -> list[_Layer]:
    doc, data = _read_doc(path)
    layer = _parse_layer(doc, data)
    if layer.extends is None:
        return [layer]
    base_path = _locate(layer.extends, base=doc)
    if base_path.resolve() in seen or len(seen) >= _MAX_EXTENDS_DEPTH:
        raise doc.error(
            ["extends"],
            f"extends '{layer.extends}' comes back to a map already being loaded",
            "remove the loop of extends between these files",
        )
    return [*_load_layers(base_path, (*seen, base_path.resolve())), layer]


def _utc(moment: datetime, timezone: str, *, file: str | Path | None, key: str) -> datetime:
    """An aware UTC datetime; a naive one is read in ``timezone``.

    An ambiguous local hour takes the earlier instant; a local time that does not exist
    (inside a DST gap) is a :class:`WorkbenchError`.
    """
    if moment.tzinfo is not None:
        return moment.astimezone(UTC)
    local = pl.Series([moment]).dt.replace_time_zone(
        timezone, ambiguous="earliest", non_existent="null"
    )
    instant = local.dt.convert_time_zone("UTC").item()
    if instant is None:
        raise WorkbenchError(
            f"{moment.isoformat()} is not a time in {timezone} (the clocks skip it)",
            file=file,
            field=key,
            fix="give the time with an offset, e.g. 2026-03-29T03:30:00+02:00",
        )
    return cast(datetime, instant).astimezone(UTC)


def load_column_map(spec: str | Path, *, overrides: Mapping[str, str] | None = None) -> ColumnMap:
    """Load a column map: a preset name (see :func:`available_presets`) or a TOML file path.

    Follows ``extends`` (a preset name or a path relative to the file). ``overrides`` sets
    canonical columns to constants on top of the map, e.g. ``{"region": "us-central1"}`` for
    a CLI ``--region``, so a preset that leaves a column to the user can be used without a
    map file of one's own. Every problem (an unknown preset, a missing file, bad TOML, an
    unknown key, a bad path, expression, regular expression, timezone or timestamp unit, a
    preset column left for the user to set) raises :class:`WorkbenchError` naming the file,
    the key and the fix.
    """
    path = _locate(spec, base=None)
    layers = _load_layers(path, (path.resolve(),))
    top = layers[-1]
    settings: dict[str, Any] = {}
    columns: dict[str, FieldRule] = {}
    exclude: list[ExcludeRule] = []
    for layer in layers:
        settings.update(layer.settings)
        columns.update(layer.columns)
        exclude.extend(layer.exclude)
    for column, value in (overrides or {}).items():
        if column not in CANONICAL_COLUMNS or not isinstance(value, str) or not value.strip():
            raise WorkbenchError(
                f"cannot set {column!r} to {value!r}",
                file=path,
                field=column,
                fix=f"override one of {', '.join(CANONICAL_COLUMNS)} with a non-empty text",
            )
        columns[column] = FieldRule(value=value.strip(), defined_in="overrides")
    # A name belongs to its file: a map that extends a preset is not named after the preset.
    settings["name"] = top.settings.get("name", path.stem)
    timezone = settings.get("timezone", "UTC")
    missing = tuple(dict.fromkeys(("", *settings.pop("missing_values", ()))))
    for key, name in (
        ("export_time", "file.export_time"),
        ("timestamp_origin", "timestamps.origin"),
    ):
        if settings.get(key) is not None:
            owner = next(ly.doc for ly in reversed(layers) if key in ly.settings)
            settings[key] = _utc(settings[key], timezone, file=owner.path, key=name)
    if settings.get("has_header", True) == bool(settings.get("column_names")):
        owner = next(
            (
                ly.doc
                for ly in reversed(layers)
                if {"has_header", "column_names"} & set(ly.settings)
            ),
            top.doc,
        )
        with_header = settings.get("has_header", True)
        raise owner.error(
            ["file", "column_names" if with_header else "has_header"],
            "column_names is for files without a header line"
            if with_header
            else "a file without a header line needs column_names",
            "set has_header = false and list column_names, or drop column_names"
            if with_header
            else 'list the columns in order: column_names = ["JobID", "Submit", ...]',
        )
    default_unit = settings.get("timestamp_unit", "iso")
    for name in TIMESTAMP_COLUMNS:
        stamp_rule = columns.get(name, FieldRule())
        unit = stamp_rule.unit or default_unit
        if unit != "seconds_since" or stamp_rule.origin or settings.get("timestamp_origin"):
            continue
        keys: list[str | int] = ["timestamps", "unit"]
        if stamp_rule.unit is not None:
            keys = ["columns", name, "unit"]
            owner = next(ly.doc for ly in reversed(layers) if name in ly.columns)
        else:
            owner = next(ly.doc for ly in reversed(layers) if "timestamp_unit" in ly.settings)
        raise owner.error(
            keys,
            f"{name} is in seconds_since but no origin is set",
            f"add origin = 2026-01-01T00:00:00Z to [timestamps] or to [columns] {name}",
        )
    for name in CANONICAL_COLUMNS:
        rule = columns.get(name)
        if rule is None:
            continue
        if rule.origin is not None:
            owner = next(ly.doc for ly in reversed(layers) if name in ly.columns)
            origin = _utc(rule.origin, timezone, file=owner.path, key=f"columns.{name}.origin")
            rule = replace(rule, origin=origin)
            columns[name] = rule
        if rule.must_override is not None:
            owner = next(ly.doc for ly in reversed(layers) if name in ly.columns)
            raise WorkbenchError(
                f"{name} is not set: column map '{owner.path.stem}' leaves it to you "
                f"({rule.must_override})",
                file=top.doc.path,
                field=f"columns.{name}",
                fix=_override_example(name, owner, top.doc),
            )
    return ColumnMap(
        columns=MappingProxyType(columns),
        missing_values=missing,
        exclude=tuple(exclude),
        source=str(path),
        **settings,
    )


def _override_example(column: str, owner: _Doc, top: _Doc) -> str:
    value = '{ value = "us-central1" }' if column == "region" else '{ column = "..." }'
    if top is owner:
        return (
            f'write a map file with extends = "{owner.path.stem}" and, under [columns], '
            f"{column} = {value}, then pass that file to --map"
        )
    return f"add {column} = {value} under [columns] of this file"


# ------------------------------------------------------------------------------ applying


def _leaf_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr | None:
    """A scalar value as text, or None when it is an object or a list (not a value)."""
    if isinstance(dtype, pl.Struct | pl.List | pl.Array):
        return None
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            return expr.dt.convert_time_zone("UTC").dt.strftime(_ISO_FORMAT)
        return expr.dt.strftime("%Y-%m-%dT%H:%M:%S%.f")
    if isinstance(dtype, pl.Date):
        return expr.dt.strftime("%Y-%m-%d")
    return expr.cast(pl.String)


def _json_path(parts: Sequence[str | int]) -> str:
    steps = []
    for part in parts:
        if isinstance(part, int):
            steps.append(f"[{part}]")
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            steps.append(f"['{escaped}']")
    return "$" + "".join(steps)


class _Plan:
    """Columns to add in stages, each stage reading only columns of earlier ones.

    Polars expressions are trees: a value used twice is computed twice, and chained
    ``when``/``then`` over a regex over a path multiplies the work. Naming each step as a
    column keeps every step computed once.
    """

    STAGES = 7

    def __init__(self) -> None:
        self.stages: list[list[pl.Expr]] = [[] for _ in range(self.STAGES)]

    def add(self, stage: int, expr: pl.Expr) -> None:
        self.stages[stage].append(expr)

    def run(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        for stage in self.stages:
            if stage:
                frame = frame.with_columns(stage)
        return frame


@dataclass(frozen=True)
class _Mapper:
    """Builds the polars expressions of one map over one raw frame's schema."""

    cmap: ColumnMap
    schema: pl.Schema

    def _fail(self, rule_file: str, column: str, message: str, fix: str) -> WorkbenchError:
        return WorkbenchError(
            message, file=rule_file or self.cmap.source or None, field=column, fix=fix
        )

    def path_text(self, text: str, *, required: bool, column: str, rule_file: str) -> pl.Expr:
        """Trimmed text at a source path; null where missing (or absent and not required)."""
        parts = parse_source_path(text)
        top = str(parts[0])
        if top not in self.schema:
            if required:
                found = ", ".join(c for c in self.schema.names() if not c.startswith("__"))
                raise self._fail(
                    rule_file,
                    column,
                    f"source column '{top}' (for {column}) is not in the input (found: {found})",
                    "map the column to one the export has, or add it to the export; "
                    "quote a name containing dots: '\"a.b\"'",
                )
            return pl.lit(None, dtype=pl.String)
        expr = pl.col(top)
        dtype: Any = self.schema[top]
        walked = [top]
        for index, part in enumerate(parts[1:], start=1):
            if isinstance(dtype, pl.Null):
                return pl.lit(None, dtype=pl.String)
            if isinstance(dtype, pl.Struct):
                if isinstance(part, int):
                    raise self._fail(
                        rule_file,
                        column,
                        f"'{_shown(walked)}' in path '{text}' is an object, not a list",
                        "use .name to step into an object, [n] only for lists",
                    )
                fields = {f.name: f.dtype for f in dtype.fields}
                if part not in fields:
                    return pl.lit(None, dtype=pl.String)
                expr, dtype = expr.struct.field(part), fields[part]
            elif isinstance(dtype, pl.List | pl.Array):
                if not isinstance(part, int):
                    raise self._fail(
                        rule_file,
                        column,
                        f"'{_shown(walked)}' in path '{text}' is a list",
                        f"take an element first, e.g. {_shown(walked)}[0].{part}",
                    )
                getter = expr.list if isinstance(dtype, pl.List) else expr.arr
                expr, dtype = getter.get(part, null_on_oob=True), dtype.inner
            elif dtype == pl.String:
                # JSON text inside a string column (some exports write objects that way).
                expr = expr.str.json_path_match(_json_path(parts[index:]))
                dtype = pl.String()
                break
            else:
                raise self._fail(
                    rule_file,
                    column,
                    f"'{_shown(walked)}' in path '{text}' is a {dtype} value, not an object",
                    "shorten the path to end at that value",
                )
            walked.append(f"[{part}]" if isinstance(part, int) else part)
        leaf = _leaf_text(expr, dtype)
        if leaf is None:
            raise self._fail(
                rule_file,
                column,
                f"path '{text}' (for {column}) ends at an object or list, not a value",
                "extend the path to the value inside it, e.g. .name or [0]",
            )
        trimmed = leaf.str.strip_chars()
        return pl.when(trimmed.is_in(list(self.cmap.missing_values))).then(None).otherwise(trimmed)

    def source_text(self, rule: FieldRule, column: str) -> pl.Expr:
        """The rule's raw text before regex and value map: a constant or the first path."""
        if rule.value is not None:
            return pl.lit(rule.value, dtype=pl.String)
        required = not rule.optional and len(rule.columns) == 1
        texts = [
            self.path_text(p, required=required, column=column, rule_file=rule.defined_in)
            for p in rule.columns
        ]
        if not texts:
            return pl.lit(None, dtype=pl.String)
        return texts[0] if len(texts) == 1 else pl.coalesce(texts)

    def plan_text(self, plan: _Plan, rule: FieldRule, column: str, key: str) -> None:
        """Add the columns that turn a rule's source into its text, ending in ``key``.

        ``key`` is null when the value is missing (after ``default``), the mapped or
        extracted text when a rule applies, and the raw text when a regex does not match.
        ``{key}__src`` keeps the source text (null: no source value).
        """
        source = f"{key}__src"
        plan.add(0, self.source_text(rule, column).alias(source))
        base = pl.col(source)
        default = pl.lit(rule.default, dtype=pl.String)
        extracted = base
        cases = [(base.is_null(), default)]
        if rule.regex:
            found = [base.str.extract(p, _regex_group(p)) for p in rule.regex]
            plan.add(1, (found[0] if len(found) == 1 else pl.coalesce(found)).alias(f"{key}__re"))
            plan.add(2, pl.col(f"{key}__re").replace("", None).alias(f"{key}__ext"))
            extracted = pl.col(f"{key}__ext")
            cases.append((extracted.is_null(), base))
        if rule.values:
            lookup = extracted.str.to_lowercase().replace_strict(
                dict(rule.values), default=None, return_dtype=pl.String
            )
            plan.add(3, lookup.alias(f"{key}__map"))
            mapped = pl.col(f"{key}__map")
            cases.append((mapped.is_not_null(), mapped))
            if rule.default is not None:
                plan.add(4, _first_case(cases, default).alias(key))
                return
        plan.add(4, _first_case(cases, extracted).alias(key))

    def plan_timestamp(self, plan: _Plan, column: str) -> tuple[str, str]:
        """Add a timestamp column's text and its fast ISO UTC text; return both names.

        The fast text is null where the fast path did not read the text; those rows go
        through :meth:`timestamp_slow`.
        """
        rule = self.cmap.rule(column)
        text, fast = f"__cm_{column}", f"__cm_{column}__fast"
        self.plan_text(plan, rule, column, text)
        unit = rule.unit or self.cmap.timestamp_unit
        if unit == "iso":
            instant = _iso_datetime(pl.col(text), self.cmap.timezone, every_shape=False)
        else:
            origin = rule.origin or self.cmap.timestamp_origin
            instant = _number_datetime(pl.col(text), unit, origin)
        plan.add(5, instant.dt.strftime(_ISO_FORMAT).alias(fast))
        return text, fast

    def timestamp_slow(self, column: str, text: pl.Expr) -> pl.Expr:
        """ISO UTC text of what the fast path missed: other ISO shapes, else the raw text."""
        rule = self.cmap.rule(column)
        unit = rule.unit or self.cmap.timestamp_unit
        looks_like_time = text.str.contains(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
        if unit == "iso":
            parsed = _iso_datetime(text, self.cmap.timezone, every_shape=True)
            note = f" (not a valid time in {self.cmap.timezone})"
            naive = ~text.str.contains(r"(?:[zZ]|[+-]\d{2}:?\d{2})$")
            annotate = naive & looks_like_time
        else:
            parsed = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
            note = f" (expected {_UNIT_WORDS[unit]})"
            annotate = looks_like_time
        # A raw text the validator could read as a UTC time must not pass as one: say why.
        raw = pl.when(annotate).then(text + pl.lit(note)).otherwise(text)
        return pl.coalesce(parsed.dt.strftime(_ISO_FORMAT), raw)

    def plan_chips(self, plan: _Plan) -> str:
        """Add the chips columns: a decimal number text, or the raw text; return its name."""
        rule = self.cmap.rule("chips")
        out = "__cm_chips"
        if rule.expr is None:
            text = f"{out}__text"
            self.plan_text(plan, rule, "chips", text)
            plan.add(5, pl.col(text).cast(pl.Float64, strict=False).alias(f"{out}__number"))
            number = pl.col(f"{out}__number")
            plan.add(
                6,
                pl.when(number.is_finite())
                .then(_number_text(number))
                .otherwise(pl.col(text))
                .alias(out),
            )
            return out
        texts: dict[str, pl.Expr] = {}
        numbers: dict[str, pl.Expr] = {}
        # Whether the row has any source value at all: defaults and constants do not count,
        # so a row with nothing to compute from has missing chips, not "null * 1".
        present: list[pl.Expr] = []
        for index, name in enumerate(rule.expr.operands):
            operand = rule.inputs.get(name) or FieldRule(
                columns=(name,), defined_in=rule.defined_in
            )
            key = f"{out}__op{index}"
            self.plan_text(plan, operand, "chips", key)
            texts[name] = pl.col(key)
            numbers[name] = pl.col(key).cast(pl.Float64, strict=False)
            if operand.value is None:
                present.append(pl.col(f"{key}__src").is_not_null())
        all_numbers = pl.all_horizontal([n.is_not_null() for n in numbers.values()])
        plan.add(5, rule.expr.evaluate(numbers).alias(f"{out}__value"))
        plan.add(5, all_numbers.alias(f"{out}__numeric"))
        plan.add(5, (pl.any_horizontal(present) if present else pl.lit(True)).alias(f"{out}__any"))
        value = pl.col(f"{out}__value")
        plan.add(
            6,
            pl.when(pl.col(f"{out}__numeric") & value.is_finite())
            .then(_number_text(value))
            .when(pl.col(f"{out}__any"))
            .then(rule.expr.render(texts))
            .otherwise(None)
            .alias(out),
        )
        return out

    def exclude_reason(self) -> pl.Expr:
        """The reason of the first exclude rule a row meets (null: keep the row)."""
        reasons: list[pl.Expr] = []
        for number, rule in enumerate(self.cmap.exclude, start=1):
            required = not rule.optional and len(rule.columns) == 1
            label = f"exclude[{number}]"
            texts = [
                self.path_text(p, required=required, column=label, rule_file=rule.defined_in)
                for p in rule.columns
            ]
            text = texts[0] if len(texts) == 1 else pl.coalesce(texts)
            conditions: list[pl.Expr] = []
            if rule.contains is not None:
                conditions.append(text.str.contains(rule.contains, literal=True))
            if rule.not_contains is not None:
                conditions.append(~text.str.contains(rule.not_contains, literal=True))
            if rule.regex is not None:
                conditions.append(text.str.contains(rule.regex))
            if rule.not_regex is not None:
                conditions.append(~text.str.contains(rule.not_regex))
            if rule.equals is not None:
                conditions.append(text.is_in(list(rule.equals)))
            if rule.missing is not None:
                conditions.append(text.is_null() if rule.missing else text.is_not_null())
            meets = pl.all_horizontal([c.fill_null(False) for c in conditions])
            reasons.append(pl.when(meets).then(pl.lit(rule.reason)).otherwise(None))
        if not reasons:
            return pl.lit(None, dtype=pl.String)
        return pl.coalesce(reasons)


def _shown(walked: Sequence[str]) -> str:
    return "".join(p if p.startswith("[") or not i else f".{p}" for i, p in enumerate(walked))


def _first_case(cases: Sequence[tuple[pl.Expr, pl.Expr]], otherwise: pl.Expr) -> pl.Expr:
    """``when(c1).then(v1).when(c2).then(v2)...otherwise(otherwise)``."""
    chain: Any = pl
    for condition, value in cases:
        chain = chain.when(condition).then(value)
    return cast(pl.Expr, chain.otherwise(otherwise))


def _number_text(number: pl.Expr) -> pl.Expr:
    """A float as text: whole numbers without ``.0``."""
    whole = (number == number.round(0)) & (number.abs() < 1e15)
    return (
        pl.when(whole)
        .then(number.cast(pl.Int64, strict=False).cast(pl.String))
        .otherwise(number.cast(pl.String))
    )


def _iso_datetime(text: pl.Expr, timezone: str, *, every_shape: bool) -> pl.Expr:
    """UTC Datetime of ISO 8601 text; naive text is local time in ``timezone``.

    The fast shape (``YYYY-MM-DD[T ]HH:MM:SS[.f]`` with ``Z``, an offset or nothing) costs
    two parses; ``every_shape`` adds minutes-only and bare dates, at a price paid only by
    the rows the fast shape missed.
    """
    normal = text.str.replace(" ", "T", literal=True, n=1).str.replace(r"[zZ]$", "+00:00")
    if every_shape:
        minutes_only = normal.str.contains(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?:[+-]|$)")
        normal = (
            pl.when(normal.str.len_bytes() == 10)
            .then(normal + "T00:00:00")
            .when(minutes_only)
            .then(normal.str.slice(0, 16) + ":00" + normal.str.slice(16))
            .otherwise(normal)
        )
    aware = normal.str.to_datetime(
        "%Y-%m-%dT%H:%M:%S%.f%z", time_zone="UTC", time_unit="us", strict=False
    )
    naive = normal.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False)
    local = naive.dt.replace_time_zone(
        timezone, ambiguous="earliest", non_existent="null"
    ).dt.convert_time_zone("UTC")
    return pl.coalesce(aware, local)


def _number_datetime(text: pl.Expr, unit: str, origin: datetime | None) -> pl.Expr:
    """UTC Datetime of a number of seconds or milliseconds since an epoch or origin."""
    number = text.cast(pl.Float64, strict=False)
    per_unit = 1_000 if unit == "epoch_ms" else _US_PER_S
    offset = 0
    if unit == "seconds_since" and origin is not None:
        offset = (origin - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    micros = (number * per_unit).round(0) + offset
    valid = number.is_finite() & (micros >= _MIN_US) & (micros <= _MAX_US)
    safe = pl.when(valid).then(micros).otherwise(None).cast(pl.Int64)
    return pl.from_epoch(safe, time_unit="us").dt.replace_time_zone("UTC")


def _iso_utc(moment: datetime) -> str:
    """``moment`` as the ISO UTC text :func:`apply_column_map` writes."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        micros = moment.microsecond
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


def _check_overrides(cmap: ColumnMap) -> None:
    for name in CANONICAL_COLUMNS:
        rule = cmap.rule(name)
        if rule.must_override is not None:
            raise WorkbenchError(
                f"{name} is not set: column map '{cmap.name}' leaves it to you "
                f"({rule.must_override})",
                file=cmap.source or None,
                field=f"columns.{name}",
                fix=f"extend the map and set {name} under [columns]",
            )


def apply_column_map(
    raw: pl.DataFrame, cmap: ColumnMap, *, export_time: datetime | None = None
) -> ColumnMapResult:
    """Turn raw rows into the canonical job columns (as text) with a column map.

    ``raw`` holds the source columns as read (strings; for JSON Lines, Struct and List
    columns too), ``line`` (Int64; numbered from 1, or 2 after a header, if absent) and
    optionally ``__problem``. Returns ``mapped`` with the columns of :data:`MAPPED_SCHEMA`
    and ``excluded`` with those of :data:`EXCLUDED_SCHEMA`; together they hold every input
    row once. ``export_time`` (naive: the map's timezone) wins over the map's.

    Raises :class:`WorkbenchError` when a required source column is absent, a path does not
    fit the data's shape, a column is left for the user to set, or jobs have no end and no
    export time is known.
    """
    _check_overrides(cmap)
    # A frame stitched from many small batches makes every string operation pay per chunk.
    frame = raw.rechunk() if max(raw.n_chunks("all"), default=0) > _MAX_CHUNKS else raw
    if _LINE not in frame.columns:
        # After a header line the first data row is line 2; JSON Lines and Parquet have none.
        first = 2 if cmap.has_header and cmap.format not in ("jsonl", "parquet") else 1
        frame = frame.with_row_index(_LINE, offset=first)
    frame = frame.with_columns(pl.col(_LINE).cast(pl.Int64))
    if _PROBLEM not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(_PROBLEM))
    data_columns = [c for c in frame.columns if c not in (_LINE, _PROBLEM)]
    mapper = _Mapper(cmap, frame.schema)

    reason_column = "__column_map_exclude"
    flagged = frame.with_columns(mapper.exclude_reason().alias(reason_column))
    leave_out = pl.col(reason_column).is_not_null() & pl.col(_PROBLEM).is_null()
    record = (
        pl.struct([pl.col(c) for c in data_columns]).struct.json_encode()
        if data_columns
        else pl.lit("{}")
    )
    excluded = flagged.filter(leave_out).select(
        pl.col(_LINE), pl.col(reason_column).alias("reason"), record.alias("record")
    )
    kept = flagged.filter(~leave_out)

    plan = _Plan()
    for column in _TEXT_COLUMNS:
        mapper.plan_text(plan, cmap.rule(column), column, f"__cm_{column}")
    stamps = {c: mapper.plan_timestamp(plan, c) for c in TIMESTAMP_COLUMNS}
    chips = mapper.plan_chips(plan)
    staged = (
        plan.run(kept.lazy())
        .select(
            *[pl.col(f"__cm_{c}").alias(c) for c in _TEXT_COLUMNS],
            *[pl.col(text).alias(f"__{c}_text") for c, (text, _) in stamps.items()],
            *[pl.col(fast).alias(c) for c, (_, fast) in stamps.items()],
            pl.col(chips).alias("chips"),
            pl.col(_LINE),
            pl.col(_PROBLEM),
        )
        .collect()
    )
    # Second pass, only over rows the fast timestamp path missed (rare in a clean file).
    missed = {c: pl.col(f"__{c}_text").is_not_null() & pl.col(c).is_null() for c in stamps}
    slow_rows = staged.with_row_index("__row").filter(pl.any_horizontal(list(missed.values())))
    if slow_rows.height:
        fixed = slow_rows.select(
            "__row",
            *[
                pl.when(missed[c])
                .then(mapper.timestamp_slow(c, pl.col(f"__{c}_text")))
                .otherwise(pl.col(c))
                .alias(c)
                for c in stamps
            ],
        )
        staged = staged.with_row_index("__row").update(fixed, on="__row").drop("__row")
    staged = staged.with_columns(
        pl.col("__start_time_text").is_null().alias("__start_missing"),
        pl.col("__end_time_text").is_null().alias("__end_missing"),
    )

    cut_at = export_time if export_time is not None else cmap.export_time
    if cut_at is None:
        open_ended = staged.filter(pl.col("__end_missing") & pl.col(_PROBLEM).is_null())
        if open_ended.height:
            lines = ", ".join(str(n) for n in open_ended[_LINE].head(3).to_list())
            raise WorkbenchError(
                f"{open_ended.height} job(s) have no end time (still running or pending; "
                f"lines {lines}{', ...' if open_ended.height > 3 else ''}) and no export "
                "time is known to cut them at",
                file=cmap.source or None,
                field="file.export_time",
                fix="pass the time the file was exported (e.g. --export-time "
                "2026-01-05T12:00:00Z), or set export_time in the map's [file] table",
            )
    if cut_at is not None:
        cut_at = _utc(cut_at, cmap.timezone, file=None, key="export_time")
    cut_text = pl.lit(_iso_utc(cut_at) if cut_at is not None else None, dtype=pl.String)
    end_time = pl.when(pl.col("__end_missing")).then(cut_text).otherwise(pl.col("end_time"))
    mapped = staged.select(
        pl.col("job_id"),
        pl.col("submit_time"),
        pl.when(pl.col("__start_missing"))
        .then(end_time)
        .otherwise(pl.col("start_time"))
        .alias("start_time"),
        end_time.alias("end_time"),
        pl.col("chips"),
        *[pl.col(c) for c in ("accelerator", "region", "team", "workload")],
        (pl.col("__end_missing") & cut_text.is_not_null()).alias("running"),
        pl.col(_LINE),
        pl.col(_PROBLEM),
    )
    return ColumnMapResult(
        mapped=mapped.select(MAPPED_SCHEMA.names()).cast(dict(MAPPED_SCHEMA)),  # type: ignore[arg-type]
        excluded=excluded.cast(dict(EXCLUDED_SCHEMA)),  # type: ignore[arg-type]
    )
