"""Prepare a data folder in the challenge format. The code: scripts/meadow_golf/data/prepare_data.py."""

import sys

from meadow_golf.data.prepare_data import main

if __name__ == "__main__":
    sys.exit(main())
