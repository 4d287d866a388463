"""Writes the Lambda layer's ``requirements.txt`` from ``pyproject.toml``.

The layer (template.yaml ``CommonLayer``, built from ``layers/common/``) ships the devicehooks
package and its third-party dependencies: ``[project].dependencies`` minus those the Lambda
runtime provides, declared once as ``[tool.devicehooks] runtime-provided``. pyproject.toml is
the one description of the dependencies; ``layers/common/requirements.txt`` is generated from
it, never edited by hand::

    make requirements              # python -m devicehooks_dev.layer
    python -m devicehooks_dev.layer --check   # exit 1 when the file is out of date

Only the standard library is used, so it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
REQUIREMENTS = ROOT / "layers" / "common" / "requirements.txt"
COMMAND = "make requirements"

HEADER = (
    f"# Generated from pyproject.toml by `{COMMAND}` (python -m devicehooks_dev.layer): do not edit.\n"
    "# The Lambda layer's third-party dependencies: [project].dependencies minus what the runtime\n"
    "# provides ([tool.devicehooks] runtime-provided), which layers/common/prune.py removes from the\n"
    "# built layer when a shipped package depends on one:\n"
    "# runtime-provided: {provided}\n"
)

# PEP 508: a requirement starts with the project's name
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def normalize(name: str) -> str:
    """A project name as package indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized project name of a PEP 508 requirement string."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return normalize(match.group(1))


def _string_list(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where} {key} must be a list of strings")
    return list(value)


def render(pyproject: Path = PYPROJECT) -> str:
    """The text of the layer's requirements.txt for this pyproject.toml."""
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    dependencies = _string_list(data.get("project", {}), "dependencies", "[project]")
    provided = _string_list(data.get("tool", {}).get("devicehooks", {}), "runtime-provided", "[tool.devicehooks]")
    names = {requirement_name(dep) for dep in dependencies}
    unknown = [name for name in provided if normalize(name) not in names]
    if unknown:
        raise ValueError(f"[tool.devicehooks] runtime-provided names no dependency of [project]: {', '.join(unknown)}")
    left_out = {normalize(name) for name in provided}
    shipped = [dep.strip() for dep in dependencies if requirement_name(dep) not in left_out]
    return HEADER.format(provided=", ".join(provided) or "none") + "".join(f"{dep}\n" for dep in shipped)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devicehooks_dev.layer",
        description="Write layers/common/requirements.txt from pyproject.toml.",
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file is out of date")
    args = parser.parse_args(argv)
    try:
        text = render(PYPROJECT)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"devicehooks_dev.layer: {exc}", file=sys.stderr)
        return 2
    relative = REQUIREMENTS.relative_to(ROOT)
    current = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.exists() else None
    if args.check:
        if current != text:
            print(f"{relative} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    if current != text:  # unchanged: leave the file (and its mtime) alone
        REQUIREMENTS.write_text(text, encoding="utf-8")
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
