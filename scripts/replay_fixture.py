"""Replay an original-code fixture with the project's own training step. The code: scripts/meadow_golf/original/replay_fixture.py."""

import sys

if __name__ == "__main__":
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.original.replay_fixture", ("torch",)))
