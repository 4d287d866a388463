"""Move messages out of a dead-letter queue back to where they are processed.

* delivery DLQ → retry queue: each exhausted delivery gets a fresh series of attempts;
* dispatch DLQ → intake queue: device events are dispatched again, through the intake, which
  puts each in its tenant's group on the fair dispatch queue (recorded deliveries are not POSTed
  twice);
* retry DLQ → retry queue: tasks the dispatcher failed on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from devicehooks.aws.sqs import message_group
from devicehooks.delivery.tasks import DeliveryTask, parse_message
from devicehooks.services.intake import tenant_of

ROUTES = {
    "delivery": ("DeliveryDeadLetterQueue", "RetryQueue"),
    "dispatch": ("DispatchDeadLetterQueue", "IntakeQueue"),
    "retry": ("RetryDeadLetterQueue", "RetryQueue"),
}
OUTPUTS = {
    "DeliveryDeadLetterQueue": "DeliveryDeadLetterQueueUrl",
    "RetryQueue": "RetryQueueUrl",
    "DispatchDeadLetterQueue": "DispatchDeadLetterQueueUrl",
    "IntakeQueue": "IntakeQueueUrl",
    "RetryDeadLetterQueue": "RetryDeadLetterQueueUrl",
}


def fresh_series(body: str) -> str:
    """A delivery task starts its retry schedule again; anything else is moved unchanged."""
    data = parse_message(body)
    if data is None or data.get("kind") != "delivery":
        return body
    task = DeliveryTask.model_validate(data)
    return task.redriven().model_dump_json()


def group_of(body: str) -> str:
    """The message group of a moved message: its task's tenant, or its device event's."""
    data = parse_message(body)
    if data is not None and data.get("kind") in ("delivery", "deliveries") and isinstance(data.get("tenant_id"), str):
        return message_group(data["tenant_id"])
    return message_group(tenant_of(body))


def redrive(sqs: Any, source_url: str, target_url: str, transform: Callable[[str], str] = fresh_series) -> int:
    """Move every message from ``source_url`` to ``target_url``; returns how many were moved.

    A message is deleted from the source only after the target accepted it.
    """
    moved = 0
    empty = 0
    while empty < 2:
        out = sqs.receive_message(
            QueueUrl=source_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        messages = out.get("Messages", [])
        if not messages:
            empty += 1
            continue
        empty = 0
        entries = [
            {"Id": str(n), "MessageBody": transform(m["Body"]), "MessageGroupId": group_of(m["Body"])}
            for n, m in enumerate(messages)
        ]
        sent = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
        ok = {e["Id"] for e in sent.get("Successful", [])}
        done = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages) if str(n) in ok]
        if done:
            sqs.delete_message_batch(QueueUrl=source_url, Entries=done)
        moved += len(done)
        if len(done) < len(messages):
            failed = [e for e in sent.get("Failed", [])]
            raise RuntimeError(f"{len(failed)} message(s) could not be sent to the target: {json.dumps(failed)[:500]}")
    return moved
