"""``python -m labs.diffusion_sweep``: the command line of the diffusion study, :mod:`labs.diffusion.sweep`.

Its public names are importable from here too; code that replaces one of the study's functions
must do so on :mod:`labs.diffusion.sweep` itself.
"""

import sys

from labs.diffusion.sweep import *  # noqa: F403  (the study's public names)
from labs.diffusion.sweep import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
