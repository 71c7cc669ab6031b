"""Connector fleet benchmark (issue 3): `python -m bench.connectors --help`; docs/benchmarks.md."""
