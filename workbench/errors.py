"""Errors a user can act on.

Every problem that stops a command is a :class:`WorkbenchError` naming where it happened
(file, line, field) and what to do about it, so the CLI and the app can show it as one
readable line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["WorkbenchError"]


class WorkbenchError(Exception):
    """A problem with the user's input or workspace, explained in one line.

    Parameters
    ----------
    message:
        What is wrong, in the user's terms.
    file:
        The file the problem is in, if any.
    line:
        1-based line number in ``file``, if known.
    field:
        The column, key or option at fault, if any.
    fix:
        What the user should do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.field = field
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return the error as one line: ``file, line N, field 'x': message (fix: ...)``."""
        where: list[str] = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        text = self.message
        if where:
            text = f"{', '.join(where)}: {text}"
        if self.fix:
            text = f"{text} (fix: {self.fix})"
        return text
