"""What the benchmarks optimise: BBOB functions, the fidelity benchmark's tasks, the real
QLoRA trials and the surrogate fitted on them."""
