"""Trials in a supervised subprocess: the supervisor on the driver's side (timeouts, deaths,
leaks), the runner on the worker's side (a resident base, results as they end)."""
