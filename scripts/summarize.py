"""Summarize trained and evaluated runs (table, statistics, plot). The code: scripts/meadow_golf/report/summarize.py."""

import sys

if __name__ == "__main__":
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.report.summarize", ("torch", "mlx")))
