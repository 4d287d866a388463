"""SQS fair queues in moto: a standard queue's messages handed out as AWS's fair queues hand them out.

moto (5.2.5) keeps a standard queue's ``MessageGroupId`` but hands its messages out oldest first,
whatever their group. On AWS a standard queue whose messages carry a ``MessageGroupId`` is a *fair
queue* (Amazon SQS Developer Guide, "How Amazon SQS fair queues work"): each group is a tenant
(a message without a group is a tenant of its own); a tenant is a *noisy neighbour* when it holds
more than 10 % of the queue's in-flight messages and at least 30 of them, or when its recent share
of the consumers' processing time is over 10 %; a receive then returns quiet tenants' messages
first, and noisy tenants' after them, the one with the fewest messages in flight first. Nothing is
dropped or delayed when no quiet tenant has a message waiting: the noisy one gets the consumers.

Here each ``ReceiveMessage`` orders the visible messages so, from what moto knows at that moment:
the groups' messages in flight, and each group's processing time, counted as its in-flight
message-seconds decaying with a :data:`RECENT` seconds time constant. AWS measures both across a
distributed system ("the thresholds are approximate"), and stops treating a tenant as noisy once
its backlog is drained or it has sent nothing for 5 minutes; this emulation decides afresh at each
receive. FIFO queues are left as moto has them.

Applied by the local stack's moto server (``motoserver.py``), with or without ``motofixes``.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

NOISY_SHARE = 0.10  # of the in-flight messages, or of the recent processing time
NOISY_IN_FLIGHT = 30  # a tenant's own messages in flight, at least, to be noisy by its share of them
RECENT = 30.0  # seconds: the time constant of "recent" processing time

_state = threading.local()
_off = threading.Event()  # set: receives hand messages out as moto does (tests show moto still needs this)


def group_of(message: Any) -> str:
    """The tenant of a message: its group, or itself when it has none."""
    return f"g:{message.group_id}" if message.group_id else f"m:{message.id}"


class Usage:
    """A queue's recent processing time per tenant: in-flight message-seconds, decaying."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.at: float | None = None

    def shares(self, in_flight: Counter[str], now: float) -> dict[str, float]:
        """Each tenant's share of the recent processing time, counting ``in_flight`` until ``now``."""
        if self.at is not None and now > self.at:
            elapsed = now - self.at
            decay = math.exp(-elapsed / RECENT)
            for group in list(self.seconds):
                self.seconds[group] *= decay
                if self.seconds[group] < 1e-3 and not in_flight.get(group):
                    del self.seconds[group]
            for group, count in in_flight.items():
                self.seconds[group] = self.seconds.get(group, 0.0) + count * elapsed
        self.at = now if self.at is None else max(self.at, now)
        total = sum(self.seconds.values())
        return {group: spent / total for group, spent in self.seconds.items()} if total > 0 else {}


def noisy(in_flight: Counter[str], shares: dict[str, float]) -> set[str]:
    """The noisy neighbours, by either of AWS's two measures."""
    total = sum(in_flight.values())
    by_count = {g for g, n in in_flight.items() if n >= NOISY_IN_FLIGHT and n > NOISY_SHARE * total}
    return by_count | {g for g, share in shares.items() if share > NOISY_SHARE}


class FairOrder(Sequence[Any]):
    """Visible messages in the order a fair queue hands them out, read as a receive takes them: the
    quiet tenants' messages (oldest first), then each noisy tenant's (``loud``: their groups, the
    fewest in flight first). A receive takes ten at most: it stops reading once it has them."""

    def __init__(self, visible: list[Any], loud: list[str]) -> None:
        self.visible = visible
        self.loud = loud

    def __len__(self) -> int:
        return len(self.visible)

    def __bool__(self) -> bool:
        return bool(self.visible)

    def __getitem__(self, index: Any) -> Any:
        return list(self)[index]

    def __iter__(self) -> Iterator[Any]:
        loud = set(self.loud)
        yield from (m for m in self.visible if m.group_id not in loud)
        for group in self.loud:
            yield from (m for m in self.visible if m.group_id == group)


def fair_order(queue: Any, visible: list[Any], now_millis: float) -> Sequence[Any]:
    """``visible`` (oldest first) in the order a fair queue hands them out."""
    if not visible:
        return visible
    in_flight = Counter(group_of(m) for m in queue.pending_messages if m.visible_at > now_millis)
    usage = queue.__dict__.setdefault("_devicehooks_usage", Usage())
    loud = noisy(in_flight, usage.shares(in_flight, now_millis / 1000))
    # a message without a group is a tenant of its own: never noisy by count (by time, rarely)
    groups = [g[2:] for g in sorted(loud, key=lambda g: in_flight[g]) if g.startswith("g:")]
    return FairOrder(visible, groups) if groups else visible


_applied = False


@contextmanager
def off() -> Iterator[None]:
    """Inside the block, receives hand messages out as moto does (oldest first, whatever their group)."""
    _off.set()
    try:
        yield
    finally:
        _off.clear()


def apply() -> None:
    """Patch moto in this process (once): ``ReceiveMessage`` hands a standard queue's messages out
    fairly. Only a receive reorders; every other reader of the queue's messages sees moto's list."""
    global _applied
    if _applied:
        return
    _applied = True
    from moto.sqs import models

    visible_messages = models.Queue.messages
    receive_message = models.SQSBackend.receive_message

    def messages(self: Any) -> Sequence[Any]:
        found: list[Any] = visible_messages.fget(self)
        if getattr(_state, "receiving", False) and not _off.is_set() and not self.fifo_queue:
            return fair_order(self, found, models.unix_time_millis())
        return found

    def receiving(self: Any, *args: Any, **kwargs: Any) -> Any:
        _state.receiving = True
        try:
            return receive_message(self, *args, **kwargs)
        finally:
            _state.receiving = False

    models.Queue.messages = property(messages)
    models.SQSBackend.receive_message = receiving
