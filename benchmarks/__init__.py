"""Benchmarks, run on demand (make bench)."""
