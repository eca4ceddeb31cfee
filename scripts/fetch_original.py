"""Fetch the original's published checkpoints and evaluation data. The code: scripts/meadow_golf/original/fetch.py."""

import sys

from meadow_golf.original.fetch import main

if __name__ == "__main__":
    sys.exit(main())
