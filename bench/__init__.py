"""Benchmarks: figures, not tests. ``python -m bench`` (``--smoke`` for CI)."""
