"""The 'humaneval' evaluation job of a retrofit (one script per job); the code and its definitions are
in evaluate.py, which both jobs share."""

from meadow_golf.retrofit.evaluate import humaneval_main as main

__all__ = ["main"]
