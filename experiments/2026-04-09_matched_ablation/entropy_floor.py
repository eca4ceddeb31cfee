"""The entropy-floor experiment on a source of known entropy rate. The code: scripts/meadow_golf/tools/entropy_floor.py."""

import sys

from meadow_golf.tools.entropy_floor import main

if __name__ == "__main__":
    sys.exit(main())
