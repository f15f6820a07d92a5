"""The colours of every chart, the app's and the reports': one per accelerator, one per meaning.

Colours come from the Okabe-Ito palette (safe for the common colour-vision deficiencies).
Each accelerator keeps one colour on every chart, given by its place in the sorted names of
the whole fleet (:func:`accelerator_colors`); measures keep theirs (:data:`COLORS`: used is
blue, queued/unmet is vermillion, ...). A chart of one accelerator draws its main series in
the accelerator's colour (:func:`with_accelerator`). A leaf module: it imports nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["COLORS", "PALETTE", "accelerator_colors", "rgba", "with_accelerator"]

# Okabe & Ito (2008), "Color Universal Design": distinguishable with any common deficiency.
PALETTE: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

COLORS: dict[str, str] = {
    "used": "#0072B2",
    "allocated": "#7F7F7F",
    "queued": "#D55E00",
    "unmet": "#D55E00",
    "demand": "#0072B2",
    "forecast": "#E69F00",
    "capacity": "#009E73",
    "owned": "#009E73",
    "commit_1y": "#56B4E9",
    "commit_3y": "#0072B2",
    "on_demand": "#E69F00",
    "idle": "#CC79A7",
    "waste": "#D55E00",
    "event": "#CC79A7",
}

# Accelerators take the palette from its sky blue on, so they do not wear the colours of
# used (blue) and unmet (vermillion) on charts that show both.
_ACCELERATOR_ORDER: tuple[str, ...] = (
    "#56B4E9",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#0072B2",
    "#D55E00",
    "#F0E442",
    "#000000",
)


def accelerator_colors(accelerators: Iterable[str]) -> dict[str, str]:
    """One colour per accelerator, by sorted name, so it is the same on every chart.

    Pass every accelerator of the workspace (not only those a chart shows): then a chart of
    a slice keeps the colours of the whole fleet. Past eight accelerators colours repeat.
    """
    names = sorted(set(accelerators))
    return {name: _ACCELERATOR_ORDER[i % len(_ACCELERATOR_ORDER)] for i, name in enumerate(names)}


def with_accelerator(colors: Mapping[str, str], main: str, color: str | None) -> dict[str, str]:
    """``colors`` of a one-accelerator chart: its ``main`` series wears the accelerator's.

    A series that wore the accelerator's colour takes the main series' usual one instead,
    so the chart's series stay apart. ``color`` None (no single accelerator) changes nothing.
    """
    chosen = dict(colors)
    if color is None or chosen.get(main) == color:
        return chosen
    usual = chosen.get(main, color)
    for name, value in chosen.items():
        if value.upper() == color.upper():
            chosen[name] = usual
    chosen[main] = color
    return chosen


def rgba(hex_colour: str, alpha: float) -> str:
    """``#RRGGBB`` with an opacity, as plotly's ``rgba(r,g,b,a)``."""
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"
