"""Summaries of finished runs: rows, statistics, tables, plots, the scale fit, record comparison."""
