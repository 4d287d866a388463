"""Remove from a built layer what the Lambda runtime provides (layers/common/Makefile runs it).

pip installs a requirement's whole closure: a shipped package that depends on one the runtime
provides (aws-xray-sdk on botocore) brings it, and its own dependencies, into the layer. This
removes the distributions that requirements.txt names as runtime-provided (its
``# runtime-provided:`` line, written from pyproject.toml by ``make requirements``), then every
distribution left that no remaining one requires. Standard library only: it runs with the build's
python3.12, outside any virtual environment.

    python3.12 prune.py <site directory> requirements.txt
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import Distribution, distributions
from pathlib import Path

MARKER = "# runtime-provided:"
_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requires(dist: Distribution) -> set[str]:
    """Every project ``dist`` may require, whatever the markers (so nothing needed is removed)."""
    return {normalize(m.group(1)) for r in dist.requires or [] if (m := _NAME.match(r))}


def remove(site: Path, dist: Distribution) -> None:
    """Delete the files its RECORD lists (its .dist-info's among them), then the directories left empty."""
    root = site.resolve()
    files = [(root / f).resolve() for f in dist.files or []]
    for path in files:
        if path.is_relative_to(root) and path.is_file():
            path.unlink()
    for directory in sorted(
        {p for f in files for p in f.parents if p.is_relative_to(root)}, key=lambda p: -len(p.parts)
    ):
        if directory != root and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def main(site: Path, requirements: Path) -> int:
    line = next((x for x in requirements.read_text().splitlines() if x.startswith(MARKER)), None)
    if line is None:
        print(f"prune.py: no '{MARKER}' line in {requirements}", file=sys.stderr)
        return 2
    provided = {normalize(n) for n in line[len(MARKER) :].replace(",", " ").split()}
    installed = {normalize(d.metadata["Name"]): d for d in distributions(path=[str(site)])}
    doomed = provided & set(installed)
    while True:  # then whatever only the removed ones required
        kept = set(installed) - doomed
        needed = set().union(*(requires(installed[name]) for name in kept)) if kept else set()
        needed |= _top_level(requirements)
        orphans = {name for name in kept if name not in needed}
        if not orphans:
            break
        doomed |= orphans
    for name in sorted(doomed):
        remove(site, installed[name])
        print(f"prune.py: removed {name} (provided by the Lambda runtime, or needed only by what is)")
    return 0


def _top_level(requirements: Path) -> set[str]:
    return {
        normalize(m.group(1))
        for x in requirements.read_text().splitlines()
        if x.strip() and not x.startswith("#") and (m := _NAME.match(x))
    }


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
