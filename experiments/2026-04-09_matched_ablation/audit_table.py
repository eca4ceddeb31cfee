"""The audit table of the original's published numbers, from JSON. The code: scripts/meadow_golf/original/audit_table.py."""

import sys

from meadow_golf.original.audit_table import main

if __name__ == "__main__":
    sys.exit(main())
