"""The local stack's development signing key, and tokens signed with it.

The key exists for local use only: it is generated on first use into a file of the user's
(``DEVICEHOOKS_DEV_KEY_FILE``, default ``~/.config/devicehooks/dev-signing-key.pem``), never
committed and never part of a deployment, which trusts only the ``JwtPublicKeys`` parameter.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_ID = "devicehooks-local-dev"
ISSUER = "devicehooks-local"


def key_path() -> Path:
    explicit = os.environ.get("DEVICEHOOKS_DEV_KEY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "devicehooks" / "dev-signing-key.pem"


def load_or_create() -> Ed25519PrivateKey:
    """The development key, created (mode 0600) if it does not exist yet."""
    path = key_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # created concurrently by another process: use theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    for _ in range(50):
        data = path.read_bytes()
        if data:
            break
        time.sleep(0.01)
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


def public_pem() -> str:
    """The development public key, PEM (what the local stack's authorizer trusts)."""
    return (
        load_or_create()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def mint_token(
    tenant_id: str,
    user_id: str | None = None,
    ttl: int = 3600,
    user: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A management token as Mender's useradm issues them, signed with the development key
    (``extra``: more claims, e.g. the role a standalone deployment reads)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "iss": ISSUER,
        "sub": user_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"devicehooks-local-user:{tenant_id}")),
        "iat": now,
        "exp": now + ttl,
        "mender.tenant": tenant_id,
        "mender.user": user,
        **(extra or {}),
    }
    return jwt.encode(claims, load_or_create(), algorithm="EdDSA", headers={"kid": KEY_ID})
