"""Evaluation job 'humaneval' of a retrofit (see README.md here and scripts/meadow_golf/retrofit/evaluate.py)."""

import sys

from meadow_golf.retrofit.evaluate import humaneval_main as main

if __name__ == "__main__":
    sys.exit(main())
