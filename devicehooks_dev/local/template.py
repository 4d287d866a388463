"""Read template.yaml: CloudFormation tags, parameters, intrinsic functions, resources by type."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TAGS = {
    "!Ref": "Ref",
    "!Condition": "Condition",
    "!GetAtt": "Fn::GetAtt",
    "!Sub": "Fn::Sub",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Join": "Fn::Join",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!FindInMap": "Fn::FindInMap",
    "!ImportValue": "Fn::ImportValue",
    "!Base64": "Fn::Base64",
    "!GetAZs": "Fn::GetAZs",
    "!Cidr": "Fn::Cidr",
}


class _Loader(yaml.SafeLoader):
    """YAML loader that understands CloudFormation's short-form intrinsic tags."""


def _construct(name: str) -> Callable[[_Loader, yaml.Node], dict[str, Any]]:
    def build(loader: _Loader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            val: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt" and isinstance(val, str):
                val = val.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            val = loader.construct_sequence(node, deep=True)
        else:
            val = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: val}

    return build


for _tag, _name in _TAGS.items():
    _Loader.add_constructor(_tag, _construct(_name))


def load_template(path: Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template into plain dicts (intrinsics in long form)."""
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{path} is not a CloudFormation template")
    return data


NO_VALUE: Any = type("NoValue", (), {"__repr__": lambda self: "AWS::NoValue"})()  # Ref AWS::NoValue


@dataclass
class Resolver:
    """Evaluates intrinsic functions against parameter values and local physical resources."""

    parameters: dict[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)
    pseudo: dict[str, str] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.conditions[name]))

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"cannot resolve Ref {name} locally")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):  # an entry that is AWS::NoValue is left out, as CloudFormation does
            return [v for v in (self.resolve(v) for v in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else str(arg).split(".", 1)
                if (logical, attr) not in self.attributes:
                    raise KeyError(f"cannot resolve GetAtt {logical}.{attr} locally")
                return self.attributes[(logical, attr)]
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

                def sub(match: re.Match[str]) -> str:
                    name = match.group(1)
                    if name in extra:
                        return str(extra[name])
                    if "." in name and not name.startswith("AWS::"):
                        logical, attr = name.split(".", 1)
                        return str(self.attributes[(logical, attr)])
                    return str(self._ref(name))

                return re.sub(r"\$\{([^}!]+)\}", sub, text)
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                left, right = self.resolve(arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(arg))
            if key == "Fn::Or":
                return any(self.resolve(arg))
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if key == "Fn::Split":
                sep, text = self.resolve(arg)
                return str(text).split(sep)
            if key == "Fn::FindInMap":
                name, top, second = (str(part) for part in self.resolve(arg))
                return self.mappings[name][top][second]
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}


def parameter_defaults(template: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter values: overrides, else the template's defaults; a parameter with neither is an error."""
    values: dict[str, Any] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if name in overrides:
            values[name] = overrides[name]
        elif "Default" in spec:
            values[name] = spec["Default"]
        else:
            raise ValueError(f"template parameter {name} has no default and no local value")
    return values


def resources_of(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """Logical id → resource, for every resource of CloudFormation type ``kind``."""
    return {k: v for k, v in template["Resources"].items() if v.get("Type") == kind}


def queue_order(queues: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Queue logical ids with every dead-letter queue before the queues that redrive into it."""
    order: list[str] = []

    def visit(name: str, seen: tuple[str, ...] = ()) -> None:
        if name in order or name in seen:
            return
        redrive = (queues[name].get("Properties") or {}).get("RedrivePolicy") or {}
        target = redrive.get("deadLetterTargetArn")
        if isinstance(target, dict) and "Fn::GetAtt" in target:
            dlq = target["Fn::GetAtt"][0]
            if dlq in queues:
                visit(dlq, (*seen, name))
        order.append(name)

    for name in queues:
        visit(name)
    return order
