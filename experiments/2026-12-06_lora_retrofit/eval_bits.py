"""Bits per byte on held-out code and infill code lengths. The code: scripts/meadow_golf/retrofit/eval_bits.py."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Without the install the checkout's package is used (an installed one comes first); entry.run
    # names the install command when a package is missing.
    sys.path.append(str(Path(__file__).resolve().parents[2] / "scripts"))
    from meadow_golf.common.entry import run

    sys.exit(run("meadow_golf.retrofit.eval_bits", ("retrofit",)))
