"""Summarize trained and evaluated runs (table, statistics, plot). The code: scripts/meadow_golf/report/summarize.py."""

import sys

from meadow_golf.report.summarize import main

if __name__ == "__main__":
    sys.exit(main())
