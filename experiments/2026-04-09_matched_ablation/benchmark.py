"""Time the training steps and the CF evaluation. The code: scripts/meadow_golf/benchmark.py."""

import sys

from meadow_golf.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
