"""Prepare a data folder in the challenge format. The code: scripts/meadow_golf/data/prepare_data.py."""

import sys

if __name__ == "__main__":
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.data.prepare_data", ("torch", "mlx")))
