"""Text that is safe to show: control characters escaped before anything reaches a terminal or a log.

Folder names, class names and values from files are chosen by whoever made the dataset; printed as
they are, ``\\x1b[...`` sequences would recolour or rewrite the user's terminal and a ``\\n`` would
forge log lines. :func:`printable` turns every control character (Unicode categories Cc and the
bidirectional / invisible format characters of Cf) into a visible escape.
"""
from __future__ import annotations

import unicodedata
from typing import Any

_KEEP_IN_TEXT = "\n"                # kept by printable(..., keep_newlines=True): multi-line messages
_SHOWN_CHARS = 80                   # longest repr of a value quoted in an error message


def _escape(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: Any, *, keep_newlines: bool = False) -> str:
    """``str(text)`` with control and invisible format characters escaped (``\\x1b`` → ``\\\\x1b``);
    newlines are kept when ``keep_newlines``. Lone surrogates (undecodable file names) are escaped too."""
    out = []
    for ch in str(text):
        if keep_newlines and ch in _KEEP_IN_TEXT:
            out.append(ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)


def shown(value: Any, limit: int = _SHOWN_CHARS) -> str:
    """A short, printable ``repr`` of ``value`` for error messages (cut to ``limit`` characters)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):        # very deep containers; huge ints beyond str()'s limit
        text = f"<{type(value).__name__}>"
    text = printable(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def percent(fraction: float) -> str:
    """``fraction`` as a percentage with the digits it needs (up to 3 significant): 0.2 → "20%",
    0.001 → "0.1%", 0.125 → "12.5%" (``:.0%`` showed a 0.001 hold-out as "0%")."""
    return f"{fraction * 100:.3g}%"
