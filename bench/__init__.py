"""Benchmarks of taskledger against plain PostgreSQL baselines; see docs/benchmarks.md."""
