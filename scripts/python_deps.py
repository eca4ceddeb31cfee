"""Report missing Python modules before any work (standard library only). The code: scripts/meadow_golf/common/python_deps.py."""

import sys

from meadow_golf.common.python_deps import main

if __name__ == "__main__":
    sys.exit(main())
