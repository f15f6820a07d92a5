"""Number formats of the app: units, separators, missing values."""

from __future__ import annotations

from decimal import Decimal

import pytest

from workbench.ui.format import (
    PALETTE,
    accelerator_colors,
    chip_hours,
    chips,
    percent,
    short_number,
    usd,
    usd_short,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, "0"), (999, "999"), (1_234, "1.23 K"), (12_345_678, "12.35 M"), (-2.5e9, "-2.50 B")],
)
def test_short_number_scales(value, expected):
    assert short_number(value) == expected


def test_units_and_separators():
    assert chip_hours(1_234_567.4) == "1,234,567 chip-h"
    assert chip_hours(1_234_567.4, short=True) == "1.23 M chip-h"
    assert chips(2048) == "2,048 chips"
    assert usd(Decimal("1234.5")) == "$1,234"
    assert usd(-1234.567, cents=True) == "-$1,234.57"
    assert usd_short(-3_400_000) == "-$3.40 M"
    assert percent(0.873) == "87%"
    assert percent(0.873, 1) == "87.3%"


@pytest.mark.parametrize("formatter", [short_number, chip_hours, chips, usd, usd_short, percent])
@pytest.mark.parametrize("missing", [None, float("nan"), float("inf")])
def test_missing_values_read_n_a(formatter, missing):
    assert formatter(missing) == "n/a"


def test_palette_colours_are_distinct_hex():
    assert len(set(PALETTE)) == len(PALETTE)
    assert all(colour.startswith("#") and len(colour) == 7 for colour in PALETTE)


def test_each_accelerator_keeps_its_colour_whatever_the_chart_shows():
    fleet = ["tpu-v5e", "h100-80gb", "a100-80gb", "l4-24gb"]
    colours = accelerator_colors(fleet)
    assert len(set(colours.values())) == 4
    assert accelerator_colors(reversed(fleet)) == colours  # order of appearance is irrelevant
    assert set(colours.values()) <= set(PALETTE)
    many = accelerator_colors(f"sku{i:02d}" for i in range(10))
    assert many["sku00"] == many["sku08"]  # eight colours, then they repeat
