"""The retrofit recipe's Python side (run_retrofit.sh calls it; scripts/meadow_golf/retrofit/recipe.py)."""

import sys

from meadow_golf.retrofit.recipe import main

if __name__ == "__main__":
    sys.exit(main())
