"""What comes after an attempt: the delivery's next state and what must be done about it.

A pure function of (the attempt, the policy); the dispatcher performs what it decides (schedule
the retry, dead-letter the task, record the status, disable the webhook) and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from devicehooks.config import DEFAULT_RETRY_SCHEDULE
from devicehooks.domain.activity import Attempt

GONE_REASON = "the endpoint answered 410 Gone"


@dataclass(frozen=True, slots=True)
class DispatchPolicy:
    """The knobs of delivery (from settings)."""

    retention: int = 7 * 24 * 3600
    schedule: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE
    disable_after: int = 5 * 24 * 3600
    delivery_timeout: float = 10.0
    retry_after_cap: int = 3600
    lease: int = 0

    @property
    def lease_seconds(self) -> int:
        """How long a delivery is reserved: by default longer than any POST can take (connect and
        read timeouts, per address) plus recording it."""
        return self.lease or int(4 * self.delivery_timeout) + 30

    def retry_delay(self, series_attempt: int, retry_after: float | None) -> float | None:
        """Seconds until the next attempt after attempt ``series_attempt`` failed; ``None``: no more."""
        if series_attempt > len(self.schedule):
            return None
        if retry_after is not None:
            return float(min(max(retry_after, 1.0), self.retry_after_cap))
        return float(self.schedule[series_attempt - 1])

    def disable_due(self, failing_since: datetime | None, now: datetime) -> bool:
        """Whether a webhook failing every delivery since ``failing_since`` has failed long enough."""
        return failing_since is not None and (now - failing_since).total_seconds() >= self.disable_after


@dataclass(frozen=True, slots=True)
class Decision:
    """The delivery's next state, and the side effects that go with it."""

    state: Literal["delivered", "retrying", "failed"]
    retry_in: float | None = None  # schedule the next attempt this many seconds from now
    dead_letter: bool = False  # every attempt is used: keep the task in the delivery DLQ
    disable_reason: str | None = None  # disable the webhook at once
    error: str | None = None  # what to record, when not the attempt's own error
    failure: bool = False  # counts towards the webhook's failing-since clock


def decide(
    attempt: Attempt, retry_after: float | None, series_attempt: int, policy: DispatchPolicy, retry: bool
) -> Decision:
    """What comes after ``attempt``, attempt ``series_attempt`` of its retry schedule.

    ``retry`` is false for attempts that are never retried (test deliveries).
    """
    if attempt.status_code is not None and attempt.status_code < 300:
        return Decision("delivered")
    if attempt.status_code == 410:
        return Decision("failed", disable_reason=GONE_REASON, error=f"{attempt.error}; webhook disabled")
    delay = policy.retry_delay(series_attempt, retry_after) if retry else None
    if delay is not None:
        return Decision("retrying", retry_in=delay, failure=True)
    return Decision("failed", dead_letter=retry, failure=True)
