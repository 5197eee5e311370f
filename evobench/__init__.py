"""The benchmarks' library: every piece the scripts in experiments/ share, in one home each.

``tasks`` are what is optimised (BBOB functions, the real-trial QLoRA surrogate and the
trials it models, the synthetic fitness), ``methods`` how each tuner is driven on them,
``reports`` the tables; beside them the Optuna glue (``peers``), the compute ``ledger``,
the ``trial_cache``, the ``stats``, the ``plots`` and the trial collector (``collect``).
It reaches the engine through evo's public API only, and neither evo nor fitness imports it.
"""
