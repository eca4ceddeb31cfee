"""Replay an original-code fixture with the project's own training step. The code: scripts/meadow_golf/original/replay_fixture.py."""

import sys

from meadow_golf.original.replay_fixture import main

if __name__ == "__main__":
    sys.exit(main())
