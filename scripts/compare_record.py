"""Print a rerun's numbers beside a committed record's. The code: scripts/meadow_golf/report/compare_record.py."""

import sys

if __name__ == "__main__":
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.report.compare_record", ("torch", "mlx")))
