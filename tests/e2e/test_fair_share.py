"""Fair share at the queue, on a local stack of its own: a tenant's backlog to a slow but healthy
webhook does not hold another tenant's first deliveries behind it (docs/architecture.md, "Fair
share at the queue"). Counted, not timed: how much of the backlog was delivered while the other
tenant's deliveries went through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack
from tests.e2e.tenant import Tenant
from tests.receiver import Answer, Receiver, eventually

# S's events: twenty of Mender's bulk status changes of 100 (P8's case); with fewer, a loaded
# machine drains too much of them within B's own latency for the count to tell
BACKLOG = 2000
SLOW = 1.0  # S's webhook answers in a second: slow, but within the timeout and not "slow" (under 2 s)
OTHERS = 5  # B's events

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # the dispatcher's environments started at once (as provisioned concurrency): no cold start
    # in the middle of the backlog
    stack = start_stack(tmp_path_factory.mktemp("fair"), {"DEVICEHOOKS_LOCAL_WARM": "DispatcherFunction"}, 120)
    yield stack
    stop_stack(stack)


def _bulk(tenant: Tenant, prefix: str, count: int) -> None:
    tenant.internal("PUT", "/bulk/devices/status/accepted", [{"id": f"{prefix}-{n}"} for n in range(count)])


def test_a_tenants_backlog_to_a_slow_webhook_does_not_hold_another_tenants_first_deliveries(
    own_stack: RunningStack,
) -> None:
    receiver = Receiver()
    try:
        s, b = Tenant(own_stack), Tenant(own_stack)
        receiver.script("/s", *[Answer(delay=SLOW)] * (BACKLOG + 10))
        s.webhook(receiver.url("/s"))
        b.webhook(receiver.url("/b"))
        _bulk(s, "proof", 10)  # S's webhook has delivered before: proven, every dispatcher may work on it
        receiver.wait_for(10, "/s", timeout=60)
        for n in range(BACKLOG // 100):
            _bulk(s, f"s{n}", 100)
        before = len(receiver.on("/s")) - 10
        _bulk(b, "b", OTHERS)
        receiver.wait_for(OTHERS, "/b", timeout=60)
        during = len(receiver.on("/s")) - 10 - before
        waiting = BACKLOG - before
        # the backlog was there when B sent, and B's deliveries did not wait for it to drain
        assert waiting >= BACKLOG // 3, f"only {waiting} of S's events were still waiting"
        assert during < waiting / 2, f"{during} of S's {waiting} waiting events went before B's {OTHERS}"
        eventually(lambda: len(receiver.on("/s")) >= BACKLOG + 10, timeout=180)  # and all of S's arrive
    finally:
        receiver.close()
