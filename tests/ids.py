"""The id a bus event's webhook event gets (devicehooks.domain.eventids: made from its bus id, type
and time), for tests that send bus events and then look for what became of them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from devicehooks.domain.events import id_of_bus_event


def webhook_id(bus: str | Mapping[str, Any]) -> str:
    event = json.loads(bus) if isinstance(bus, str) else dict(bus)
    found = id_of_bus_event(event)
    if found is None:
        raise ValueError(f"not a bus event a webhook event is made of: {event!r:.200}")
    return found
