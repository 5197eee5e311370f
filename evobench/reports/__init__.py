"""The tables the benchmark scripts print."""
