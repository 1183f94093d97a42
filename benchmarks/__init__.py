"""Benchmarks: each ``bench_*.py`` module has ``main(out_dir) -> dict`` that prints its figures and
writes ``<out_dir>/<name>.json``. ``python -m benchmarks [NAME ...]`` runs them (all by default)."""
