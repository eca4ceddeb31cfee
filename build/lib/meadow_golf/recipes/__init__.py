"""Recipes: which cells an experiment trains and evaluates, which are done, and the steps that run them.

presets.py (the preset table, scale flags, the original's rules scaled), settings.py (the
environment, read and checked once), plans.py (Cell and what plans share; each experiment's own
cells are in its folder's plan.py), cells.py (cell state from JSON), running.py (a cell's command
with its log, heartbeat and signals; progress and ETA), steps.py (train / evaluate / summarize),
cli.py (the command line of a plan.py). Standard library only at import.
"""
