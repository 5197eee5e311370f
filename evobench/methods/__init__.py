"""How each tuner is driven on a task: ours through evo's public API, the peers through Optuna's."""
