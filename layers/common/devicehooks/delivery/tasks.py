"""Delivery tasks: one webhook's next attempt at one event, carried by the retry queue.

SQS delays messages by at most 15 minutes. A task due later is sent with the longest delay SQS
allows and carries its due time; whoever receives it early sends it on again with the delay
that remains, so any schedule works (the default runs over about 27 hours).
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from devicehooks import aws

MAX_SQS_DELAY = 900


class DeliveryTask(BaseModel):
    """Attempt ``series_attempt`` (1-based, within the retry schedule) of one delivery."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    kind: Literal["delivery"] = "delivery"
    tenant_id: str
    event_id: str
    integration_id: str
    series_attempt: int = Field(ge=1)
    due_at: float = 0.0
    # hold: the delivery was held (not attempted) and the activity log already says why and when
    reason: Literal["retry", "redeliver", "redrive", "hold"] = "retry"
    # the attempts the delivery had made when this task was queued: a delivery that has made more
    # since was taken on by another task (a redelivery, a probe), and this one is dropped; None:
    # a task queued before the field existed, which goes on as before
    seen_attempts: int | None = Field(default=None, ge=0)

    @classmethod
    def first(
        cls, tenant_id: str, event_id: str, integration_id: str, seen_attempts: int | None = None
    ) -> DeliveryTask:
        """Attempt 1 of a delivery's retry schedule (of a delivery that has made ``seen_attempts``)."""
        return cls(
            tenant_id=tenant_id,
            event_id=event_id,
            integration_id=integration_id,
            series_attempt=1,
            seen_attempts=seen_attempts,
        )

    def _with(self, **changes: object) -> DeliveryTask:
        return DeliveryTask.model_validate({**self.model_dump(), **changes})  # validated, unlike model_copy

    def due(self, at: float) -> DeliveryTask:
        """This task, due at ``at`` (unix seconds)."""
        return self._with(due_at=at)

    def at_attempt(self, series_attempt: int) -> DeliveryTask:
        """This task as attempt ``series_attempt`` of the retry schedule."""
        return self._with(series_attempt=series_attempt)

    def seen(self, attempts: int) -> DeliveryTask:
        """This task, for a delivery that has made ``attempts`` attempts (see ``seen_attempts``)."""
        return self._with(seen_attempts=attempts)

    def superseded_by(self, attempts: int) -> bool:
        """Whether a delivery that has made ``attempts`` attempts is no longer this task's to make."""
        return self.seen_attempts is not None and attempts > self.seen_attempts

    def held(self) -> DeliveryTask:
        """This task for a delivery held, not attempted (its status already says why)."""
        return self._with(reason="hold")

    def redriven(self) -> DeliveryTask:
        """This task sent back from the delivery DLQ: a fresh retry schedule, due now."""
        return self._with(series_attempt=1, due_at=0.0, reason="redrive")


class TaskQueue(Protocol):
    """Where retries wait, and where deliveries and events that cannot go on are kept."""

    def schedule(self, task: DeliveryTask, delay_seconds: float) -> None:
        """Make ``task`` due in ``delay_seconds`` (any length)."""

    def schedule_many(self, tasks: list[tuple[DeliveryTask, float]]) -> None:
        """:meth:`schedule` for several tasks at once; raises unless every one is queued."""

    def dead_letter(self, task: DeliveryTask, reason: str) -> None:
        """Keep a delivery that exhausted its attempts (the delivery DLQ)."""

    def reject_event(self, body: str, reason: str) -> None:
        """Keep a malformed bus event (the dispatch DLQ), with why it was refused."""


class SqsTaskQueue:
    """:class:`TaskQueue` on the retry queue and the two dead-letter queues of template.yaml."""

    def __init__(self, retry_queue_url: str, delivery_dlq_url: str, dispatch_dlq_url: str, sqs: Any = None) -> None:
        self.retry_queue_url = retry_queue_url
        self.delivery_dlq_url = delivery_dlq_url
        self.dispatch_dlq_url = dispatch_dlq_url
        self._sqs = sqs

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            self._sqs = aws.client("sqs")
        return self._sqs

    def schedule(self, task: DeliveryTask, delay_seconds: float) -> None:
        self.sqs.send_message(QueueUrl=self.retry_queue_url, **_message(task, delay_seconds))

    def schedule_many(self, tasks: list[tuple[DeliveryTask, float]]) -> None:
        for start in range(0, len(tasks), 10):  # SendMessageBatch takes ten
            pending = {str(n): _message(t, d) for n, (t, d) in enumerate(tasks[start : start + 10])}
            for _ in range(5):
                entries = [{"Id": key, **message} for key, message in pending.items()]
                out = self.sqs.send_message_batch(QueueUrl=self.retry_queue_url, Entries=entries)
                pending = {f["Id"]: pending[f["Id"]] for f in out.get("Failed", [])}
                if not pending:
                    break
            if pending:
                raise RuntimeError(f"{len(pending)} delivery tasks could not be queued")

    def dead_letter(self, task: DeliveryTask, reason: str) -> None:
        self.sqs.send_message(
            QueueUrl=self.delivery_dlq_url,
            MessageBody=task.model_dump_json(),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )

    def reject_event(self, body: str, reason: str) -> None:
        self.sqs.send_message(
            QueueUrl=self.dispatch_dlq_url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000] or "malformed"}},
        )


def _message(task: DeliveryTask, delay_seconds: float) -> dict[str, Any]:
    """The retry queue's message for ``task``, due in ``delay_seconds``."""
    due = time.time() + max(0.0, delay_seconds)
    return {
        "MessageBody": task.due(due).model_dump_json(),
        # rounded up: SQS counts whole seconds, and a task must never come back before it is due
        "DelaySeconds": min(MAX_SQS_DELAY, math.ceil(max(0.0, delay_seconds))),
    }


def parse_message(body: str) -> dict[str, Any] | None:
    """The JSON object in a queue message, or ``None`` when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
