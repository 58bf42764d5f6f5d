"""Benchmarks against other libraries; their requirements are in benchmarks/requirements.txt."""
