"""JSON encoding as Mender's Go services write it: compact, HTML-escaped, UTF-8."""

from __future__ import annotations

import json
from typing import Any

_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(value: Any) -> str:
    """Compact JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped (Go's ``json.Marshal``).

    The escaped characters can only occur inside JSON strings, so the translation is safe on
    the whole document. Key order is the insertion order of the dicts given.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).translate(_GO_ESCAPES)


def dumpb(value: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (the exact bytes that are signed and sent)."""
    return dumps(value).encode()
