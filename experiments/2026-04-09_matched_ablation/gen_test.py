"""Span fill and causal sampling from a checkpoint. The code: scripts/meadow_golf/gen_test.py."""

import sys

from meadow_golf.gen_test import main

if __name__ == "__main__":
    sys.exit(main())
