"""What comes after an attempt (domain/decisions.py): a table of outcomes, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devicehooks.domain.activity import Attempt
from devicehooks.domain.decisions import GONE_REASON, Decision, DispatchPolicy, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = DispatchPolicy(schedule=(5, 300), disable_after=3600, retry_after_cap=600)


def _attempt(status: int | None, error: str | None = None) -> Attempt:
    return Attempt(number=1, at=NOW, status_code=status, error=error)


@pytest.mark.parametrize(
    ("status", "retry_after", "series", "retry", "expected"),
    [
        (200, None, 1, True, Decision("delivered")),
        (204, None, 3, True, Decision("delivered")),
        (500, None, 1, True, Decision("retrying", retry_in=5.0, failure=True)),
        (500, None, 2, True, Decision("retrying", retry_in=300.0, failure=True)),
        (500, None, 3, True, Decision("failed", dead_letter=True, failure=True)),  # schedule used up
        (None, None, 1, True, Decision("retrying", retry_in=5.0, failure=True)),  # no response at all
        (302, None, 1, True, Decision("retrying", retry_in=5.0, failure=True)),  # redirects are failures
        (429, 42.0, 1, True, Decision("retrying", retry_in=42.0, failure=True)),  # Retry-After wins
        (503, 86400.0, 1, True, Decision("retrying", retry_in=600.0, failure=True)),  # capped
        (503, 0.0, 1, True, Decision("retrying", retry_in=1.0, failure=True)),  # at least a second
        (500, None, 1, False, Decision("failed", dead_letter=False, failure=True)),  # a test delivery
        (200, None, 1, False, Decision("delivered")),
    ],
)
def test_decisions(status: int | None, retry_after: float | None, series: int, retry: bool, expected: Decision) -> None:
    assert decide(_attempt(status), retry_after, series, POLICY, retry) == expected


@pytest.mark.parametrize(
    ("timeout", "duration_ms", "slow"),
    [(10.0, 2000, False), (10.0, 2001, True), (2.0, 1000, False), (2.0, 1500, True), (0.5, 300, True)],
)
def test_a_success_later_than_slow_seconds_is_slow(timeout: float, duration_ms: int, slow: bool) -> None:
    policy = DispatchPolicy(delivery_timeout=timeout)  # slow: over 2 s, or half the timeout if less
    attempt = Attempt(number=1, at=NOW, duration_ms=duration_ms, status_code=200)
    assert decide(attempt, None, 1, policy, True) == Decision("delivered", slow=slow)
    failed = Attempt(number=1, at=NOW, duration_ms=duration_ms, status_code=500)
    assert not decide(failed, None, 1, policy, True).slow  # only a success is slow or not


def test_410_gone_fails_at_once_disables_and_is_not_counted_as_a_streak() -> None:
    decision = decide(_attempt(410, "unexpected status code from webhook: 410"), None, 1, POLICY, True)
    assert decision == Decision(
        "failed", disable_reason=GONE_REASON, error="unexpected status code from webhook: 410; webhook disabled"
    )


@pytest.mark.parametrize(
    ("since", "due"),
    [(None, False), (NOW, False), (NOW - timedelta(seconds=3599), False), (NOW - timedelta(seconds=3600), True)],
)
def test_a_webhook_is_disabled_once_it_has_failed_for_disable_after(since: datetime | None, due: bool) -> None:
    assert POLICY.disable_due(since, NOW) is due


def test_the_lease_outlasts_any_attempt_unless_set() -> None:
    assert DispatchPolicy(delivery_timeout=10).lease_seconds == 70
    assert DispatchPolicy(delivery_timeout=10, lease=5).lease_seconds == 5
