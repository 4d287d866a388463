"""Webhook secrets at rest: sealed with KMS (``devicehooks.aws.kms``), bound to their tenant and
integration.

An empty secret (Mender signs with an empty key) cannot be given to KMS, which encrypts 1 to
4096 bytes; it is stored as empty bytes, which carries no information.
"""

from __future__ import annotations

from typing import Protocol


class SecretCipher(Protocol):
    """Seals and opens webhook secrets."""

    def seal(self, plaintext: bytes, tenant_id: str, integration_id: str) -> bytes: ...

    def open(self, sealed: bytes, tenant_id: str, integration_id: str) -> bytes: ...
