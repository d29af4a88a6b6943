"""Benchmarks of taskledger against plain PostgreSQL; see docs/benchmarks.md."""
