"""Span fill and causal sampling from a checkpoint. The code: scripts/meadow_golf/eval/generate.py."""

import sys

from meadow_golf.eval.generate import main

if __name__ == "__main__":
    sys.exit(main())
