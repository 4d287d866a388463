"""Webhook health in the activity table: each webhook's attempts counted per hour, one item
``H#<integration>#<YYYY-MM-DDTHH>`` in its tenant's partition (docs/architecture.md, "Webhook
health")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from devicehooks.aws.dynamo import from_item, value
from devicehooks.domain.activity import HourCount, hour_of
from devicehooks.store.activity_items import as_int, from_millis, millis, tenant_pk
from devicehooks.store.keys import join, split
from devicehooks.store.table import Table


def _hour_sk(integration_id: str, hour: datetime) -> str:
    return join("H", integration_id, hour_of(hour).strftime("%Y-%m-%dT%H"))


def _hour_count(item: Mapping[str, Any]) -> HourCount:
    return HourCount(
        hour=datetime.strptime(split(str(item["sk"]))[2], "%Y-%m-%dT%H").replace(tzinfo=UTC),
        delivered=int(item.get("delivered", 0)),
        failed=int(item.get("failed", 0)),
        last_at=from_millis(item.get("last_at")) if item.get("last_at") else None,
        last_delivered=bool(item.get("last_delivered", False)),
        last_status_code=as_int(item.get("last_status_code")),
        last_error=item.get("last_error"),
    )


class HourCounts:
    """The health counts of :class:`~devicehooks.store.activity.ActivityStore` (``count_attempts``,
    ``hour_counts``)."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def count_attempts(self, tenant_id: str, integration_id: str, counts: HourCount, expire_ts: int) -> None:
        client = self.table.client
        values: dict[str, Any] = {
            ":d": {"N": str(counts.delivered)},
            ":f": {"N": str(counts.failed)},
            ":x": {"N": str(expire_ts)},
            ":at": {"N": str(millis(counts.last_at) or 0)},
            ":ok": {"BOOL": counts.last_delivered},
            ":c": value(counts.last_status_code),
            ":e": value(counts.last_error),
        }
        key = {"pk": {"S": tenant_pk(tenant_id)}, "sk": {"S": _hour_sk(integration_id, counts.hour)}}
        try:
            client.update_item(
                TableName=self.table.name,
                Key=key,
                UpdateExpression="ADD delivered :d, failed :f SET expire_ts = :x, "
                "last_at = :at, last_delivered = :ok, last_status_code = :c, last_error = :e",
                ConditionExpression="attribute_not_exists(last_at) OR last_at <= :at",
                ExpressionAttributeValues=values,
            )
        except client.exceptions.ConditionalCheckFailedException:
            # a later attempt is the hour's last already (another dispatcher wrote after this one's
            # attempts): only the counts are added (a second write, when writers cross)
            client.update_item(
                TableName=self.table.name,
                Key=key,
                UpdateExpression="ADD delivered :d, failed :f",
                ExpressionAttributeValues={":d": values[":d"], ":f": values[":f"]},
            )

    def uncount_attempts(
        self, tenant_id: str, integration_id: str, hour: datetime, delivered: int, failed: int
    ) -> None:
        """Take back counts added for attempts that will be counted again (a stream batch's records
        that come back after a partial failure); the last attempt stays, since counting it again
        writes the same one."""
        self.table.client.update_item(
            TableName=self.table.name,
            Key={"pk": {"S": tenant_pk(tenant_id)}, "sk": {"S": _hour_sk(integration_id, hour)}},
            UpdateExpression="ADD delivered :d, failed :f",
            ConditionExpression="attribute_exists(sk)",
            ExpressionAttributeValues={":d": {"N": str(-delivered)}, ":f": {"N": str(-failed)}},
        )

    def hour_counts(self, tenant_id: str, integration_id: str, until: datetime, hours: int) -> list[HourCount]:
        out = self.table.client.query(
            TableName=self.table.name,
            KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":p": {"S": tenant_pk(tenant_id)},
                ":a": {"S": join("H", integration_id) + "#"},  # the separator: not a longer id's
                ":b": {"S": _hour_sk(integration_id, until)},
            },
            ScanIndexForward=False,
            Limit=max(1, hours),
        )
        return [_hour_count(from_item(item)) for item in out.get("Items", [])]
