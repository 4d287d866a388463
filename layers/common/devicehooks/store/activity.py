"""The activity log: the :class:`ActivityStore` port, and :class:`DynamoActivityStore`, the
activity table of template.yaml, made of its parts, each a module of its own that shares the table:

* :mod:`devicehooks.store.activity_items`: the table's items and keys (the layout), and the
  mapping between items and :class:`ActivityEvent`;
* :mod:`devicehooks.store.deliveries`: an event's deliveries (create, lease, record, reopen, add),
  each state change moving its ``by_state`` entry;
* :mod:`devicehooks.store.activity_queries`: lists, from the index partitions a list needs;
* :mod:`devicehooks.store.health`: each webhook's attempts counted per hour.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Protocol

from devicehooks.aws.dynamo import batch_delete, query_all
from devicehooks.domain.activity import WAITING_CAP, ActivityEvent, DeliveryState, EventFilter, HourCount, Waiting
from devicehooks.domain.models import ACTIVITY_TYPES
from devicehooks.store.activity_items import (
    BY_DEVICE,
    BY_STATE,
    BY_WEBHOOK,
    INDEX_KEYS,
    KnownEvents,
    event_key,
    tenant_pk,
    time_pks,
)
from devicehooks.store.activity_items import attempt_map as _attempt_map  # noqa: F401 - read here by tests
from devicehooks.store.activity_items import status_map as _status_map  # noqa: F401 - read here by tests
from devicehooks.store.activity_queries import ActivityQueries
from devicehooks.store.deliveries import Claim, Deliveries, Update
from devicehooks.store.health import HourCounts
from devicehooks.store.table import Table


class ActivityStore(Protocol):
    """Where events and their delivery outcomes are kept (tests/contract checks every implementation)."""

    def create(self, event: ActivityEvent) -> ActivityEvent | None:
        """Store a new event with its deliveries' first statuses.

        ``None`` when this call stored it; when it was already there, the stored event (which
        is left as it is) so that the caller can see where its deliveries stand.
        """

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        """One event with its attempt detail (strongly consistent)."""

    def claim(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        lease_seconds: int,
        seen_attempts: int | None = None,
    ) -> Claim:
        """Take the right to POST this delivery for ``lease_seconds``; with ``seen_attempts``, only
        if it has made that many attempts still (the caller read it so). ``STALE`` when it has made
        more (an attempt was recorded since: the caller decides whether its work is superseded or
        must be tried again on fresh data); ``BUSY`` while another worker holds the lease."""

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update], deliveries: int | None = None) -> None:
        """Store deliveries' new statuses and append their attempts, in one write when possible.

        A delivery recorded as delivered is never changed by a status that is not ``delivered``
        (a late report of a failure must not hide a success); such an update is dropped.

        What is kept is bounded (``store/bounds.py``) by the event's number of webhooks,
        ``deliveries`` (``None``: as many as a tenant may have): each attempt capped, each delivery's
        log its first and latest attempts. A write refused for the item's size all the same records
        the status with the attempt bare, then without it: never an error.
        """

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        """Start tracking deliveries of an existing event to more webhooks."""

    def reopen(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        seen_attempts: int,
        from_states: Collection[DeliveryState] | None = None,
    ) -> bool:
        """Make a delivery pending again, due ``now``, for a redelivery (in whatever state it is,
        or only in one of ``from_states``: recover's ``failed``, a retry's ``RETRYABLE``), if it has
        made ``seen_attempts`` attempts still and no attempt is in flight (its lease has run out).

        ``False`` otherwise, or when it does not exist: one conditional write, so of two callers
        that saw the same attempts at most one reopens it.
        """

    def webhook_events(
        self, tenant_id: str, integration_id: str, since: datetime, until: datetime, limit: int
    ) -> list[ActivityEvent]:
        """At most ``limit`` of the events that went to a webhook with ``since <= time < until``,
        oldest first (the ``by_webhook`` index, no Scan)."""

    def list_events(
        self,
        tenant_id: str,
        page: int,
        per_page: int,
        integration_id: str | None = None,
        only: EventFilter | None = None,
    ) -> list[ActivityEvent]:
        """A page of the tenant's events, newest first, optionally only one webhook's, and only
        those ``only`` lets through."""

    def waiting(self, tenant_id: str, integration_id: str, cap: int = WAITING_CAP) -> Waiting:
        """How many of a webhook's deliveries wait (``retrying``, held ones included), counted up to
        ``cap``, and the event time of the oldest of them (the ``by_state`` index, no Scan)."""

    def count_attempts(self, tenant_id: str, integration_id: str, counts: HourCount, expire_ts: int) -> None:
        """Add an hour's attempts to a webhook's counts of that hour (and make its last attempt
        the hour's last, when it is the latest)."""

    def uncount_attempts(
        self, tenant_id: str, integration_id: str, hour: datetime, delivered: int, failed: int
    ) -> None:
        """Take back counts :meth:`count_attempts` added (attempts that will be counted again), the
        hour's last attempt left as it is."""

    def hour_counts(self, tenant_id: str, integration_id: str, until: datetime, hours: int) -> list[HourCount]:
        """A webhook's counted hours up to ``until``'s hour, newest first, at most ``hours`` of them
        (hours without attempts have no counts)."""

    def remove_tenant(self, tenant_id: str) -> int:
        """Delete a tenant's whole activity log; returns the number of events it held."""


class DynamoActivityStore:
    """:class:`ActivityStore` on the activity table of template.yaml: one object over its parts,
    which share the table (its client made on first use) and what is known of the events read."""

    def __init__(self, table_name: str, client: Any = None) -> None:
        self._table = Table(table_name, client)
        self._known = KnownEvents(self._table)
        self._deliveries = Deliveries(self._table, self._known)
        self._queries = ActivityQueries(self._table, self._known)
        self._hours = HourCounts(self._table)

    @property
    def table_name(self) -> str:
        return self._table.name

    @property
    def client(self) -> Any:
        return self._table.client

    def _key(self, tenant_id: str, event_id: str) -> dict[str, Any]:
        return event_key(tenant_id, event_id)

    def create(self, event: ActivityEvent) -> ActivityEvent | None:
        return self._deliveries.create(event)

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        return self._known.get(tenant_id, event_id)

    def claim(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        lease_seconds: int,
        seen_attempts: int | None = None,
    ) -> Claim:
        return self._deliveries.claim(tenant_id, event_id, integration_id, now, lease_seconds, seen_attempts)

    def record(self, tenant_id: str, event_id: str, updates: Sequence[Update], deliveries: int | None = None) -> None:
        self._deliveries.record(tenant_id, event_id, updates, deliveries)

    def add_deliveries(self, tenant_id: str, event_id: str, integration_ids: list[str]) -> None:
        self._deliveries.add_deliveries(tenant_id, event_id, integration_ids)

    def reopen(
        self,
        tenant_id: str,
        event_id: str,
        integration_id: str,
        now: datetime,
        seen_attempts: int,
        from_states: Collection[DeliveryState] | None = None,
    ) -> bool:
        return self._deliveries.reopen(tenant_id, event_id, integration_id, now, seen_attempts, from_states)

    def webhook_events(
        self, tenant_id: str, integration_id: str, since: datetime, until: datetime, limit: int
    ) -> list[ActivityEvent]:
        return self._queries.webhook_events(tenant_id, integration_id, since, until, limit)

    def list_events(
        self,
        tenant_id: str,
        page: int,
        per_page: int,
        integration_id: str | None = None,
        only: EventFilter | None = None,
    ) -> list[ActivityEvent]:
        return self._queries.list_events(tenant_id, page, per_page, integration_id, only)

    def waiting(self, tenant_id: str, integration_id: str, cap: int = WAITING_CAP) -> Waiting:
        return self._queries.waiting(tenant_id, integration_id, cap)

    def count_attempts(self, tenant_id: str, integration_id: str, counts: HourCount, expire_ts: int) -> None:
        self._hours.count_attempts(tenant_id, integration_id, counts, expire_ts)

    def uncount_attempts(
        self, tenant_id: str, integration_id: str, hour: datetime, delivered: int, failed: int
    ) -> None:
        self._hours.uncount_attempts(tenant_id, integration_id, hour, delivered, failed)

    def hour_counts(self, tenant_id: str, integration_id: str, until: datetime, hours: int) -> list[HourCount]:
        return self._hours.hour_counts(tenant_id, integration_id, until, hours)

    def remove_tenant(self, tenant_id: str) -> int:
        partitions = [tenant_pk(tenant_id), *(pk for t in ACTIVITY_TYPES for pk in time_pks(tenant_id, t))]
        keys = [
            {"pk": i["pk"], "sk": i["sk"]}
            for partition in partitions
            for i in query_all(
                self.client,
                TableName=self.table_name,
                KeyConditionExpression="pk = :p",
                ExpressionAttributeValues={":p": {"S": partition}},
                ProjectionExpression="pk, sk",
            )
        ]
        batch_delete(self.client, self.table_name, keys)
        return sum(1 for k in keys if k["sk"]["S"].startswith("E#"))


__all__ = [
    "BY_DEVICE",
    "BY_STATE",
    "BY_WEBHOOK",
    "INDEX_KEYS",
    "ActivityStore",
    "Claim",
    "DynamoActivityStore",
    "EventFilter",
    "HourCount",
    "Update",
    "Waiting",
]
