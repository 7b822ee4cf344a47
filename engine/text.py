"""Text that is safe to show: control characters escaped before anything reaches a terminal or a log.

Folder names, class names and values from files are chosen by whoever made the dataset; printed as
they are, ``\\x1b[...`` sequences would recolour or rewrite the user's terminal and a ``\\n`` would
forge log lines. :func:`printable` turns every control character (Unicode categories Cc and the
bidirectional / invisible format characters of Cf) into a visible escape.
"""
from __future__ import annotations

import math
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
    """``fraction`` as a percentage in fixed notation with 3 significant digits, more where a value
    below 1 would read 100: 0.2 → "20%", 0.001 → "0.1%", 0.125 → "12.5%", 1e-7 → "0.00001%",
    0.9995 → "99.95%" (``:.0%`` showed a 0.001 hold-out as "0%")."""
    p = fraction * 100
    if not (p > 0 and math.isfinite(p)):
        return f"{p:g}%"
    decimals = max(0, 2 - math.floor(math.log10(p)))
    text = f"{p:.{decimals}f}"
    while fraction < 1 and float(text) >= 100 and decimals < 12:
        decimals += 1
        text = f"{p:.{decimals}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + "%"
