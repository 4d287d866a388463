"""The activity table's stream: which attempts each write of an event item added.

A record of the stream (``NEW_AND_OLD_IMAGES``) is one write of one item, with the item before and
after it. Only event items (``sk = E#<event>``) hold attempts: markers (``D#``), health counts
(``H#``) and anything else give none, and so does a removal (the TTL's). An attempt is known by its
identity, (event, webhook, number): numbers go up by one per attempt of a delivery and each write of
a status sets ``attempts`` to the last one's number (``store/deliveries.py``), redeliveries and
retries included. So a write added the attempts numbered above the status's ``attempts`` before it,
up to its ``attempts`` after it; their detail comes from the item's ``attempt_log`` (a full log
rotates its latest slots, which does not matter: the new numbers are there). One the log does not
keep (an item at its size limit records the status alone, ``store/bounds.py``) is still counted,
from the status, which describes the write's last attempt. The first webhook's attempt and the
others' are found alike: each has its own status and log in the one item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from devicehooks.aws.dynamo import from_item
from devicehooks.domain.activity import Attempt, DeliveryStatus
from devicehooks.store.activity_items import attempt_of, event_id_of, status_of
from devicehooks.store.keys import split

# the attributes the counting reads (an image's body, up to 240 KiB, is never decoded)
_READ = ("deliveries", "attempt_log")


@dataclass(frozen=True, slots=True)
class CountedAttempt:
    """An attempt a write added: whose (tenant, webhook), what it was, whether it delivered."""

    tenant_id: str
    integration_id: str
    event_id: str
    attempt: Attempt
    delivered: bool


def _image(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    raw = record.get("dynamodb", {}).get(name) or {}
    return from_item({k: raw[k] for k in _READ if k in raw})


def added_attempts(record: Mapping[str, Any]) -> list[CountedAttempt]:
    """The attempts one stream record's write added to an event item (none for any other write)."""
    keys = record.get("dynamodb", {}).get("Keys") or {}
    sk = keys.get("sk", {}).get("S", "")
    pk = keys.get("pk", {}).get("S", "")
    if not sk.startswith("E#") or not pk or record.get("eventName") == "REMOVE":
        return []
    tenant_id = split(pk)[1]  # T#<tenant>, or T#<tenant>#Y#<type letter>
    event_id = event_id_of(sk)
    new, old = _image(record, "NewImage"), _image(record, "OldImage")
    before: Mapping[str, Any] = old.get("deliveries") or {}
    added: list[CountedAttempt] = []
    for integration_id, raw in (new.get("deliveries") or {}).items():
        status = status_of(integration_id, raw)
        seen = int((before.get(integration_id) or {}).get("attempts", 0))
        if status.attempts <= seen:
            continue
        logged = {int(a["number"]): a for a in (new.get("attempt_log") or {}).get(integration_id) or []}
        for number in range(seen + 1, status.attempts + 1):
            last = number == status.attempts
            found = logged.get(number)
            attempt = attempt_of(found, event_id) if found is not None else _from_status(status, number)
            added.append(
                CountedAttempt(tenant_id, integration_id, event_id, attempt, last and status.state == "delivered")
            )
    return added


def _from_status(status: DeliveryStatus, number: int) -> Attempt:
    """An attempt the log does not keep, as its status tells it (the write's last attempt; any
    earlier one, which no write makes, as failed at the same time)."""
    at = status.updated_at or datetime.now(UTC)  # a status after an attempt has its time
    last = number == status.attempts
    return Attempt(
        number=number,
        at=at,
        status_code=status.status_code if last else None,
        error=status.error if last else None,
    )
