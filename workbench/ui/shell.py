"""What every page of the app shares: the fleet filter in the sidebar, kept in the URL.

The sidebar's accelerator, region and team filters are drawn once per rerun by ``app.py``
(before the page runs), so they carry across pages. Their values live in session state under
``shell_*`` keys and are written back to the URL's query parameters on every rerun, so a link
reproduces the view; on a fresh session the URL's values seed the widgets. Pages call
:func:`current_filter` and never draw these widgets themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import streamlit as st

from workbench.overview import Slice
from workbench.ui.cache import cached_fleet_accelerators, table_version, workspace_root
from workbench.ui.format import accelerator_colors

__all__ = [
    "ALL",
    "DIMENSIONS",
    "FleetFilter",
    "accelerator_color",
    "current_filter",
    "draw_sidebar_filter",
    "fleet_accelerator_colors",
    "link_to",
    "register_pages",
]

ALL = "All"
DIMENSIONS: tuple[str, ...] = ("accelerator", "region", "team")
_KEY = "shell_"


@dataclass(frozen=True)
class FleetFilter:
    """The slice of the fleet every page shows; ``ALL`` leaves a dimension unfiltered."""

    accelerator: str = ALL
    region: str = ALL
    team: str = ALL

    def expression(self, columns: Iterable[str] | None = None) -> pl.Expr:
        """A polars predicate for the slice, over the dimensions a frame has.

        ``columns`` are the frame's columns; dimensions it lacks (a pool-level plan has no
        team) are not filtered on, so one filter serves every table.
        """
        present = set(DIMENSIONS if columns is None else columns)
        predicate = pl.lit(True)
        for dimension in DIMENSIONS:
            value = getattr(self, dimension)
            if value != ALL and dimension in present:
                predicate = predicate & (pl.col(dimension) == value)
        return predicate

    def apply(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Rows of ``frame`` in the slice."""
        return frame.filter(self.expression(frame.columns))

    def as_slice(self) -> Slice:
        """The same slice for library functions, where ``None`` means unfiltered."""
        return Slice(*(None if getattr(self, d) == ALL else getattr(self, d) for d in DIMENSIONS))

    def query_params(self) -> dict[str, str]:
        """The slice as URL query parameters (dimensions left at ``All`` are omitted)."""
        return {d: getattr(self, d) for d in DIMENSIONS if getattr(self, d) != ALL}

    def describe(self) -> str:
        """The slice in words, for titles and captions: ``H100 in us-east, team search``."""
        parts = []
        if self.accelerator != ALL:
            parts.append(self.accelerator)
        if self.region != ALL:
            parts.append(f"in {self.region}")
        if self.team != ALL:
            parts.append(f"team {self.team}")
        return " ".join(parts) if parts else "the whole fleet"


def current_filter() -> FleetFilter:
    """The sidebar's filter as of this rerun."""
    return FleetFilter(
        **{d: str(st.session_state.get(f"{_KEY}{d}", ALL) or ALL) for d in DIMENSIONS}
    )


def fleet_accelerator_colors() -> dict[str, str]:
    """One colour per accelerator of the whole workspace (see :func:`accelerator_colors`).

    The same on every page, whatever the sidebar's slice and whoever looks (a team's viewer
    sees fewer accelerators in the filter but the same colours), and the same as in the
    quarterly report: given by the SKU catalog's accelerators and the usage's.
    """
    root = workspace_root()
    return accelerator_colors(
        cached_fleet_accelerators(
            str(root), table_version(root, "sku_catalog"), table_version(root, "usage_daily")
        )
    )


def accelerator_color(accelerator: str | None) -> str | None:
    """The colour of one accelerator (None for ``All``, none or one the fleet lacks)."""
    if accelerator is None or accelerator == ALL:
        return None
    return fleet_accelerator_colors().get(accelerator)


def draw_sidebar_filter(choices: pl.DataFrame) -> FleetFilter:
    """Draw the fleet filter in the sidebar and mirror it into the URL.

    ``choices`` has ``accelerator``, ``region`` and ``team`` columns (the pools and teams the
    workspace knows). Each selectbox narrows the next one's options. A value from the URL
    that the workspace does not have falls back to ``All`` with a warning.
    """
    narrowed = choices
    chosen: dict[str, str] = {}
    for dimension in DIMENSIONS:
        key = f"{_KEY}{dimension}"
        options = [ALL]
        if dimension in narrowed.columns:
            options += sorted(
                str(v) for v in narrowed.get_column(dimension).drop_nulls().unique().to_list()
            )
        if key not in st.session_state:
            wanted = st.query_params.get(dimension, ALL)
            if wanted not in options:
                if wanted != ALL:
                    st.sidebar.warning(f"The link's {dimension} `{wanted}` is not in the data.")
                wanted = ALL
            st.session_state[key] = wanted
        elif st.session_state[key] not in options:
            st.session_state[key] = ALL
        value = st.sidebar.selectbox(dimension.capitalize(), options, key=key)
        chosen[dimension] = value
        if value != ALL and dimension in narrowed.columns:
            narrowed = narrowed.filter(pl.col(dimension) == value)
    for dimension, value in chosen.items():
        if value == ALL:
            if dimension in st.query_params:
                del st.query_params[dimension]
        elif st.query_params.get(dimension) != value:
            st.query_params[dimension] = value
    return FleetFilter(**chosen)


def register_pages(sections: Mapping[str, Sequence[Any]]) -> None:
    """Remember this rerun's pages by URL path, so pages can link to each other.

    ``sections`` is what ``app.py`` hands to ``st.navigation``. Kept in session state (not
    in a module global) because each browser session has its own navigation.
    """
    st.session_state[f"{_KEY}pages"] = {
        page.url_path: page for pages in sections.values() for page in pages
    }


def link_to(url_path: str, label: str, *, icon: str | None = None) -> bool:
    """A link to another page of the app that keeps the sidebar's filter.

    Returns False (and draws nothing) when no page of that URL path is registered, for
    example a page another issue has not added yet.
    """
    page = st.session_state.get(f"{_KEY}pages", {}).get(url_path)
    if page is None:
        return False
    st.page_link(page, label=label, icon=icon, query_params=current_filter().query_params())
    return True
