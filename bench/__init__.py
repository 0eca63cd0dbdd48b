"""Benchmarks. Each prints throughput as a ratio to a baseline measured in the same run."""
