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


# pydantic's errors for a value of the wrong JSON type, where Go's encoding/json fails to decode.
_TYPE_ERRORS = frozenset(
    {
        "string_type",
        "bool_type",
        "int_type",
        "int_from_float",
        "float_type",
        "list_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
    }
)


def _go_kind(value: Any) -> str:
    """The JSON kind Go's ``UnmarshalTypeError`` names (``Value``)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _go_model(model: Any, name: str) -> Any:
    """The input model of ``model``'s field ``name`` (``Optional`` unwrapped), else ``None``."""
    field = model.model_fields.get(name)
    if field is None:
        return None
    for candidate in (field.annotation, *getattr(field.annotation, "__args__", ())):
        if isinstance(candidate, type) and hasattr(candidate, "go_fields"):
            return candidate
    return None


def _go_field_error(kind: str, struct: str, path: Sequence[str], go_type: str) -> str:
    # Go >= 1.20: the innermost struct's name, then the field's full path from the top
    return f"json: cannot unmarshal {kind} into Go struct field {struct}.{'.'.join(path)} of type {go_type}"


def go_unmarshal_error(model: Any, loc: Sequence[str | int], value: Any) -> str | None:
    """Go's ``encoding/json`` message for a value of the wrong JSON type at ``loc`` of ``model``.

    ``model`` describes its Go struct with class variables: ``go_type`` (``model.Integration``),
    ``go_name`` (``Integration``), ``go_fields`` (JSON name: Go type) and ``go_unmarshaler`` (the Go
    type decodes itself, so the outer decoder names the field that holds it, with the inner type).
    ``None`` when a field on the way has no Go counterpart (a devicehooks addition).
    """
    kind = _go_kind(value)
    if not loc:
        return f"json: cannot unmarshal {kind} into Go value of type {model.go_type}"
    current, path = model, []
    for i, name in enumerate(loc):
        go_fields: Mapping[str, str] = current.go_fields
        if not isinstance(name, str) or name not in go_fields:
            return None
        path.append(name)
        child = _go_model(current, name)
        last = i == len(loc) - 1
        if child is not None and child.go_unmarshaler:
            rest = loc[i + 1 :]
            if not rest:
                inner = child.go_type
            elif len(rest) == 1 and isinstance(rest[0], str) and rest[0] in child.go_fields:
                inner = child.go_fields[rest[0]]
            else:
                return None
            return _go_field_error(kind, current.go_name, path, inner)
        if last:
            return _go_field_error(kind, current.go_name, path, go_fields[name])
        if child is None:
            return None
        current = child
    return None


def first_type_error(errors: Iterable[ErrorDetails | Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first error for a value of the wrong JSON type (not a JSON null), if any."""
    for error in errors:
        if error.get("type") in _TYPE_ERRORS and error.get("input") is not None:
            return error
    return None
