"""For receivers: verify devicehooks' (and Mender's) webhook signatures.

    from devicehooks_dev.receiver import verify_men_signature, verify_standard_webhook

    verify_men_signature("deadbeef", body, headers["X-Men-Signature"])          # -> bool
    verify_standard_webhook("deadbeef", body, headers, tolerance=300)           # raises on failure

Both compare in constant time. The secret is the hex string the integration was created with.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from devicehooks.delivery.signing import men_signature, standard_signature

DEFAULT_TOLERANCE = 300


class WebhookVerificationError(Exception):
    """The request is not a valid, fresh, signed webhook."""


def _key(secret_hex: str) -> bytes:
    try:
        return bytes.fromhex(secret_hex)
    except ValueError:
        raise WebhookVerificationError("the secret is not a hexadecimal string") from None


def verify_men_signature(secret_hex: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` (``X-Men-Signature``) is the HMAC of ``body`` under the secret."""
    expected = men_signature(_key(secret_hex), body)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def verify_standard_webhook(
    secret_hex: str,
    body: bytes,
    headers: Mapping[str, str],
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check ``webhook-id``/``webhook-timestamp``/``webhook-signature``; raise if not valid.

    The timestamp must be within ``tolerance`` seconds of ``now``: a replayed request is refused.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    message_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not message_id or not stamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance (replay?)")
    expected = standard_signature(_key(secret_hex), message_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures.split()):
        raise WebhookVerificationError("no webhook-signature matches")
