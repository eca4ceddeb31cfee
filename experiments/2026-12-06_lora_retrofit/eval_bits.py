"""Evaluation job 'bits' of a retrofit (see README.md here and scripts/meadow_golf/retrofit/eval_bits.py)."""

import sys

from meadow_golf.retrofit.eval_bits import main as main

if __name__ == "__main__":
    sys.exit(main())
