"""``python -m labs.rate_sweep``: the command line of the rate study, :mod:`labs.rate.sweep`.

Its public names are importable from here too (``from labs.rate_sweep import run_sweep``); code
that replaces one of the study's functions must do so on :mod:`labs.rate.sweep` itself.
"""

import sys

from labs.rate.sweep import *  # noqa: F403  (the study's public names)
from labs.rate.sweep import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
