"""Score a checkpoint with Pure-AR and the CF decoders on the same windows. The code: scripts/meadow_golf/eval/eval_cf.py."""

import sys

from meadow_golf.eval.eval_cf import main

if __name__ == "__main__":
    sys.exit(main())
