"""AWS list prices, read from the one table that holds them (docs/operations.md, "Prices")."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"
_ROW = re.compile(r"^\|\s*([a-z0-9_]+)\s*\|\s*([0-9.]+)\s*\|\s*(.+?)\s*\|\s*$")


@cache
def prices() -> dict[str, float]:
    """``name -> USD`` for each row of the price table; a name's unit says per what ("million ...")."""
    text = OPERATIONS.read_text(encoding="utf-8")
    table = text.split("<!-- prices", 1)[1]
    found: dict[str, float] = {}
    for line in table.splitlines()[1:]:
        if not line.startswith("|"):
            if found:
                break
            continue
        match = _ROW.match(line)
        if match:
            name, usd, per = match.groups()
            found[name] = float(usd) / (1e6 if per.startswith("million") else 1.0)
    if not found:
        raise RuntimeError(f"no price table in {OPERATIONS}")
    return found


def price(name: str) -> float:
    """USD for one unit of ``name`` (one request, one write unit, one GB-second, ...)."""
    return prices()[name]
