"""The gating table of a recipe run (scripts/meadow_golf/retrofit/report.py)."""

import sys

from meadow_golf.retrofit.report import main

if __name__ == "__main__":
    sys.exit(main())
