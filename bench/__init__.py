"""Benchmarks, one command each, printing their figures (docs/benchmarks.md)."""
