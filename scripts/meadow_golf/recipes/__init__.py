"""Recipes: which cells an experiment trains and evaluates, and which are done."""
