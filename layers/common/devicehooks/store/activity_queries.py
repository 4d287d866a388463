"""Listing the activity log: which partitions (of the table or an index) hold the events a list asks
for, read newest first a Query page at a time and merged, then the events read with one BatchGetItem
(those read whole already, from the table's type partitions, not again)
(:mod:`devicehooks.store.activity_items` has the indexes; docs/architecture.md, "Event filters",
how each filter is served)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from devicehooks.aws.dynamo import query_all
from devicehooks.domain.activity import ActivityEvent, EventFilter, Waiting, matches
from devicehooks.domain.eventids import floor_id
from devicehooks.domain.models import ACTIVITY_TYPES
from devicehooks.store.activity_items import (
    BY_DEVICE,
    BY_STATE,
    BY_WEBHOOK,
    INDEX_KEYS,
    INDEXED_STATES,
    TABLE,
    KnownEvents,
    device_pk,
    event_id_of,
    event_sk,
    state_pk,
    time_of,
    time_pks,
    time_prefix,
    webhook_pk,
)
from devicehooks.store.table import Table

Entries = Iterator[tuple[str, str]]  # index entries, newest first: (sort key, event id)


def _take(entries: Entries, count: int) -> list[tuple[str, str]]:
    taken: list[tuple[str, str]] = []
    for entry in entries:
        taken.append(entry)
        if len(taken) >= count:
            break
    return taken


class ActivityQueries:
    """The lists of :class:`~devicehooks.store.activity.ActivityStore` (``list_events``,
    ``webhook_events``); the events they read are remembered in ``known``."""

    def __init__(self, table: Table, known: KnownEvents) -> None:
        self.table = table
        self.known = known

    def webhook_events(
        self, tenant_id: str, integration_id: str, since: datetime, until: datetime, limit: int
    ) -> list[ActivityEvent]:
        if limit <= 0 or since >= until:
            return []
        event_ids: list[str] = []
        # sort keys are "<time>#<id>": between the bare times is since <= time < until
        for item in query_all(
            self.table.client,
            TableName=self.table.name,
            IndexName=BY_WEBHOOK,
            KeyConditionExpression="gsi2pk = :p AND gsi2sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":p": {"S": webhook_pk(tenant_id, integration_id)},
                ":a": {"S": time_prefix(since)},
                ":b": {"S": time_prefix(until)},
            },
            ScanIndexForward=True,
            Limit=min(limit, 1000),
        ):
            event_ids.append(event_id_of(item["sk"]["S"]))
            if len(event_ids) >= limit:
                break
        return self.known.events(tenant_id, event_ids)  # recover reopens some: remembered, no read then

    def list_events(
        self,
        tenant_id: str,
        page: int,
        per_page: int,
        integration_id: str | None = None,
        only: EventFilter | None = None,
    ) -> list[ActivityEvent]:
        only = only or EventFilter()
        skip = (page - 1) * per_page
        want = skip + per_page
        read: dict[str, dict[str, Any]] = {}  # event items the type partitions gave whole
        streams = self._exact(tenant_id, integration_id, only, min(want, 1000), read)
        if streams is None:
            return self._read_on(tenant_id, integration_id, only, skip, want)[skip:]
        event_ids: list[str] = []
        for _, event_id in heapq.merge(*streams, reverse=True):
            if event_ids and event_ids[-1] == event_id:
                continue  # the same event again, through another of its deliveries
            event_ids.append(event_id)
            if len(event_ids) >= want:
                break
        return self.known.events(tenant_id, event_ids[skip:], read)

    def _entries(
        self,
        index: str,
        partition: str,
        lower: str | None,
        upper: str | None,
        limit: int,
        webhook: str | None = None,
        oldest_first: bool = False,
        read: dict[str, dict[str, Any]] | None = None,
        device_prefix: str | None = None,
    ) -> Entries:
        """An index partition's entries between two times, newest first, as (sort key, event id), the
        sort key (``<time>#<escaped id>``) in the order of the partition, which the merge keeps: a
        Query page at a time, read only as far as the caller goes on. ``webhook``: only the entries
        of that webhook's deliveries (``by_state``), the others read and passed over;
        ``oldest_first``: oldest first instead. ``index`` :data:`TABLE`: the table's type partitions,
        whose entries are the event items: each is kept in ``read``, by event id; ``device_prefix``
        (there only): the items whose device key starts with it (a filter expression: every item
        is read, the others not returned)."""
        pk, sk = INDEX_KEYS.get(index, ("pk", "sk"))
        condition = f"{pk} = :p"
        values: dict[str, Any] = {":p": {"S": partition}}
        # sort keys are "<time>#<id>": between the bare times is lower <= time < upper
        if lower is not None and upper is not None:
            condition += f" AND {sk} BETWEEN :a AND :b"
            values.update({":a": {"S": lower}, ":b": {"S": upper}})
        elif lower is not None:
            condition += f" AND {sk} >= :a"
            values[":a"] = {"S": lower}
        elif upper is not None:
            condition += f" AND {sk} < :b"
            values[":b"] = {"S": upper}
        where: dict[str, Any] = {"IndexName": index} if index != TABLE else {}
        if device_prefix is not None:
            where["FilterExpression"] = "begins_with(gsi3pk, :v)"
            values[":v"] = {"S": device_prefix}
        for item in query_all(
            self.table.client,
            TableName=self.table.name,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=oldest_first,
            Limit=limit,
            **where,
        ):
            if webhook is None or item.get("gsi2pk", {}).get("S") == webhook:
                event_id = event_id_of(item["sk"]["S"])
                if read is not None and index == TABLE:
                    read[event_id] = item
                yield item[sk]["S"], event_id

    def waiting(self, tenant_id: str, integration_id: str, cap: int) -> Waiting:
        """A webhook's ``retrying`` deliveries: its entries in the ``retrying`` partition of each
        event type of ``by_state``, read oldest first a Query page at a time (other webhooks'
        entries passed over). The first of each partition is its oldest, so the oldest is exact;
        the count stops once it passes ``cap``."""
        webhook = webhook_pk(tenant_id, integration_id)
        streams = [
            self._entries(BY_STATE, state_pk(tenant_id, "retrying", t), None, None, 1000, webhook, oldest_first=True)
            for t in ACTIVITY_TYPES
        ]
        firsts = [entry for entry in (next(s, None) for s in streams) if entry is not None]
        count = len(firsts)
        for stream in streams:
            if count > cap:
                break
            for _ in stream:
                count += 1
                if count > cap:
                    break
        oldest = min((time_of(key) for key, _ in firsts), default=None)
        return Waiting(count=min(count, cap), more=count > cap, oldest_at=oldest)

    def _times(
        self,
        tenant_id: str,
        only: EventFilter,
        limit: int,
        read: dict[str, dict[str, Any]] | None,
        device_prefix: str | None = None,
    ) -> list[Entries]:
        """The table's partitions (every shard) of one event type, or of every type, between the
        filter's times (an event id sorts by its time: between the lowest ids of those times)."""
        types = (only.type,) if only.type else ACTIVITY_TYPES
        lower = event_sk(floor_id(only.since)) if only.since is not None else event_sk("")
        upper = event_sk(floor_id(only.until)) if only.until is not None else event_sk("~")
        partitions = [pk for t in types for pk in time_pks(tenant_id, t)]
        return [
            self._entries(TABLE, pk, lower, upper, limit, read=read, device_prefix=device_prefix) for pk in partitions
        ]

    def _exact(
        self,
        tenant_id: str,
        integration_id: str | None,
        only: EventFilter,
        limit: int,
        read: dict[str, dict[str, Any]] | None = None,
    ) -> list[Entries] | None:
        """The index partitions whose merge, newest first, is exactly the events asked for (an event
        may come more than once, from several of its deliveries, one after the other); ``None`` when
        no index holds exactly them, and the list is read on (:meth:`_read_on`)."""
        lower = time_prefix(only.since) if only.since is not None else None
        upper = time_prefix(only.until) if only.until is not None else None
        if only.device_prefix is not None:
            return None  # read on, through the type partitions filtered by device key, or by_webhook
        if only.device_id is not None:
            if integration_id is not None or only.state or only.type:
                return None
            return [self._entries(BY_DEVICE, device_pk(tenant_id, only.device_id), lower, upper, limit)]
        if only.state is not None and only.state not in INDEXED_STATES:
            return None  # pending, delivered: the happy path has no by_state entry
        if only.state is None and only.type is not None and integration_id is not None:
            return None  # a webhook's events of a type: read on through by_webhook
        if only.state is None:
            if integration_id is not None:
                return [self._entries(BY_WEBHOOK, webhook_pk(tenant_id, integration_id), lower, upper, limit)]
            return self._times(tenant_id, only, limit, read)
        types = (only.type,) if only.type else ACTIVITY_TYPES
        webhook = webhook_pk(tenant_id, integration_id) if integration_id is not None else None
        # an event's other deliveries come too (passed over, or the same event again): larger pages
        limit = min(max(4 * limit, 100), 1000)
        return [
            self._entries(BY_STATE, state_pk(tenant_id, only.state, t), lower, upper, limit, webhook) for t in types
        ]

    def _read_on(
        self, tenant_id: str, integration_id: str | None, only: EventFilter, skip: int, want: int
    ) -> list[ActivityEvent]:
        """A list no index holds exactly: the entries of the narrowest index that holds all of it (a
        device's, a webhook's, or a type's or every type's partitions of the table, those of a device
        prefix filtered by DynamoDB), newest first, read with their events until ``want`` match: at
        most every event of that index in the window."""
        lower = time_prefix(only.since) if only.since is not None else None
        upper = time_prefix(only.until) if only.until is not None else None
        limit = min(max(want, 100), 1000)
        read: dict[str, dict[str, Any]] = {}
        if only.device_id is not None:
            streams = [self._entries(BY_DEVICE, device_pk(tenant_id, only.device_id), lower, upper, limit)]
        elif integration_id is not None:
            streams = [self._entries(BY_WEBHOOK, webhook_pk(tenant_id, integration_id), lower, upper, limit)]
        elif only.device_prefix is not None:  # a device key's escaping keeps prefixes: escaped, a prefix
            streams = self._times(tenant_id, only, limit, read, device_pk(tenant_id, only.device_prefix))
        else:
            streams = self._times(tenant_id, only, limit, read)
        entries = heapq.merge(*streams, reverse=True)  # each event once: an item is in one partition
        found: list[ActivityEvent] = []
        while len(found) < want:
            chunk = [event_id for _, event_id in _take(entries, 100)]
            if not chunk:
                break
            found += [e for e in self.known.events(tenant_id, chunk, read) if matches(e, integration_id, only)]
        return found[:want]
