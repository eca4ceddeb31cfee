"""The audit table of the original's published numbers, from JSON. The code: scripts/meadow_golf/original/audit_table.py."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Without the install the checkout's package is used (an installed one comes first); entry.run
    # names the install command when a package is missing.
    sys.path.append(str(Path(__file__).resolve().parents[2] / "scripts"))
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.original.audit_table", ("torch",)))
