"""JSON as Mender's Go services write it, and untrusted JSON read so that it can be written again.

Writing: compact, HTML-escaped, UTF-8 (:func:`dumps`, :func:`dumpb`).

Reading (:func:`loads`): Python's ``json`` accepts documents that devicehooks cannot pass on.
``NaN``, ``Infinity`` and numbers beyond a float (``1e400``) come back as nan/inf, which no JSON
writer takes; ``"\\ud800"`` comes back as a lone surrogate, which no UTF-8 encoder takes; an
integer of 4,300 digits raises ``ValueError`` and a document nested 100,000 deep raises
``RecursionError``; EventBridge takes integers in int64's range only. A request carrying any of
them was accepted and then failed later (a 500, or an event the dispatcher could never send).
:func:`loads` refuses them all with one exception, :class:`JSONInputError`, whose message names
the field, and :func:`check` applies the same rules to values that did not come through it.

This module imports nothing but the standard library: the authorizer reads tokens with it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})

# Far below Python's recursion limit (every layer that walks the data recursively, the dispatcher's
# included, stays safe) and EventBridge's 1,000 levels, far above any device's identity data.
MAX_JSON_DEPTH = 64
# EventBridge takes JSON integers in int64's range only (PutEvents API reference).
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**63 - 1
# When int() has raised (4,300 digits or more), the second read refuses longer digit strings
# before int() sees them: none of them fits int64 anyway.
_MAX_INT_DIGITS = 20
_MAX_QUOTED = 24  # characters of a refused number or key quoted in a message
_SURROGATE = re.compile("[\ud800-\udfff]")
_TOO_DEEP = f"nested more than {MAX_JSON_DEPTH} levels deep"

Path = tuple[str | int, ...]


def dumps(value: Any) -> str:
    """Compact JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 escaped (Go's ``json.Marshal``).

    The escaped characters can only occur inside JSON strings, so the translation is safe on
    the whole document. Key order is the insertion order of the dicts given.
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).translate(_GO_ESCAPES)


def dumpb(value: Any) -> bytes:
    """:func:`dumps` as UTF-8 bytes (the exact bytes that are signed and sent)."""
    return dumps(value).encode()


def describe(path: Sequence[str | int], reason: str) -> str:
    """``reason`` at ``path`` in Mender's (ozzo-validation) nesting: ``a: (0: (b: reason.).).``."""
    text = f"{reason}."
    for n, key in enumerate(reversed(path)):
        text = f"{key}: {text}" if n == 0 else f"{key}: ({text})."
    return text


class JSONInputError(json.JSONDecodeError):
    """A document that is JSON to Python but that devicehooks refuses (see the module docstring).

    A ``JSONDecodeError``, so that whatever reports invalid JSON reports it too (powertools'
    request validation does, as ``json_invalid``); ``msg`` and ``str()`` are :func:`describe`'s
    text, without the line and column a syntax error has.
    """

    def __init__(self, reason: str, path: Sequence[str | int] = (), doc: str = "") -> None:
        message = describe(path, reason)
        ValueError.__init__(self, message)
        self.msg = message
        self.doc = doc
        self.pos = 0
        self.lineno = 1
        self.colno = 1
        self.reason = reason
        self.path: Path = tuple(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.path, self.doc)


