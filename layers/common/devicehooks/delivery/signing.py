"""Signatures of a webhook request: Mender's ``X-Men-Signature`` and Standard Webhooks'.

* ``X-Men-Signature``: lowercase hex HMAC-SHA256 of the body, keyed with the hex-decoded secret
  (an empty secret is an empty key), with ``X-Men-Algorithm: MEN-HMAC-SHA256-Payload``.
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">``,
  one per valid key, space-separated (the previous key stays valid while a rotation overlaps).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from devicehooks import __version__

MEN_SIGNATURE = "X-Men-Signature"
MEN_ALGORITHM_HEADER = "X-Men-Algorithm"
MEN_ALGORITHM = "MEN-HMAC-SHA256-Payload"
USER_AGENT = f"devicehooks/{__version__}"


def men_signature(key: bytes, body: bytes) -> str:
    """Mender's signature of ``body``."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def standard_signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """One Standard Webhooks signature (``v1,<base64>``)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(event_id: str, body: bytes, keys: Sequence[bytes] | None, timestamp: int) -> dict[str, str]:
    """Every header of a webhook request. ``keys``: current secret first, then one still overlapping;
    ``None`` when the integration has no secret (then nothing is signed, as in Mender)."""
    derived = derived_headers(event_id, timestamp)
    headers = {
        "Content-Type": derived["Content-Type"],
        "User-Agent": USER_AGENT,
        "webhook-id": derived["webhook-id"],
        "webhook-timestamp": derived["webhook-timestamp"],
    }
    if keys:
        headers[MEN_SIGNATURE] = men_signature(keys[0], body)
        headers[MEN_ALGORITHM_HEADER] = derived[MEN_ALGORITHM_HEADER]
        headers["webhook-signature"] = " ".join(standard_signature(k, event_id, timestamp, body) for k in keys)
    return headers


def derived_headers(event_id: str, timestamp: int) -> dict[str, str]:
    """The headers of a webhook request that follow from its event id and its signing time (the
    activity log keeps which of them a request had, not their values: store/activity_items.py)."""
    return {
        "Content-Type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        MEN_ALGORITHM_HEADER: MEN_ALGORITHM,
    }
