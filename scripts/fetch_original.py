"""Fetch the original's published checkpoints and evaluation data. The code: scripts/meadow_golf/original/fetch.py."""

import sys

if __name__ == "__main__":
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.original.fetch", ("torch",)))
