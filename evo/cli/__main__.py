"""``python -m evo.cli``: the ``evo`` command, where no console script is installed."""

import sys

from evo.cli import main

sys.exit(main())
