"""Delivery tasks: one webhook's next attempt at one event, carried by the retry queue.

They travel on the retry queue (``devicehooks.aws.sqs.SqsTaskQueue``). SQS delays messages by at
most 15 minutes. A task due later is sent with the longest delay SQS allows and carries its due
time; whoever receives it early sends it on again with the delay that remains, so any schedule
works (the default runs over about 27 hours).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

GROUP_MAX = 500  # held deliveries one message carries: 500 event ids are about 20 KB


class DeliveryTask(BaseModel):
    """Attempt ``series_attempt`` (1-based, within the retry schedule) of one delivery."""

    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)

    # "deliveries": a group of held deliveries, alike but for their events (event_id, more_events)
    kind: Literal["delivery", "deliveries"] = "delivery"
    tenant_id: str
    event_id: str
    more_events: tuple[str, ...] = Field(default=(), max_length=GROUP_MAX)
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

    def singles(self) -> list[DeliveryTask]:
        """The group's deliveries as tasks of their own (a task that is no group: itself)."""
        if not self.more_events:
            return [self]
        return [self._with(kind="delivery", event_id=e, more_events=()) for e in (self.event_id, *self.more_events)]

    def redriven(self) -> DeliveryTask:
        """This task sent back from the delivery DLQ: a fresh retry schedule, due now."""
        return self._with(series_attempt=1, due_at=0.0, reason="redrive")


@dataclass(frozen=True, slots=True)
class EventMessage:
    """A device event's message sent back to the retry queue as it came (nothing of it recorded or
    attempted), to be dispatched again; its tenant names its message group on the fair queues."""

    body: str
    tenant_id: str


Queued = DeliveryTask | EventMessage


class TaskQueue(Protocol):
    """Where retries wait, and where deliveries and events that cannot go on are kept."""

    def schedule(self, task: DeliveryTask, delay_seconds: float) -> None:
        """Make ``task`` due in ``delay_seconds`` (any length)."""

    def schedule_many(self, tasks: Sequence[tuple[Queued, float]]) -> None:
        """:meth:`schedule` for several tasks at once (or device events' messages, sent back as
        they came, to be dispatched after the delay); raises unless every one is queued."""

    def dead_letter(self, task: DeliveryTask, reason: str) -> None:
        """Keep a delivery that exhausted its attempts (the delivery DLQ)."""

    def reject_event(self, body: str, reason: str) -> None:
        """Keep a malformed bus event (the dispatch DLQ), with why it was refused."""


def group_held(waiting: Sequence[tuple[Queued, float]]) -> list[tuple[Queued, float]]:
    """``waiting`` with its held deliveries that are alike but for their event (the same webhook,
    schedule attempt and attempts made) merged into groups of up to :data:`GROUP_MAX`, each due
    when its earliest is: a webhook's backlog held for its circuit goes back and forth as a few
    messages, not one per event."""
    out: list[tuple[Queued, float]] = []
    groups: dict[tuple[str, str, int, int | None], list[tuple[DeliveryTask, float]]] = {}
    for task, delay in waiting:
        if isinstance(task, EventMessage) or task.reason != "hold":
            out.append((task, delay))
        else:
            key = (task.tenant_id, task.integration_id, task.series_attempt, task.seen_attempts)
            groups.setdefault(key, []).append((task, delay))
    for alike in groups.values():
        if len(alike) == 1:
            out.append(alike[0])
            continue
        events = [e for task, _ in alike for e in (task.event_id, *task.more_events)]
        delay = min(d for _, d in alike)
        first = alike[0][0]
        for start in range(0, len(events), GROUP_MAX):
            part = events[start : start + GROUP_MAX]
            kind = "deliveries" if len(part) > 1 else "delivery"
            group = first._with(kind=kind, event_id=part[0], more_events=tuple(part[1:]))
            out.append((group, delay))
    return out


def parse_message(body: str) -> dict[str, Any] | None:
    """The JSON object in a queue message, or ``None`` when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
