"""Forecasting models and their evaluation on long frames (``series_id, ds, y``).

Knows nothing about accelerators: it never reads files and imports nothing from
``workbench`` or ``pipelines``.
"""
