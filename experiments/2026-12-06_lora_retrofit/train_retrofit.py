"""Train a LoRA retrofit (a bidirectional mode for a pretrained causal LM); see README.md here and
scripts/meadow_golf/retrofit/train.py for the flags."""

import sys

from meadow_golf.retrofit.train import main

if __name__ == "__main__":
    sys.exit(main())
