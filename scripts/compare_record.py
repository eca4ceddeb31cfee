"""Print a rerun's numbers beside a committed record's. The code: scripts/meadow_golf/report/compare_record.py."""

import sys

from meadow_golf.report.compare_record import main

if __name__ == "__main__":
    sys.exit(main())
