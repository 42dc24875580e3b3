"""pymixnn benchmarks: `python -m benchmarks SUITE [args]` (suites: pipeline)."""
