"""Money to the cent: integer cents, exact splits, and USD text.

Invariants:

* Money is held as whole cents (Python ``int`` or polars ``Int64``); floats are used only to
  compute a rate, never to add money up.
* :func:`apportion` splits a whole number of cents into parts that add up to it exactly
  (largest-remainder, or Hamilton, method), each part within one cent of its exact share.
* :func:`micro_usd_to_cents` rounds many exact amounts (micro-dollars, signed) to cents so
  that the parts add up to the rounded total exactly, each within one cent of its exact value.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal

import polars as pl

__all__ = [
    "CENTS_PER_USD",
    "MICRO_USD_PER_CENT",
    "apportion",
    "cents_of",
    "cents_to_usd",
    "format_usd",
    "micro_usd_expr",
    "micro_usd_to_cents",
]

CENTS_PER_USD = 100
MICRO_USD_PER_CENT = 10_000
_WEIGHT_SCALE = 1_000_000
"""Weights (chip-hours) are taken to a millionth before the exact integer split."""


def cents_of(usd: float | Decimal) -> int:
    """A USD amount rounded half up to whole cents (via its exact decimal expansion)."""
    amount = usd if isinstance(usd, Decimal) else Decimal(repr(float(usd)))
    return int((amount * CENTS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def apportion(total_cents: int, weights: Sequence[float]) -> list[int]:
    """Split ``total_cents`` in proportion to ``weights`` so the parts sum to it exactly.

    Largest remainder: each part gets the floor of its exact share, and the cents left over
    go one each to the parts with the largest remainders (ties to the earlier part). The
    arithmetic is on integers (weights to a millionth), so the result does not depend on
    float rounding. Weights must be non-negative; if they are all zero, the total cannot be
    split and a :class:`ValueError` is raised unless it is zero.
    """
    scaled = [round(w * _WEIGHT_SCALE) for w in weights]
    if any(w < 0 for w in scaled):
        raise ValueError("weights must be non-negative")
    whole = sum(scaled)
    if whole == 0:
        if total_cents:
            raise ValueError("cannot apportion a non-zero amount over zero weights")
        return [0] * len(scaled)
    parts: list[int] = []
    remainders: list[int] = []
    for weight in scaled:
        quotient, remainder = divmod(total_cents * weight, whole)
        parts.append(quotient)
        remainders.append(remainder)
    left = total_cents - sum(parts)
    # Stable sort: equal remainders keep their input order.
    for index in sorted(range(len(parts)), key=lambda i: -remainders[i])[:left]:
        parts[index] += 1
    return parts


def micro_usd_to_cents(micro_usd: Sequence[int]) -> list[int]:
    """Round exact amounts in micro-dollars to cents, keeping their rounded total exact.

    The parts sum to the total rounded half up to the cent; each part is within a cent of
    its exact value. Amounts may be negative (credits).
    """
    floors = [m // MICRO_USD_PER_CENT for m in micro_usd]
    remainders = [m - f * MICRO_USD_PER_CENT for m, f in zip(micro_usd, floors, strict=True)]
    total = _round_half_up_div(sum(micro_usd), MICRO_USD_PER_CENT)
    left = total - sum(floors)
    for index in sorted(range(len(floors)), key=lambda i: -remainders[i])[:left]:
        floors[index] += 1
    return floors


def _round_half_up_div(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    return quotient + (1 if 2 * remainder >= denominator else 0)


def micro_usd_expr(column: str) -> pl.Expr:
    """A float USD column as whole micro-dollars (Int64), the unit billing sums are exact in."""
    return (pl.col(column).fill_null(0.0) * 1_000_000).round(0).cast(pl.Int64)


def cents_to_usd(column: str) -> pl.Expr:
    """An Int64 cents column as a Decimal(38, 2) USD column of the same name."""
    return (pl.col(column).cast(pl.Decimal(38, 2)) / CENTS_PER_USD).alias(column)


def format_usd(cents: int) -> str:
    """``$1,234.56`` (``-$0.05`` for a negative amount)."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), CENTS_PER_USD)
    return f"{sign}${whole:,}.{part:02d}"
