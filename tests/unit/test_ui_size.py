"""The UI's size, as README.md and docs/ui.md give it, is what ``ui/`` holds.

Measured as those figures were: every file publish-ui uploads, concatenated in path order; the raw
bytes, and ``gzip -9`` of them (GNU gzip's figure exactly; without gzip on PATH, Python's zlib,
whose output is some 0.6 % larger, within 1 %). A change to the UI that changes them fails here
until the docs say the new figures.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess

from devicehooks_dev.publish import ui_files
from tests.conftest import ROOT


def _gzipped(data: bytes) -> tuple[int, float]:
    """The size of ``data`` compressed by ``gzip -9``, and the relative error allowed."""
    program = shutil.which("gzip")
    if program is None:
        return len(gzip.compress(data, compresslevel=9, mtime=0)), 0.01
    return len(subprocess.run([program, "-9", "-n"], input=data, capture_output=True, check=True).stdout), 0.0


def _measured() -> tuple[int, int, int, float]:
    files = ui_files(ROOT / "ui")
    data = b"".join(path.read_bytes() for path in files)
    return len(files), len(data), *_gzipped(data)


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_the_readme_gives_the_ui_size_as_it_is() -> None:
    count, raw, gzipped, error = _measured()
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"([\d.]+) kB in (\d+) files \(([\d.]+) kB gzipped\)", readme)
    assert found, "README.md gives no UI size"
    expected = f"{raw / 1000:.1f} kB in {count} files (about {gzipped / 1000:.1f} kB gzipped)"
    assert float(found[1]) == round(raw / 1000, 1), expected
    assert int(found[2]) == count, expected
    assert abs(float(found[3]) - gzipped / 1000) <= 0.05 + error * gzipped / 1000, expected


def test_docs_ui_gives_the_ui_size_as_it_is() -> None:
    count, raw, gzipped, error = _measured()
    text = (ROOT / "docs" / "ui.md").read_text()
    found = re.search(r"\*\*Size:\*\* ([\d,]+) bytes in (\d+) files \(([\d.]+) kB gzipped: ([\d,]+) bytes", text)
    assert found, "docs/ui.md gives no UI size"
    expected = f"{raw:,} bytes in {count} files (about {gzipped:,} bytes gzipped)"
    assert (_number(found[1]), int(found[2])) == (raw, count), expected
    assert abs(_number(found[4]) - gzipped) <= error * gzipped, expected
    assert f"{_number(found[4]) / 1000:.1f}" == found[3], "the kB figure is the bytes' figure rounded"