class _Refused:
    """What a parse hook returns for a literal it refuses; :func:`check` reports it with its path."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _cut(text: str) -> str:
    """``text`` short enough to quote in a message."""
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 3] + "..."


def _quote(text: str) -> str:
    """``text`` safe to quote in a message whatever it holds: cut, ASCII, surrogates escaped."""
    return _cut(text).encode("ascii", "backslashreplace").decode("ascii")


def _constant(name: str) -> _Refused:
    return _Refused(f"{name} is not a JSON number")


def _int(text: str) -> int | _Refused:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _Refused(f"integer {_quote(text)} is out of range (64-bit)")
    return int(text)


def _surrogate(text: str) -> str | None:
    """The first lone surrogate in ``text``, written as ``\\udXXX``; None when there is none."""
    found = _SURROGATE.search(text)
    return None if found is None else f"\\u{ord(found.group()):04x}"


def _leaf_problem(item: Any) -> str | None:
    """Why a value that is not an array or an object cannot be passed on, or None."""
    if isinstance(item, str):
        bad = None if item.isascii() else _surrogate(item)
        return None if bad is None else f"contains a lone surrogate ({bad}), which is not Unicode"
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, int):
        if MIN_JSON_INT <= item <= MAX_JSON_INT:
            return None
        return f"integer {_quote(str(item)) if item.bit_length() < 1024 else '...'} is out of range (64-bit)"
    if isinstance(item, float):
        if math.isfinite(item):
            return None
        # from the reader, an infinity is a number beyond a float: the literals are _Refused
        return "NaN is not a JSON number" if math.isnan(item) else "number is out of range (beyond a 64-bit float)"
    if isinstance(item, _Refused):
        return item.reason
    return f"a {type(item).__name__} is not a JSON value"


def _members(container: dict[Any, Any] | list[Any], path: list[str | int], doc: str) -> Iterator[tuple[Any, Any]]:
    """A container's (key, value) pairs; an object's keys are checked as they come."""
    if isinstance(container, list):
        yield from enumerate(container)
        return
    for key, value in container.items():
        if not isinstance(key, str):
            raise JSONInputError(f"key {_quote(repr(key))} is not a string", path, doc)
        bad = None if key.isascii() else _surrogate(key)
        if bad is not None:
            raise JSONInputError(f"a key contains a lone surrogate ({bad}), which is not Unicode", path, doc)
        yield _cut(key), value


def check(value: Any, doc: str = "") -> None:
    """Raise :class:`JSONInputError` unless ``value`` can be written as JSON and read back as it is.

    Refused, with the path of the first offender: nesting deeper than :data:`MAX_JSON_DEPTH`
    arrays and objects, NaN and infinite floats, integers outside int64, lone surrogates in
    strings and keys, and anything that is not a JSON type. Iterative, so no depth can crash it;
    a path is only built for the offender (a megabyte of small numbers takes tens of milliseconds).
    """
    if not isinstance(value, dict | list):
        problem = _leaf_problem(value)
        if problem is not None:
            raise JSONInputError(problem, (), doc)
        return
    path: list[str | int] = []  # the keys leading to the container being read
    stack = [_members(value, path, doc)]
    while stack:
        for key, item in stack[-1]:
            kind = type(item)
            if kind is str:
                if item.isascii():
                    continue
            elif kind is int:
                if MIN_JSON_INT <= item <= MAX_JSON_INT:
                    continue
            elif kind is float:
                if math.isfinite(item):
                    continue
            elif kind is dict or kind is list or isinstance(item, dict | list):
                if len(stack) >= MAX_JSON_DEPTH:  # no path: it would be as deep as the document
                    raise JSONInputError(_TOO_DEEP, (), doc)
                path.append(key)
                stack.append(_members(item, path, doc))
                break  # read the child; the parent's iterator resumes after it
            problem = _leaf_problem(item)
            if problem is not None:
                raise JSONInputError(problem, (*path, key), doc)
        else:
            stack.pop()
            if path:
                path.pop()


def loads(text: str | bytes) -> Any:
    """Parse untrusted JSON; raise ``json.JSONDecodeError`` (:class:`JSONInputError` for what
    :func:`check` refuses) and never anything else.

    Bytes must be UTF-8. Deep nesting that Python's parser itself cannot take is reported as
    too deep, like nesting it can take but :func:`check` refuses.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise JSONInputError("the document is not UTF-8") from None
    try:
        value = _parse(text)
    except json.JSONDecodeError:
        raise
    except ValueError:
        # int()'s limit: an integer of 4,300 digits or more. Read again, with the hook that
        # refuses long integers before int() sees them, to say where it is.
        value = _parse(text, _int)
    check(value, text)
    return value


def _parse(text: str, parse_int: Callable[[str], Any] | None = None) -> Any:
    # Only parse_constant by default: a parse_int or parse_float hook turns off the C parser's
    # fast path for every number (some 30 times slower).
    try:
        return json.loads(text, parse_constant=_constant, parse_int=parse_int)
    except RecursionError:
        raise JSONInputError(_TOO_DEEP, (), text) from None
