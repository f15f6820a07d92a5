"""Who may see what: viewers, the role map, and the filters that enforce it.

Sign-in is optional. Without it (the default: the app binds to 127.0.0.1 and whoever can
open it can read the workspace's files anyway) the viewer is :meth:`Viewer.everyone`. With a
role map (``[access]`` in Streamlit's ``secrets.toml``, beside the ``[auth]`` section that
configures ``st.login``), every signed-in person is looked up by e-mail:

* ``finance``: sees every team's costs and usage, the idle line and pool totals;
* a team member: sees their own team's costs and usage only: no other team's rows, no
  idle line, no pool totals (which would reveal the others' sum);
* anyone else is refused.

Invariants: the restrictions are functions over frames (:func:`restrict_frame`,
:func:`restrict_showback`), applied by the library calls pages use, so hiding a widget is
never the only barrier; an unknown or missing e-mail gets no access, never full access.

Role map layout::

    [access]
    finance = ["cfo@example.com"]
    [access.teams]
    "ana@example.com" = "vision"
    "bo@example.com" = ["maps", "search"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import polars as pl

from workbench.errors import WorkbenchError
from workbench.showback import Showback

__all__ = ["RoleMap", "Viewer", "restrict_frame", "restrict_showback"]

Role = Literal["everyone", "finance", "team"]


@dataclass(frozen=True)
class Viewer:
    """A person looking at the workbench, and the teams they may see (None: all)."""

    name: str
    role: Role
    teams: frozenset[str] | None = None

    @classmethod
    def everyone(cls) -> Viewer:
        """The viewer when sign-in is off: sees everything."""
        return cls(name="local", role="everyone")

    @property
    def sees_all(self) -> bool:
        """Whether this viewer sees every team (finance, or sign-in off)."""
        return self.teams is None

    def team_predicate(self, column: str = "team") -> pl.Expr:
        """A predicate keeping the rows this viewer may see."""
        if self.teams is None:
            return pl.lit(True)
        return pl.col(column).is_in(sorted(self.teams))


def restrict_frame(frame: pl.DataFrame, viewer: Viewer, column: str = "team") -> pl.DataFrame:
    """Rows of ``frame`` the viewer may see.

    A frame without ``column`` is pool-wide data, which only viewers who see all teams may
    see (others get it empty).
    """
    if viewer.sees_all:
        return frame
    if column not in frame.columns:
        return frame.clear()
    return frame.filter(viewer.team_predicate(column))


def restrict_showback(result: Showback, viewer: Viewer) -> Showback:
    """The showback as the viewer may see it.

    Their teams' cells only, without the idle line, pool totals or the bill's monthly totals
    (all of which include other teams).
    """
    if viewer.sees_all:
        return result
    return replace(
        result,
        cells=restrict_frame(result.cells, viewer),
        pools=result.pools.clear(),
        billing_cents={},
    )


@dataclass(frozen=True)
class RoleMap:
    """E-mail -> role, from the ``[access]`` table of ``secrets.toml``."""

    finance: frozenset[str]
    teams: Mapping[str, frozenset[str]]

    @classmethod
    def from_mapping(cls, access: Mapping[str, Any]) -> RoleMap:
        """Parse ``[access]``; raise a readable error naming the key that is wrong."""
        finance = access.get("finance", [])
        if isinstance(finance, str):
            finance = [finance]
        if not isinstance(finance, list | tuple) or not all(isinstance(e, str) for e in finance):
            raise WorkbenchError(
                "access.finance must be a list of e-mail addresses",
                file="secrets.toml",
                field="access.finance",
                fix='finance = ["cfo@example.com"]',
            )
        teams_table = access.get("teams", {})
        if not isinstance(teams_table, Mapping):
            raise WorkbenchError(
                "access.teams must be a table of e-mail = team(s)",
                file="secrets.toml",
                field="access.teams",
                fix='[access.teams] then "ana@example.com" = "vision"',
            )
        teams: dict[str, frozenset[str]] = {}
        for email, value in teams_table.items():
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list | tuple) or not all(isinstance(t, str) for t in names):
                raise WorkbenchError(
                    "a team member maps to a team name or a list of them",
                    file="secrets.toml",
                    field=f"access.teams.{email}",
                    fix=f'"{email}" = "vision"',
                )
            teams[_normal(email)] = frozenset(names)
        return cls(finance=frozenset(_normal(e) for e in finance), teams=teams)

    def viewer_for(self, email: str | None) -> Viewer | None:
        """The viewer for a signed-in e-mail, or None if the role map does not know it."""
        if not email:
            return None
        key = _normal(email)
        if key in self.finance:
            return Viewer(name=email, role="finance")
        if self.teams.get(key):
            return Viewer(name=email, role="team", teams=self.teams[key])
        return None


def _normal(email: str) -> str:
    return email.strip().lower()
