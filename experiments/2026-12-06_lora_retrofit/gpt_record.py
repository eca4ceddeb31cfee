"""The CPU record: the retrofit on our own pretrained 4L-d192 Shakespeare control, against the
from-scratch joint model of the same size (see README.md here, "CPU record")."""

import sys

from meadow_golf.retrofit.gpt_record import main

if __name__ == "__main__":
    sys.exit(main())
