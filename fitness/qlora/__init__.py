"""QLoRA fitness: validation perplexity after a budgeted LoRA fine-tune of a 4-bit base.

Importing this package is cheap (no torch); the worker process does the heavy lifting.
"""

from fitness.qlora.fitness import QLoRAFitness
from fitness.qlora.spec import QLoRASpec

__all__ = ["QLoRAFitness", "QLoRASpec"]
