"""Small helpers every floor may use: the command-line help formatter, run logs, the dependency check."""
