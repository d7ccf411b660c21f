"""How the CLI prints: aligned tables for people, JSON for scripts.

Much of what the CLI shows comes from other peers: agent names and descriptions, answers,
addresses, the reasons a peer gave for failing. Printed raw, a terminal escape in any of
them could clear the screen, rewrite earlier lines, retitle the window or hide text. So
everything printed for people goes through :func:`clean` (tables cell by cell, messages
through :func:`say` and :func:`emit`): control and invisible formatting characters are
shown escaped (``\\x1b``, ``\\u202e``) instead of acting. ``--json`` output stays exact
(JSON escapes control characters itself).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, TextIO

#: Unicode categories that act on a terminal instead of showing: controls (C0, DEL, C1:
#: ESC starts every escape sequence), format characters (bidirectional overrides,
#: zero-width), surrogates, private use, unassigned, line and paragraph separators.
_HIDDEN = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def clean(text: object, *, multiline: bool = False) -> str:
    """``text`` safe to print on a terminal: every control or invisible formatting
    character escaped; with ``multiline``, line feeds and tabs are kept, else they become
    spaces (a table cell is one line)."""
    out = []
    for char in str(text):
        if char in "\n\t":
            out.append(char if multiline else " ")
        elif unicodedata.category(char) in _HIDDEN:
            out.append(_escaped(char))
        else:
            out.append(char)
    return "".join(out)


def say(text: str, *, file: TextIO | None = None, end: str = "\n", flush: bool = False) -> None:
    """Print ``text``, which may hold strings from peers, cleaned."""
    print(clean(text, multiline=True), file=file or sys.stdout, end=end, flush=flush)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[clean(h) for h in headers]] + [["" if c is None else clean(c) for c in r]
                                             for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    seconds = max(0.0, time.time() - ts)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


def emit(args: argparse.Namespace, payload: Any, human: Callable[[Any], str]) -> int:
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        say(human(payload))
    return 0
