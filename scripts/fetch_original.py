"""Fetch the original's published checkpoints and evaluation data. The code: scripts/meadow_golf/fetch_original.py."""

import sys

from meadow_golf.fetch_original import main

if __name__ == "__main__":
    sys.exit(main())
