"""QLoRA memory: a cohort's peak estimated from the model's shape and the genes, corrected by
peaks measured on the device, turned into each trial's micro-batch and how many train at once;
and the process's own memory (RSS, peaks, a cap)."""
