"""The --help formatter every command-line entry point of the project uses.

It shows each flag's default after its help ("(default: ...)", argparse's
ArgumentDefaultsHelpFormatter) and keeps the description's own line breaks, so a module
docstring used as the description prints as written (RawDescriptionHelpFormatter).
Standard library only: importing it costs nothing.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after every flag's help; descriptions and epilogs printed verbatim.

    A default of None is not shown: it means "not given", and the flag's help says what
    happens then ("(default: None)" would say nothing).
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None:
            return action.help or ""
        return super()._get_help_string(action)
