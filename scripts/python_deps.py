"""Report missing Python modules before any work (standard library only). The code: scripts/meadow_golf/common/python_deps.py."""

import sys

if __name__ == "__main__":
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.common.python_deps", ("torch", "mlx")))
