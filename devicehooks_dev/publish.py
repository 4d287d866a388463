"""Upload the web UI to the stack's bucket and refresh the CloudFront distribution."""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path
from typing import Any

# JavaScript modules are not fingerprinted: caches revalidate them, and a publish invalidates.
CACHE_CONTROL = {"index.html": "no-cache"}
DEFAULT_CACHE_CONTROL = "max-age=300, must-revalidate"


def ui_base(root: Path) -> Path:
    """Where the UI's files are: ``ui/dist`` if a build produced one, else ``ui`` itself."""
    return root / "dist" if (root / "dist").is_dir() else root


def content_type(name: str) -> str:
    """The Content-Type a UI file is served with (UTF-8 for text)."""
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return kind


def ui_files(root: Path) -> list[Path]:
    """The UI's files, without dotfiles."""
    base = ui_base(root)
    return sorted(p for p in base.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts))


def publish(s3: Any, cloudfront: Any, bucket: str, distribution_id: str, root: Path) -> list[str]:
    """Upload every UI file with its content type, then invalidate the distribution's cache."""
    base = ui_base(root)
    keys = []
    for path in ui_files(root):
        key = path.relative_to(base).as_posix()
        s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=path.read_bytes(),
            ContentType=content_type(path.name),
            CacheControl=CACHE_CONTROL.get(key, DEFAULT_CACHE_CONTROL),
        )
        keys.append(key)
    cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/*"]}, "CallerReference": f"devicehooks-{time.time()}"},
    )
    return keys
