"""Numbers and colours for people, the same on every page of the app.

Amounts carry their unit (``chip-h``, ``chips``, ``$``) and thousands separators; large ones
are shortened with ``K``/``M``/``B`` only in metric tiles, never in tables. Colours come from
the Okabe-Ito palette (safe for the common colour-vision deficiencies) and each meaning keeps
its colour on every chart: used is blue, queued/unmet is vermillion, and so on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

__all__ = [
    "COLORS",
    "PALETTE",
    "accelerator_colors",
    "chip_hours",
    "chips",
    "percent",
    "short_number",
    "usd",
    "usd_short",
]

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


_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def _missing(value: float | Decimal | None) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def short_number(value: float | Decimal | None, digits: int = 2) -> str:
    """``1.23 M``, ``456``: for metric tiles where space is short."""
    if _missing(value):
        return "n/a"
    number = float(value)  # type: ignore[arg-type]
    for scale, suffix in _SUFFIXES:
        if abs(number) >= scale:
            return f"{number / scale:,.{digits}f} {suffix}"
    return f"{number:,.0f}"


def chip_hours(value: float | Decimal | None, *, short: bool = False) -> str:
    """``12,345 chip-h`` (or ``1.23 M chip-h`` with ``short``)."""
    if _missing(value):
        return "n/a"
    text = short_number(value) if short else f"{float(value):,.0f}"  # type: ignore[arg-type]
    return f"{text} chip-h"


def chips(value: float | Decimal | None) -> str:
    """``1,024 chips``."""
    if _missing(value):
        return "n/a"
    return f"{float(value):,.0f} chips"  # type: ignore[arg-type]


def usd(value: float | Decimal | None, *, cents: bool = False) -> str:
    """``$1,234`` or with ``cents`` ``$1,234.56``; negative as ``-$5``."""
    if _missing(value):
        return "n/a"
    number = float(value)  # type: ignore[arg-type]
    sign = "-" if number < 0 else ""
    return f"{sign}${abs(number):,.{2 if cents else 0}f}"


def usd_short(value: float | Decimal | None) -> str:
    """``$1.23 M`` for metric tiles."""
    if _missing(value):
        return "n/a"
    number = float(value)  # type: ignore[arg-type]
    sign = "-" if number < 0 else ""
    return f"{sign}${short_number(abs(number))}"


def percent(value: float | Decimal | None, digits: int = 0) -> str:
    """``87%`` from a fraction (0.87)."""
    if _missing(value):
        return "n/a"
    return f"{float(value):.{digits}%}"  # type: ignore[arg-type]
