"""Benchmark suite for recbole-msl (issue 4): run with ``python -m benchmarks``.

Every benchmark measures our code and a reference-style baseline in the same process, on the
same backbone, batch and data, and writes its figures to ``benchmarks/results/<name>.json``.
"""
