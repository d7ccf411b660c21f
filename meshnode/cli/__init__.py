"""The ``meshnode`` command: its sub-commands, the HTTP client that talks to the local
daemon, output formatting and the demo mesh.

May import everything; only ``meshnode start`` loads the daemon (lazily, it is heavy).
"""

from meshnode.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
