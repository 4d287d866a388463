"""The intake: each device event from the bus onto the dispatch queue, in its tenant's message group.

EventBridge puts every device event on one queue (a rule's SQS target takes one fixed
``MessageGroupId``, not one read from the event), so a tenant's backlog there would hold every
tenant behind it. The intake only re-sends each event, as it came, to the dispatch queue with its
tenant's group: a fair queue, where one tenant's backlog no longer holds the others
(docs/architecture.md, "Fair share at the queue"). It reads nothing else of the event and
refuses nothing: the dispatcher judges the event, and records or dead-letters it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

from devicehooks.domain.events import id_of_bus_event
from devicehooks.observability import trace_events

UNKNOWN_TENANT = None  # an event whose tenant cannot be read: the dispatcher will refuse it


class FairQueue(Protocol):
    def send(self, messages: Sequence[tuple[str, str | None]]) -> list[int]:
        """Send each ``(body, tenant id)`` in its tenant's group (``None``: a group of its own for
        events without a readable tenant); the positions of those that could not be sent."""


def read(body: str) -> tuple[str | None, str | None]:
    """The ``detail.tenant_id`` of a bus event's message (the bus contract) and the id its webhook
    event will have (the bus event's own when it cannot have one), each if it has one."""
    try:
        event = json.loads(body)
    except ValueError:
        return UNKNOWN_TENANT, None
    if not isinstance(event, dict):
        return UNKNOWN_TENANT, None
    detail = event.get("detail")
    tenant = detail.get("tenant_id") if isinstance(detail, dict) else None
    # the id its webhook event will have; else (an event the dispatcher will refuse) the bus's
    bus_id = event.get("id")
    event_id = id_of_bus_event(event) or (bus_id if isinstance(bus_id, str) else None)
    return (tenant if isinstance(tenant, str) else UNKNOWN_TENANT), event_id


def tenant_of(body: str) -> str | None:
    """The ``detail.tenant_id`` of a bus event's message (the bus contract), if it has one."""
    return read(body)[0]


def forward(queue: FairQueue, bodies: Sequence[str]) -> list[int]:
    """Send each body on in its tenant's group; the positions of those that could not be sent. Each
    event's id is a trace annotation (``event_id``) of the invocation."""
    events = [read(body) for body in bodies]
    trace_events(event_id for _, event_id in events if event_id is not None)
    return queue.send([(body, tenant) for body, (tenant, _) in zip(bodies, events, strict=True)])
