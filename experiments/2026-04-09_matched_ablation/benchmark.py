"""Time the training steps and the CF evaluation. The code: scripts/meadow_golf/tools/benchmark.py."""

import sys

from meadow_golf.tools.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
