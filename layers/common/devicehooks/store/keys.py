"""Composite DynamoDB keys: parts joined with ``#``, each part escaped so that none holds one.

Ids may contain ``#`` (Mender allows it), so a part is percent-encoded: ``%`` as ``%25``, then
``#`` as ``%23``. An escaped part holds no ``#``, so distinct tuples of parts make distinct keys,
:func:`split` gives the parts back, and a prefix ending in the separator (``H#<integration>#``)
matches only keys whose part there is exactly that one (never a longer id it is a prefix of).
Labels (``T``, ``E``...) and times contain neither character: escaping leaves them as they are.
"""

from __future__ import annotations

SEP = "#"


def escape(part: str) -> str:
    """``part`` with no ``#`` left in it (reversible: :func:`unescape`)."""
    return part.replace("%", "%25").replace(SEP, "%23")


def unescape(part: str) -> str:
    """The part that :func:`escape` made ``part`` of (every ``%`` in it starts ``%23`` or ``%25``)."""
    return part.replace("%23", SEP).replace("%25", "%")


def join(*parts: str) -> str:
    """The key of these parts, each escaped."""
    return SEP.join(escape(p) for p in parts)


def split(key: str) -> list[str]:
    """The parts of a key made by :func:`join`."""
    return [unescape(p) for p in key.split(SEP)]
