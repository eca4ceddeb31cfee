"""Train one cell (torch; also the script torchrun launches). The code: scripts/meadow_golf/train/train_cdm.py."""

import sys

from meadow_golf.train.train_cdm import main

if __name__ == "__main__":
    sys.exit(main())
