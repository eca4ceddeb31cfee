"""Leakage checks of a model and of every CF decoder. The code: scripts/meadow_golf/eval/leakage.py."""

import sys

from meadow_golf.eval.leakage import main

if __name__ == "__main__":
    sys.exit(main())
