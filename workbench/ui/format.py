"""Numbers and colours for people, the same on every page of the app.

Amounts carry their unit (``chip-h``, ``chips``, ``$``) and thousands separators; large ones
are shortened with ``K``/``M``/``B`` only in metric tiles, never in tables. Colours are
:mod:`workbench.palette`'s (Okabe-Ito), shared with the reports: each accelerator and each
meaning keeps its colour on every chart (used is blue, queued/unmet is vermillion, ...).
"""

from __future__ import annotations

import math
from decimal import Decimal

from workbench.palette import COLORS, PALETTE, accelerator_colors, rgba, with_accelerator

__all__ = [
    "COLORS",
    "PALETTE",
    "accelerator_colors",
    "chip_hours",
    "chips",
    "percent",
    "rgba",
    "short_number",
    "usd",
    "usd_short",
    "with_accelerator",
]

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
