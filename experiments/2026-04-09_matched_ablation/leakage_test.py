"""Leakage checks of a model and of every CF decoder. The code: scripts/meadow_golf/leakage_test.py."""

import sys

from meadow_golf.leakage_test import main

if __name__ == "__main__":
    sys.exit(main())
