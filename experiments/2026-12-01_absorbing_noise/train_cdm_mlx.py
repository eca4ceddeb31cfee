"""Train one cell (MLX). The code: scripts/meadow_golf/train/train_cdm_mlx.py."""

import sys

from meadow_golf.train.train_cdm_mlx import main

if __name__ == "__main__":
    sys.exit(main())
