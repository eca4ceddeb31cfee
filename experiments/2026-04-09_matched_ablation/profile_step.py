"""Profile a training step (torch.profiler). The code: scripts/meadow_golf/tools/profile_step.py."""

import sys

from meadow_golf.tools.profile_step import main

if __name__ == "__main__":
    sys.exit(main())
