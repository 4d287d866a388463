"""KMS: webhook secrets sealed where they are written and opened where deliveries are signed."""

from __future__ import annotations

import threading
import time
from typing import Any

from devicehooks import aws


def _context(tenant_id: str, integration_id: str) -> dict[str, str]:
    return {"service": "devicehooks", "tenant_id": tenant_id or "-", "integration_id": integration_id}


class KmsSecretCipher:
    """KMS envelope: ``Encrypt`` where secrets are written, ``Decrypt`` where deliveries are signed.

    Decrypted secrets are cached for a few minutes, so a busy dispatcher does not call KMS
    for every request; the cache lives in the function's memory only.
    """

    def __init__(self, key_id: str, kms: Any = None, cache_seconds: float = 300.0) -> None:
        self._key_id = key_id
        self._kms = kms
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[bytes, str, str], tuple[float, bytes]] = {}
        self._lock = threading.Lock()

    @property
    def kms(self) -> Any:
        if self._kms is None:
            self._kms = aws.client("kms")
        return self._kms

    def seal(self, plaintext: bytes, tenant_id: str, integration_id: str) -> bytes:
        if not plaintext:
            return b""
        if not self._key_id:
            raise RuntimeError("DEVICEHOOKS_SECRETS_KEY_ID is not set")
        response = self.kms.encrypt(
            KeyId=self._key_id, Plaintext=plaintext, EncryptionContext=_context(tenant_id, integration_id)
        )
        return bytes(response["CiphertextBlob"])

    def open(self, sealed: bytes, tenant_id: str, integration_id: str) -> bytes:
        if not sealed:
            return b""
        key = (sealed, tenant_id, integration_id)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        kwargs: dict[str, Any] = {
            "CiphertextBlob": sealed,
            "EncryptionContext": _context(tenant_id, integration_id),
        }
        if self._key_id:
            kwargs["KeyId"] = self._key_id
        plaintext = bytes(self.kms.decrypt(**kwargs)["Plaintext"])
        with self._lock:
            if len(self._cache) > 1024:
                self._cache.clear()
            self._cache[key] = (now + self._cache_seconds, plaintext)
        return plaintext
