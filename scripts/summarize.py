"""Summarize trained and evaluated runs (table, statistics, plot). The code: scripts/meadow_golf/summarize.py."""

import sys

from meadow_golf.summarize import main

if __name__ == "__main__":
    sys.exit(main())
