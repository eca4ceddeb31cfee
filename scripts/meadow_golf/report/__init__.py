"""Summaries of finished runs: rows (loading), stats (seed statistics), compare, tables, plots, summarize (the CLI), record comparison."""
