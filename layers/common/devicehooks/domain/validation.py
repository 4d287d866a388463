"""Turn pydantic validation errors into Mender's (ozzo-validation) messages.

Mender reports every invalid field, keyed by JSON name, keys sorted and joined with ``"; "``,
nested objects in parentheses, the whole ending in a full stop::

    credentials: (http: (url: cannot be blank.).).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic_core import ErrorDetails

# Messages that the models raise carry their own text (PydanticCustomError "devicehooks").
_GENERIC_MESSAGES: dict[str, str] = {
    "missing": "cannot be blank",
    "string_type": "must be a string",
    "bool_type": "must be a boolean",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be a valid value",
    "enum": "must be a valid value",
    "too_short": "must not be empty",
    "string_too_long": "is too long",
    "too_long": "has too many items",
}

_Tree = dict[str, Any]


def message_for(error: Mapping[str, Any]) -> str:
    """The ozzo-style message of one pydantic error."""
    if error.get("type") == "devicehooks":
        return str(error["msg"])
    if "input" in error and error["input"] is None and str(error.get("type", "")).endswith("_type"):
        return "cannot be blank"  # JSON null decodes to Go's zero value, which ozzo calls blank
    generic = _GENERIC_MESSAGES.get(str(error.get("type")))
    if generic is not None:
        return generic
    msg = str(error.get("msg", "is invalid"))
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _insert(tree: _Tree, path: Sequence[str], message: str) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    leaf = path[-1]
    if leaf not in node:  # first error per field wins, as ozzo stops at the first failing rule
        node[leaf] = message


def format_tree(tree: Mapping[str, Any]) -> str:
    """Render a nested ``{field: message | subtree}`` as ozzo-validation does."""
    parts = []
    for key in sorted(tree):
        value = tree[key]
        parts.append(f"{key}: ({format_tree(value)})" if isinstance(value, dict) else f"{key}: {value}")
    return "; ".join(parts) + "."


def format_errors(errors: Iterable[ErrorDetails | Mapping[str, Any]], skip_prefix: Sequence[str] = ()) -> str:
    """Format pydantic errors (optionally dropping a leading location such as ``body``)."""
    tree: _Tree = {}
    loose: list[str] = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if skip_prefix and loc[: len(skip_prefix)] == list(skip_prefix):
            loc = loc[len(skip_prefix) :]
        # list indexes become part of the key, as ozzo does for slices ("event_types: (1: ...)")
        message = message_for(error)
        if loc:
            _insert(tree, loc, message)
        else:
            loose.append(message.rstrip("."))
    rendered = format_tree(tree) if tree else ""
    if loose:
        head = "; ".join(loose)
        return f"{head}; {rendered}" if rendered else f"{head}."
    return rendered
