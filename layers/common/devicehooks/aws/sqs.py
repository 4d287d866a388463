"""SQS: the fair dispatch queue, the retry queue and the dead-letter queues.

**Fair queues.** Every message devicehooks sends to a queue a dispatcher reads carries its
tenant's ``MessageGroupId`` (:func:`message_group`). On a standard queue that makes SQS hand the
messages out *fairly* (SQS fair queues): while one tenant holds a disproportionate share of the
messages in flight or of the dispatchers' time, the other tenants' messages are received first;
a tenant alone gets every dispatcher. docs/architecture.md ("Fair share at the queue") says why
and what it costs.
"""

from __future__ import annotations

import hashlib
import math
import string
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from devicehooks import aws

if TYPE_CHECKING:  # the intake sends no task: it does not import pydantic's models
    from devicehooks.delivery.tasks import DeliveryTask, Queued

MAX_SQS_DELAY = 900
SEND_BATCH_BYTES = 250_000  # SendMessageBatch's payload limit is 256 KiB: leave room for the attributes
SEND_BATCH_ENTRIES = 10
# MessageGroupId: 1 to 128 characters, letters, digits and ASCII punctuation
_GROUP_CHARACTERS = frozenset(string.ascii_letters + string.digits + string.punctuation)
_GROUP_MAX = 128


UNREADABLE_GROUP = "x:unreadable"  # events whose tenant cannot be read: one group, so they never jump the queue


def message_group(tenant_id: str | None) -> str:
    """The tenant's ``MessageGroupId`` on the fair queues: ``t:<tenant id>`` (``t:`` for
    open-source Mender's empty tenant), or ``h:`` and a hash of the id when it has characters a
    group id cannot have or is too long (ids of 256 characters are valid tenants)."""
    if tenant_id is None:
        return UNREADABLE_GROUP
    group = "t:" + tenant_id
    if len(group) <= _GROUP_MAX and _GROUP_CHARACTERS.issuperset(tenant_id):
        return group
    return "h:" + hashlib.sha256(tenant_id.encode("utf-8", "surrogatepass")).hexdigest()


def send_batches(sqs: Any, queue_url: str, messages: Sequence[dict[str, Any]]) -> list[int]:
    """Send ``messages`` (``SendMessageBatch`` entries without their ``Id``) in as few requests as
    SQS takes (ten, and 256 KiB, at most each), retrying the entries it refuses
    (:func:`devicehooks.aws.retried`); the positions of those it still refused."""
    refused: list[int] = []
    for batch in _batches(list(enumerate(messages))):

        def send(pending: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, dict[str, Any]]]:
            entries = [{"Id": str(n), **message} for n, message in pending]
            failed = {
                int(f["Id"]) for f in sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
            }
            return [(n, message) for n, message in pending if n in failed]

        refused += [n for n, _ in aws.retried(send, batch)]
    return refused


def _batches(messages: list[tuple[int, dict[str, Any]]]) -> list[list[tuple[int, dict[str, Any]]]]:
    """``messages`` in SendMessageBatch requests: ten at most, within its payload limit."""
    batches: list[list[tuple[int, dict[str, Any]]]] = []
    size = 0
    for numbered in messages:
        length = len(numbered[1]["MessageBody"].encode())
        if not batches or len(batches[-1]) == SEND_BATCH_ENTRIES or size + length > SEND_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(numbered)
        size += length
    return batches


def task_message(task: Queued, delay_seconds: float) -> dict[str, Any]:
    """The retry queue's message for ``task`` (or a device event's message), due in ``delay_seconds``,
    in its tenant's group."""
    from devicehooks.delivery.tasks import EventMessage

    due = time.time() + max(0.0, delay_seconds)
    if isinstance(task, EventMessage):
        body, tenant_id = task.body, task.tenant_id
    else:
        body, tenant_id = task.due(due).model_dump_json(), task.tenant_id
    return {
        "MessageBody": body,
        # rounded up: SQS counts whole seconds, and a task must never come back before it is due
        "DelaySeconds": min(MAX_SQS_DELAY, math.ceil(max(0.0, delay_seconds))),
        "MessageGroupId": message_group(tenant_id),
    }


class SqsTaskQueue:
    """:class:`~devicehooks.delivery.tasks.TaskQueue` on the retry queue and the two dead-letter
    queues of template.yaml."""

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
        self.sqs.send_message(QueueUrl=self.retry_queue_url, **task_message(task, delay_seconds))

    def schedule_many(self, tasks: Sequence[tuple[Queued, float]]) -> None:
        refused = send_batches(self.sqs, self.retry_queue_url, [task_message(t, d) for t, d in tasks])
        if refused:
            raise RuntimeError(f"{len(refused)} delivery tasks could not be queued")

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


class SqsFairQueue:
    """:class:`~devicehooks.services.intake.FairQueue` on the dispatch queue."""

    def __init__(self, queue_url: str, sqs: Any = None) -> None:
        self.queue_url = queue_url
        self._sqs = sqs

    def send(self, messages: Sequence[tuple[str, str | None]]) -> list[int]:
        sqs = self._sqs or aws.client("sqs")
        entries = [{"MessageBody": body, "MessageGroupId": message_group(tenant)} for body, tenant in messages]
        return send_batches(sqs, self.queue_url, entries)
