"""One contract for every store: the in-memory doubles and the DynamoDB stores (on moto) alike.

Every test runs twice (``stores`` is parametrised); a behaviour the services rely on is pinned
here once, so the doubles the unit tests use cannot drift from what production does.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devicehooks.domain.activity import (
    DELIVERED_ALREADY,
    RETRYABLE,
    ActivityEvent,
    Attempt,
    DeliveryStatus,
    EventFilter,
    HourCount,
    Waiting,
)
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent
from devicehooks.domain.models import Circuit, Integration, IntegrationChanges
from devicehooks.errors import Conflict
from devicehooks.services.redelivery import DeliveryService
from devicehooks.store.activity import ActivityStore, Claim, DynamoActivityStore
from devicehooks.store.bounds import (
    BODY_BYTES,
    ERROR_BYTES,
    HEADER_BYTES,
    KEEP_MAX,
    SNIPPET_BYTES,
    TARGET_BYTES,
    ItemTooLarge,
    bound_for,
    dropped,
    worst_case_bytes,
)
from devicehooks.store.integrations import (
    COUNTER_ID,
    RATE_TTL,
    STATE_TTL,
    DynamoIntegrationStore,
    IntegrationStore,
    Trial,
)
from devicehooks_dev.doubles import MemoryTaskQueue
from tests.contract.conftest import Stores

NOW = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def _found(stores: Stores, tenant: str, integration_id: str) -> Integration:
    found = stores.integrations.get(tenant, integration_id)
    assert found is not None
    return found


def _integration(tenant: str, n: int = 0, **fields: object) -> Integration:
    values: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "tenant_id": tenant,
        "url": f"https://hooks.example.com/{n}",
        "created_at": NOW + timedelta(seconds=n),
        "updated_at": NOW + timedelta(seconds=n),
        **fields,
    }
    return Integration(**values)  # type: ignore[arg-type]


def _event(
    tenant: str, statuses: list[DeliveryStatus], at: datetime = NOW, event_type: str = "device-decommissioned"
) -> ActivityEvent:
    event = WebhookEvent(
        id=new_event_id(at, event_type), tenant_id=tenant, type=event_type, data={"id": "dev-1"}, time=at
    )  # type: ignore[arg-type]
    return ActivityEvent.new(event, int(at.timestamp()) + 3600, statuses)


# ---------------------------------------------------------------------------------- integrations
def test_added_integrations_come_back_whole_oldest_first_and_per_tenant(stores: Stores) -> None:
    tenant, other = _tenant(), _tenant()
    full = _integration(
        tenant,
        1,
        secret=b"sealed-bytes",
        description="the receiver",
        event_types=("device-provisioned", "device-status-changed"),
        previous_secret=b"old",
        previous_secret_until=NOW + timedelta(hours=1),
        failing_since=NOW,
    )
    plain = _integration(tenant, 0)
    empty_secret = _integration(tenant, 2, secret=b"")
    for integration in (full, plain, empty_secret, _integration(other)):
        stores.integrations.add(integration, limit=10)
    assert stores.integrations.list_tenant(tenant) == [plain, full, empty_secret]
    assert stores.integrations.get(tenant, full.id) == full
    assert stores.integrations.get(tenant, empty_secret.id) == empty_secret  # b"" is not "no secret"
    assert stores.integrations.get(other, full.id) is None


def test_open_source_tenant_is_the_empty_string(stores: Stores) -> None:
    integration = _integration("", url="https://open.example.com/")
    stores.integrations.add(integration, limit=99)
    assert integration in stores.integrations.list_tenant("")


def test_the_limit_is_per_tenant_and_a_removal_frees_a_place(stores: Stores) -> None:
    tenant = _tenant()
    first, second = _integration(tenant, 0), _integration(tenant, 1)
    stores.integrations.add(first, limit=1)
    stores.integrations.add(_integration(_tenant()), limit=1)
    with pytest.raises(Conflict, match="at most 1 integrations"):
        stores.integrations.add(second, limit=1)
    assert stores.integrations.remove(tenant, first.id) is True
    assert stores.integrations.remove(tenant, first.id) is False
    stores.integrations.add(second, limit=1)
    assert stores.integrations.list_tenant(tenant) == [second]


def test_update_changes_only_the_given_fields(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant, description="keep me", event_types=("device-provisioned",), failing_since=NOW)
    stores.integrations.add(integration, limit=10)
    later = NOW + timedelta(minutes=5)
    updated = stores.integrations.update(
        tenant, integration.id, IntegrationChanges.settings(at=later, url="https://b.example.com/")
    )
    expected = Integration(**{**_fields(integration), "url": "https://b.example.com/", "updated_at": later})
    assert updated == expected == stores.integrations.get(tenant, integration.id)
    cleared = stores.integrations.update(
        tenant, integration.id, IntegrationChanges.settings(at=later, event_types=None)
    )
    assert cleared is not None and cleared.event_types is None and cleared.description == "keep me"
    assert stores.integrations.update(tenant, str(uuid.uuid4()), IntegrationChanges.settings(at=later)) is None


def test_scopes_are_kept_as_given_and_an_item_without_them_is_deviceauth_only(stores: Stores) -> None:
    # Given integrations with both scopes, with [] (what Mender's UI sends) and without scopes
    tenant = _tenant()
    both = _integration(tenant, 0, scopes=("deviceauth", "inventory"), event_types=("device-inventory-changed",))
    empty = _integration(tenant, 1, scopes=())
    absent = _integration(tenant, 2)  # as every item written before scopes
    for integration in (both, empty, absent):
        stores.integrations.add(integration, limit=10)
    # Then each comes back as it was given
    assert stores.integrations.list_tenant(tenant) == [both, empty, absent]
    assert [_found(stores, tenant, i.id).scopes for i in (both, empty, absent)] == [
        ("deviceauth", "inventory"),
        (),
        None,
    ]
    deviceauth_only = ("deviceauth",)
    assert [i.effective_scopes for i in (empty, absent)] == [deviceauth_only, deviceauth_only]
    # When scopes change, are emptied and are removed
    later = NOW + timedelta(minutes=1)
    changed = stores.integrations.update(
        tenant, absent.id, IntegrationChanges.settings(at=later, scopes=("inventory",))
    )
    assert changed is not None and changed.scopes == ("inventory",) == _found(stores, tenant, absent.id).scopes
    emptied = stores.integrations.update(tenant, absent.id, IntegrationChanges.settings(at=later, scopes=()))
    assert emptied is not None and _found(stores, tenant, absent.id).scopes == () == emptied.scopes
    removed = stores.integrations.update(tenant, both.id, IntegrationChanges.settings(at=later, scopes=None))
    assert removed is not None and _found(stores, tenant, both.id).scopes is None
    assert _found(stores, tenant, both.id).event_types == ("device-inventory-changed",)  # the rest is kept


def test_enabling_or_disabling_resets_the_failure_clock(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant, failing_since=NOW)
    stores.integrations.add(integration, limit=10)
    off = stores.integrations.update(tenant, integration.id, IntegrationChanges.settings(at=NOW, enabled=False))
    assert off is not None and (off.enabled, off.disabled_reason, off.failing_since) == (
        False,
        "disabled by a user",
        None,
    )
    on = stores.integrations.update(tenant, integration.id, IntegrationChanges.settings(at=NOW, enabled=True))
    assert on is not None and (on.enabled, on.disabled_reason) == (True, None)
    gone = stores.integrations.update(tenant, integration.id, IntegrationChanges.disabled("410 Gone", NOW))
    assert gone is not None and (gone.enabled, gone.disabled_reason) == (False, "410 Gone")


def test_new_credentials_keep_the_previous_secret_or_drop_it(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant, secret=b"first")
    stores.integrations.add(integration, limit=10)
    until = NOW + timedelta(hours=24)
    rotated = stores.integrations.update(
        tenant,
        integration.id,
        IntegrationChanges.credentials("https://c.example.com/", b"second", b"first", until, NOW),
    )
    assert rotated is not None
    assert (rotated.url, rotated.secret, rotated.previous_secret, rotated.previous_secret_until) == (
        "https://c.example.com/",
        b"second",
        b"first",
        until,
    )
    unsigned = stores.integrations.update(
        tenant, integration.id, IntegrationChanges.credentials("https://c.example.com/", None, None, None, NOW)
    )
    assert unsigned is not None and (unsigned.secret, unsigned.previous_secret, unsigned.previous_secret_until) == (
        None,
        None,
        None,
    )


def test_failures_stamp_failing_since_once_count_on_the_circuit_and_a_success_clears_both(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    first = stores.integrations.note_failure(tenant, integration.id, NOW)
    second = stores.integrations.note_failure(tenant, integration.id, NOW + timedelta(hours=1))
    assert first is not None and (first.failing_since, first.circuit.failures) == (NOW, 1)
    assert second is not None and (second.failing_since, second.circuit.failures) == (NOW, 2)
    stores.integrations.note_success(tenant, integration.id)
    found = stores.integrations.get(tenant, integration.id)
    assert found is not None and (found.failing_since, found.circuit) == (None, Circuit(proven=True))
    assert stores.integrations.note_failure(tenant, str(uuid.uuid4()), NOW) is None


def test_a_webhook_is_proven_by_a_success_until_a_failure(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    assert _found(stores, tenant, integration.id).circuit.proven is False  # new: on trial
    stores.integrations.note_success(tenant, integration.id)
    assert _found(stores, tenant, integration.id).circuit == Circuit(proven=True)
    failed = stores.integrations.note_failure(tenant, integration.id, NOW)
    assert failed is not None and (failed.circuit.proven, failed.circuit.failures) == (False, 1)
    stores.integrations.note_success(tenant, integration.id)
    assert _found(stores, tenant, integration.id).circuit == Circuit(proven=True)
    stores.integrations.update(
        tenant, integration.id, IntegrationChanges.settings(NOW, url="https://other.example.com/")
    )
    assert _found(stores, tenant, integration.id).circuit.proven is False  # another endpoint: on trial again
    gone = str(uuid.uuid4())
    stores.integrations.note_success(tenant, gone)  # no such webhook: nothing written
    assert stores.integrations.get(tenant, gone) is None


def test_a_slow_success_clears_the_failures_and_leaves_or_takes_the_webhook_on_trial(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    stores.integrations.note_success(tenant, integration.id, proven=False)  # new and slow: still on trial
    assert _found(stores, tenant, integration.id).circuit == Circuit()
    stores.integrations.note_success(tenant, integration.id)
    assert _found(stores, tenant, integration.id).circuit == Circuit(proven=True)
    stores.integrations.note_success(tenant, integration.id, proven=False)  # proven, then slow: on trial again
    assert _found(stores, tenant, integration.id).circuit == Circuit()
    stores.integrations.note_failure(tenant, integration.id, NOW)
    stores.integrations.note_success(tenant, integration.id, proven=False)  # failing, then slow: no longer failing
    found = _found(stores, tenant, integration.id)
    assert (found.failing_since, found.circuit) == (None, Circuit())
    gone = str(uuid.uuid4())
    stores.integrations.note_success(tenant, gone, proven=False)  # no such webhook: nothing written
    assert stores.integrations.get(tenant, gone) is None


def test_a_webhook_on_trial_gives_a_few_turns_at_a_time_each_until_given_back_or_its_time_is_up(
    stores: Stores,
) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    until = NOW + timedelta(seconds=30)
    first = stores.integrations.start_trial(tenant, integration.id, 2, NOW, until)
    second = stores.integrations.start_trial(tenant, integration.id, 2, NOW, until)
    assert (first.slot, second.slot) == (0, 1) and first.granted and second.granted
    assert stores.integrations.start_trial(tenant, integration.id, 2, NOW, until) == Trial()  # every turn taken
    stores.integrations.end_trial(tenant, integration.id, first)
    third = stores.integrations.start_trial(tenant, integration.id, 2, NOW, until)
    assert third.slot == 0
    later = until + timedelta(seconds=1)  # the turns' time is up (their dispatchers died): free again
    fourth = stores.integrations.start_trial(tenant, integration.id, 2, later, later + timedelta(seconds=30))
    assert fourth.slot is not None
    stores.integrations.end_trial(tenant, integration.id, third)  # too late: the turn is another's now
    assert stores.integrations.start_trial(tenant, integration.id, 2, later, later + timedelta(seconds=30)).granted
    assert stores.integrations.start_trial(tenant, integration.id, 2, later, later) == Trial()
    stores.integrations.note_success(tenant, integration.id)
    assert stores.integrations.start_trial(tenant, integration.id, 2, later, later) == Trial(proven=True)
    assert stores.integrations.start_trial(tenant, str(uuid.uuid4()), 2, NOW, until) == Trial()


def test_a_circuit_opens_once_per_state_and_keeps_the_failures_counted_meanwhile(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    for _ in range(5):
        seen = stores.integrations.note_failure(tenant, integration.id, NOW)
    assert seen is not None
    opened = Circuit(failures=5, opened_at=NOW, open_until=NOW + timedelta(seconds=30), cooldown=30)
    assert stores.integrations.open_circuit(tenant, integration.id, seen.circuit, opened) is True
    assert stores.integrations.open_circuit(tenant, integration.id, seen.circuit, opened) is False  # already open
    stores.integrations.note_failure(tenant, integration.id, NOW)  # another dispatcher's failure meanwhile
    found = stores.integrations.get(tenant, integration.id)
    assert found is not None and found.circuit == replace(opened, failures=6)
    reopened = Circuit(failures=6, opened_at=NOW, open_until=NOW + timedelta(seconds=90), cooldown=60)
    assert stores.integrations.open_circuit(tenant, integration.id, found.circuit, reopened) is True
    assert stores.integrations.open_circuit(tenant, str(uuid.uuid4()), Circuit(), opened) is False


def test_one_probe_at_a_time_once_the_circuit_is_half_open(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    until = NOW + timedelta(seconds=30)
    assert stores.integrations.claim_probe(tenant, integration.id, NOW, until) is False  # closed: no probe
    stores.integrations.open_circuit(tenant, integration.id, Circuit(), Circuit(1, NOW, until, 30))
    assert stores.integrations.claim_probe(tenant, integration.id, NOW, until) is False  # still open
    later = until + timedelta(seconds=1)
    assert stores.integrations.claim_probe(tenant, integration.id, later, later + timedelta(seconds=15)) is True
    assert stores.integrations.claim_probe(tenant, integration.id, later, later + timedelta(seconds=15)) is False
    after_probe = later + timedelta(seconds=16)  # the probe's time is up (its dispatcher died): another may try
    assert stores.integrations.claim_probe(tenant, integration.id, after_probe, after_probe + timedelta(seconds=15))
    found = stores.integrations.get(tenant, integration.id)
    assert found is not None and found.circuit.probe_until == after_probe + timedelta(seconds=15)


def test_the_rate_limit_counts_deliveries_per_second(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant, rate_limit=2)
    stores.integrations.add(integration, limit=10)
    assert stores.integrations.get(tenant, integration.id) == integration
    second = 1_800_000_000
    taken = [stores.integrations.take_rate_token(tenant, integration.id, second, 2) for _ in range(3)]
    assert taken == [True, True, False]
    assert stores.integrations.take_rate_token(tenant, integration.id, second + 1, 2) is True
    assert stores.integrations.take_rate_token(tenant, integration.id, second, 2) is False  # the past is closed
    assert stores.integrations.take_rate_token(tenant, str(uuid.uuid4()), second, 2) is False


def test_removing_a_tenant_removes_only_its_integrations(stores: Stores) -> None:
    tenant, other = _tenant(), _tenant()
    for n in range(3):
        stores.integrations.add(_integration(tenant, n), limit=10)
    kept = _integration(other)
    stores.integrations.add(kept, limit=10)
    assert stores.integrations.remove_tenant(tenant) == 3
    assert stores.integrations.list_tenant(tenant) == []
    assert stores.integrations.list_tenant(other) == [kept]
    stores.integrations.add(_integration(tenant), limit=1)  # the count starts again


# ------------------------------------------------------------------ a webhook's runtime state
# What deliveries write (the circuit, the proof, trial turns, failing_since, rate windows) is kept
# apart from the configuration: the DynamoDB store keeps it on items of its own.
def _configuration(integration: Integration) -> Integration:
    """An integration without what its deliveries write: its configuration alone."""
    return replace(integration, failing_since=None, circuit=Circuit())


def _bookkeeping(store: IntegrationStore, tenant: str, integration_id: str) -> None:
    """Every write a delivery makes: trial turns, rate tokens, failures, the circuit opened and
    probed, slow and proving successes."""
    until = NOW + timedelta(seconds=30)
    turn = store.start_trial(tenant, integration_id, 4, NOW, until)
    assert turn.slot == 0
    second = int(NOW.timestamp())
    assert [store.take_rate_token(tenant, integration_id, second, 2) for _ in range(3)] == [
        True,
        True,
        False,
    ]
    assert store.take_rate_token(tenant, integration_id, second + 1, 2)
    for _ in range(5):
        failing = store.note_failure(tenant, integration_id, NOW)
    assert failing is not None
    opened = Circuit(failures=5, opened_at=NOW, open_until=until, cooldown=30)
    assert store.open_circuit(tenant, integration_id, failing.circuit, opened)
    later = until + timedelta(seconds=1)
    assert store.claim_probe(tenant, integration_id, later, later + timedelta(seconds=15))
    store.note_success(tenant, integration_id, proven=False)
    store.end_trial(tenant, integration_id, turn)
    store.note_success(tenant, integration_id)


def test_a_deliverys_bookkeeping_leaves_the_configuration_as_it_was(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(
        tenant,
        secret=b"sealed",
        description="the receiver",
        event_types=("device-provisioned",),
        rate_limit=2,
        scopes=("deviceauth", "inventory"),
    )
    stores.integrations.add(integration, limit=10)
    _bookkeeping(stores.integrations, tenant, integration.id)
    found = _found(stores, tenant, integration.id)
    assert found.circuit == Circuit(proven=True) and found.failing_since is None  # the state was written
    assert _configuration(found) == integration  # updated_at and every setting as added
    assert stores.integrations.list_tenant(tenant) == [found]  # the state is no integration


def test_a_reset_clears_what_deliveries_wrote_and_a_new_url_keeps_the_failure_clock(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    later = NOW + timedelta(minutes=5)

    def failing() -> Integration:
        stores.integrations.note_success(tenant, integration.id)
        for _ in range(5):
            failed = stores.integrations.note_failure(tenant, integration.id, NOW)
        assert failed is not None
        opened = Circuit(failures=5, opened_at=NOW, open_until=NOW + timedelta(seconds=30), cooldown=30)
        assert stores.integrations.open_circuit(tenant, integration.id, failed.circuit, opened)
        return _found(stores, tenant, integration.id)

    # enabling, disabling (by hand or by the dispatcher): the state starts afresh, with the change
    for changes in (
        IntegrationChanges.settings(later, enabled=False),
        IntegrationChanges.settings(later, enabled=True),
        IntegrationChanges.disabled("410 Gone", later),
    ):
        before = failing()
        assert before.failing_since == NOW and before.circuit.open_until is not None
        updated = stores.integrations.update(tenant, integration.id, changes)
        assert updated is not None and updated == _found(stores, tenant, integration.id)
        assert (updated.failing_since, updated.circuit, updated.updated_at) == (None, Circuit(), later)
    # a new URL: another endpoint, its circuit closed and on trial; still failing since then
    failing()
    moved = stores.integrations.update(
        tenant, integration.id, IntegrationChanges.settings(later, url="https://moved.example.com/")
    )
    assert moved is not None and moved == _found(stores, tenant, integration.id)
    assert (moved.url, moved.failing_since, moved.circuit) == ("https://moved.example.com/", NOW, Circuit())
    # a change of settings alone leaves the state as it is, and returns it
    failed = failing()
    described = stores.integrations.update(tenant, integration.id, IntegrationChanges.settings(later, description="d"))
    assert described is not None and (described.failing_since, described.circuit) == (NOW, failed.circuit)


def test_a_reset_leaves_the_trial_turns_taken_to_their_invocations(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant)
    stores.integrations.add(integration, limit=10)
    until = NOW + timedelta(seconds=30)
    turns = [stores.integrations.start_trial(tenant, integration.id, 2, NOW, until) for _ in range(2)]
    assert all(t.slot is not None for t in turns)
    stores.integrations.update(tenant, integration.id, IntegrationChanges.settings(NOW, url="https://new.example.com/"))
    # the invocations that hold them still attempt the webhook: no more may start than there are turns
    assert stores.integrations.start_trial(tenant, integration.id, 2, NOW, until) == Trial()
    stores.integrations.end_trial(tenant, integration.id, turns[1])
    assert stores.integrations.start_trial(tenant, integration.id, 2, NOW, until).slot == 1


def test_a_removed_webhook_leaves_no_state_and_no_write_makes_it_any(stores: Stores) -> None:
    tenant = _tenant()
    integration = _integration(tenant, rate_limit=1)
    stores.integrations.add(integration, limit=10)
    second = int(NOW.timestamp())
    until = NOW + timedelta(seconds=30)
    assert stores.integrations.take_rate_token(tenant, integration.id, second, 1)
    assert stores.integrations.start_trial(tenant, integration.id, 1, NOW, until).granted
    stores.integrations.note_failure(tenant, integration.id, NOW)
    assert stores.integrations.remove(tenant, integration.id)
    # a dispatcher that read the webhook before its removal: nothing comes of its writes
    assert stores.integrations.note_failure(tenant, integration.id, NOW) is None
    assert stores.integrations.open_circuit(tenant, integration.id, Circuit(), Circuit(1, NOW, until, 30)) is False
    assert stores.integrations.claim_probe(tenant, integration.id, until, until) is False
    assert stores.integrations.start_trial(tenant, integration.id, 1, NOW, until) == Trial()
    assert stores.integrations.take_rate_token(tenant, integration.id, second, 1) is False
    stores.integrations.note_success(tenant, integration.id)
    assert stores.integrations.get(tenant, integration.id) is None
    assert stores.integrations.list_tenant(tenant) == []
    # the same id added again (only a test does) starts afresh: no state, no window, no turn taken
    stores.integrations.add(integration, limit=10)
    assert stores.integrations.get(tenant, integration.id) == integration
    assert stores.integrations.take_rate_token(tenant, integration.id, second, 1)
    assert stores.integrations.start_trial(tenant, integration.id, 1, NOW, until).slot == 0


def test_runtime_state_is_never_an_integration_nor_counted_as_one(stores: Stores) -> None:
    tenant = _tenant()
    hooks = [_integration(tenant, n, rate_limit=5) for n in range(3)]
    for hook in hooks:
        stores.integrations.add(hook, limit=3)
        _bookkeeping(stores.integrations, tenant, hook.id)
    listed = stores.integrations.list_tenant(tenant)
    assert [_configuration(i) for i in listed] == hooks
    assert all(i.circuit == Circuit(proven=True) for i in listed)
    with pytest.raises(Conflict):  # the limit counts integrations, and only them
        stores.integrations.add(_integration(tenant, 4), limit=3)
    assert stores.integrations.remove_tenant(tenant) == 3
    assert stores.integrations.list_tenant(tenant) == []


def test_integration_ids_holding_the_key_separator_are_webhooks_of_their_own(stores: Stores) -> None:
    # ids that were, unescaped, another webhook's state or rate item, the counter, or each other's
    tenant = _tenant() + "#%"
    ids = ["x", "x#state", "x#rate", "x%23state", "x#", "#count", "~count"]
    hooks = [_integration(tenant, n, id=i, rate_limit=5) for n, i in enumerate(ids)]
    for hook in hooks:
        stores.integrations.add(hook, limit=len(ids))
    with pytest.raises(Conflict):  # the counter counts them all
        stores.integrations.add(_integration(tenant, 9, id="y"), limit=len(ids))
    _bookkeeping(stores.integrations, tenant, "x")
    assert stores.integrations.note_failure(tenant, "x#state", NOW) is not None
    found = {i: _found(stores, tenant, i) for i in ids}
    assert found["x"].circuit == Circuit(proven=True) and found["x"].failing_since is None
    assert found["x#state"].failing_since == NOW and found["x#state"].circuit.failures == 1
    assert [found[i] for i in ids[2:]] == hooks[2:]  # untouched, whole
    assert stores.integrations.list_tenant(tenant) == [found[i] for i in ids]
    assert stores.integrations.get(tenant, "x%") is None and stores.integrations.get(tenant.rstrip("#%"), "x") is None
    assert stores.integrations.remove(tenant, "x") is True
    assert [i.id for i in stores.integrations.list_tenant(tenant)] == ids[1:]
    assert stores.integrations.remove_tenant(tenant) == len(ids) - 1


# DynamoDB only: the items themselves
class _Recording:
    """A DynamoDB client that notes the sort key(s) each write request names, then makes it."""

    WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.writes: list[tuple[str, list[str]]] = []

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._client, name)
        if name not in self.WRITES:
            return call

        def recorded(**kwargs: Any) -> Any:
            self.writes.append((name, _written_keys(kwargs)))
            return call(**kwargs)

        return recorded


def _written_keys(request: dict[str, Any]) -> list[str]:
    """The sort keys a write request names (one item, a transaction's or a batch's)."""
    entries = request.get("TransactItems") or [e for batch in request.get("RequestItems", {}).values() for e in batch]
    specs = [next(iter(entry.values())) for entry in entries] or [request]
    return [(spec.get("Key") or spec["Item"])["integration_id"]["S"] for spec in specs]


def _recorded_store(moto_tables: tuple[Any, dict[str, dict[str, Any]]]) -> tuple[DynamoIntegrationStore, _Recording]:
    client, physical = moto_tables
    recording = _Recording(client)
    return DynamoIntegrationStore(physical["IntegrationsTable"]["TableName"], client=recording), recording


def _raw(store: DynamoIntegrationStore, tenant: str, integration_id: str) -> dict[str, dict[str, Any]]:
    """Every item whose key starts with ``integration_id``, by sort key, as DynamoDB has it."""
    out = store.client.query(
        TableName=store.table_name,
        KeyConditionExpression="tenant_key = :t AND begins_with(integration_id, :id)",
        ExpressionAttributeValues={":t": {"S": f"T#{tenant}"}, ":id": {"S": integration_id}},
        ConsistentRead=True,
    )
    return {item["integration_id"]["S"]: item for item in out["Items"]}


def test_on_dynamodb_deliveries_write_only_the_state_and_rate_items_never_the_configuration(
    moto_tables: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    store, recording = _recorded_store(moto_tables)
    tenant = _tenant()
    integration = _integration(tenant, secret=b"sealed", rate_limit=2)
    store.add(integration, limit=10)
    before = _raw(store, tenant, integration.id)[integration.id]
    recording.writes.clear()
    _bookkeeping(store, tenant, integration.id)
    written = {key for _, keys in recording.writes for key in keys}
    assert written == {f"{integration.id}#state", f"{integration.id}#rate"}
    items = _raw(store, tenant, integration.id)
    assert items[integration.id] == before  # byte for byte: updated_at, the secret, every attribute
    assert sorted(items) == sorted([integration.id, f"{integration.id}#state", f"{integration.id}#rate"])
    # the state item expires STATE_TTL after its last write, the rate window RATE_TTL after its second
    state_expiry = int(items[f"{integration.id}#state"]["expire_ts"]["N"])
    assert abs(state_expiry - (time.time() + STATE_TTL)) < 60
    assert int(items[f"{integration.id}#rate"]["expire_ts"]["N"]) == int(NOW.timestamp()) + 1 + RATE_TTL
    assert "expire_ts" not in items[integration.id]


def test_on_dynamodb_a_rate_limited_delivery_writes_only_its_rate_item(
    moto_tables: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    store, recording = _recorded_store(moto_tables)
    tenant = _tenant()
    integration = _integration(tenant, rate_limit=1)
    store.add(integration, limit=10)
    before = _raw(store, tenant, integration.id)[integration.id]
    recording.writes.clear()
    second = int(NOW.timestamp())
    taken = [store.take_rate_token(tenant, integration.id, s, 1) for s in (second, second, second + 1, second + 2)]
    assert taken == [True, False, True, True]
    assert {key for _, keys in recording.writes for key in keys} == {f"{integration.id}#rate"}
    assert all(operation == "update_item" for operation, _ in recording.writes)
    assert _raw(store, tenant, integration.id)[integration.id] == before


def test_on_dynamodb_a_reset_is_one_transaction_of_the_configuration_and_the_state(
    moto_tables: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    store, recording = _recorded_store(moto_tables)
    tenant = _tenant()
    integration = _integration(tenant)
    store.add(integration, limit=10)
    store.note_failure(tenant, integration.id, NOW)
    recording.writes.clear()
    store.update(tenant, integration.id, IntegrationChanges.settings(NOW, enabled=True))
    assert recording.writes == [("transact_write_items", [integration.id, f"{integration.id}#state"])]
    recording.writes.clear()
    store.update(tenant, integration.id, IntegrationChanges.settings(NOW, description="no reset"))
    assert recording.writes == [("update_item", [integration.id])]
    recording.writes.clear()
    assert store.remove(tenant, integration.id)
    (operation, keys), *_ = recording.writes
    assert operation == "transact_write_items"
    assert {f"{integration.id}#state", f"{integration.id}#rate", integration.id} <= set(keys)
    assert _raw(store, tenant, integration.id) == {}


def test_on_dynamodb_orphaned_state_items_are_passed_over_and_expire(
    moto_tables: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    store, _ = _recorded_store(moto_tables)
    tenant = _tenant()
    kept = _integration(tenant)
    store.add(kept, limit=10)
    orphan = str(uuid.uuid4())  # a dispatcher's write that raced the webhook's removal
    for suffix, attributes in (("#state", {"cb_failures": {"N": "3"}}), ("#rate", {"rl_second": {"N": "1"}})):
        store.client.put_item(
            TableName=store.table_name,
            Item={**store._item_key(tenant, orphan + suffix), **attributes, "expire_ts": {"N": "1"}},  # noqa: SLF001
        )
    assert store.list_tenant(tenant) == [kept]
    assert store.get(tenant, orphan) is None
    assert store.note_failure(tenant, orphan, NOW) is None  # and nothing brings it back
    assert store.remove_tenant(tenant) == 1
    assert _raw(store, tenant, orphan) == {}


def test_on_dynamodb_a_write_refused_for_a_transaction_in_flight_is_made_again(
    moto_tables: tuple[Any, dict[str, dict[str, Any]]],
) -> None:
    client, physical = moto_tables

    class Conflicting(_Recording):
        """Refuses each write's first attempt, as DynamoDB does while a transaction holds its item
        (``writes`` notes the refused attempts, each then made again)."""

        def __getattr__(self, name: str) -> Any:
            call = getattr(self._client, name)
            if name not in self.WRITES:
                return call

            def refused_once(**kwargs: Any) -> Any:
                if self.writes and self.writes[-1] == (name, _written_keys(kwargs)):
                    self.writes.append(("made again", []))
                    return call(**kwargs)
                self.writes.append((name, _written_keys(kwargs)))
                if name == "transact_write_items":
                    reasons = [
                        {"Code": "TransactionConflict"},
                        *({"Code": "None"} for _ in kwargs["TransactItems"][1:]),
                    ]
                    error = {"Error": {"Code": "TransactionCanceledException"}, "CancellationReasons": reasons}
                    raise client.exceptions.TransactionCanceledException(error, "TransactWriteItems")
                raise client.exceptions.TransactionConflictException(
                    {"Error": {"Code": "TransactionConflictException"}}, "UpdateItem"
                )

            return refused_once

    conflicting = Conflicting(client)
    store = DynamoIntegrationStore(physical["IntegrationsTable"]["TableName"], client=conflicting)
    tenant = _tenant()
    integration = _integration(tenant)
    store.add(integration, limit=10)
    failed = store.note_failure(tenant, integration.id, NOW)
    assert failed is not None and failed.circuit.failures == 1
    reset = store.update(tenant, integration.id, IntegrationChanges.settings(NOW, enabled=False))
    assert reset is not None and reset.circuit == Circuit() and not reset.enabled
    state = f"{integration.id}#state"
    assert conflicting.writes == [
        ("transact_write_items", [COUNTER_ID, integration.id]),
        ("made again", []),
        ("update_item", [state]),
        ("made again", []),
        ("transact_write_items", [integration.id, state]),
        ("made again", []),
    ]


def _fields(integration: Integration) -> dict[str, object]:
    return {name: getattr(integration, name) for name in Integration.__dataclass_fields__}


# ---------------------------------------------------------------------------------- activity
def test_a_created_event_comes_back_whole(stores: Stores) -> None:
    tenant = _tenant()
    lease = NOW + timedelta(minutes=1)
    event = _event(
        tenant, [DeliveryStatus.leased("a", lease), DeliveryStatus.skipped_new("b", "webhook is disabled", NOW)]
    )
    assert stores.activity.create(event) is None
    assert stores.activity.get(tenant, event.id) == event
    assert stores.activity.get(_tenant(), event.id) is None


def test_a_test_deliverys_sample_event_comes_back_marked(stores: Stores) -> None:
    tenant = _tenant()
    event = replace(_event(tenant, [DeliveryStatus("a")], event_type="device-provisioned"), test=True)
    stores.activity.create(event)
    stored = stores.activity.get(tenant, event.id)
    assert stored == event and stored.is_test
    (listed,) = stores.activity.list_events(tenant, 1, 10)
    assert listed.test


def test_creating_an_event_again_changes_nothing_and_returns_what_is_stored(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus.leased("a", NOW + timedelta(minutes=1))])
    stores.activity.create(event)
    delivered = DeliveryStatus("a", state="delivered", attempts=1, status_code=200, updated_at=NOW)
    stores.activity.record(tenant, event.id, [(delivered, Attempt(1, NOW, 12, 200))])
    again = stores.activity.create(event)
    assert again is not None and again.deliveries["a"] == delivered
    assert stores.activity.get(tenant, event.id) == again
    assert [e.id for e in stores.activity.list_events(tenant, 1, 10, "a")] == [event.id]  # listed once


def test_a_lease_is_taken_once_until_it_expires_and_never_on_a_success(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a"), DeliveryStatus("b")])
    stores.activity.create(event)
    assert stores.activity.claim(tenant, event.id, "a", NOW, 30) is Claim.TAKEN
    assert stores.activity.claim(tenant, event.id, "a", NOW + timedelta(seconds=10), 30) is Claim.BUSY
    assert stores.activity.claim(tenant, event.id, "a", NOW + timedelta(seconds=31), 30) is Claim.TAKEN
    stores.activity.record(tenant, event.id, [(DeliveryStatus("b", state="delivered", attempts=1), None)])
    assert stores.activity.claim(tenant, event.id, "b", NOW, 30) is Claim.DONE
    assert stores.activity.claim(tenant, event.id, "missing", NOW, 30) is Claim.DONE
    assert stores.activity.claim(tenant, str(uuid.uuid4()), "a", NOW, 30) is Claim.DONE


def test_a_claim_on_stale_data_says_so_and_is_taken_on_fresh_data(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a")])
    stores.activity.create(event)
    # the first attempt's record lands between a retry's read (0 attempts) and its claim
    retrying = DeliveryStatus("a", state="retrying", attempts=1, error="timeout")
    stores.activity.record(tenant, event.id, [(retrying, Attempt(1, NOW, 1, None, "timeout"))])
    assert stores.activity.claim(tenant, event.id, "a", NOW, 30, seen_attempts=0) is Claim.STALE
    assert stores.activity.claim(tenant, event.id, "a", NOW, 30, seen_attempts=1) is Claim.TAKEN
    assert stores.activity.claim(tenant, event.id, "a", NOW, 30, seen_attempts=1) is Claim.BUSY  # leased
    assert stores.activity.claim(tenant, event.id, "a", NOW, 30, seen_attempts=0) is Claim.STALE  # leased, and stale


def test_records_replace_statuses_and_append_attempts(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a"), DeliveryStatus("b")])
    stores.activity.create(event)
    first = Attempt(1, NOW, 15, 500, "unexpected status code from webhook: 500", "oops")
    retrying = DeliveryStatus("a").after_attempt(first, "retrying", NOW, NOW + timedelta(seconds=5))
    stores.activity.record(tenant, event.id, [(retrying, first)])
    second = Attempt(2, NOW + timedelta(seconds=5), 9, 200, None, "ok")
    delivered = retrying.after_attempt(second, "delivered", NOW + timedelta(seconds=5))
    failed_b = DeliveryStatus("b").after_attempt(Attempt(1, NOW, 3, None, "connection refused"), "failed", NOW)
    stores.activity.record(
        tenant, event.id, [(delivered, second), (failed_b, Attempt(1, NOW, 3, None, "connection refused"))]
    )
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None
    assert stored.deliveries == {"a": delivered, "b": failed_b}
    assert stored.attempts["a"] == (first, second)
    assert stored.attempts["b"] == (Attempt(1, NOW, 3, None, "connection refused"),)


def test_an_attempts_request_headers_round_trip_and_attempts_without_them_have_none(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a")])
    stores.activity.create(event)
    old = Attempt(1, NOW, 15, 503, "unexpected status code from webhook: 503")  # kept without headers
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "devicehooks/1.0",
        "webhook-id": event.id,
        "webhook-timestamp": "1764410000",
        "X-Men-Signature": "ab" * 32,
        "X-Men-Algorithm": "MEN-HMAC-SHA256-Payload",
        "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1,Zm9vYmFy",
    }
    signed = Attempt(2, NOW + timedelta(seconds=5), 9, 200, None, "ok", headers)
    retrying = DeliveryStatus("a").after_attempt(old, "retrying", NOW, NOW + timedelta(seconds=5))
    stores.activity.record(tenant, event.id, [(retrying, old)])
    stores.activity.record(tenant, event.id, [(retrying.after_attempt(signed, "delivered", NOW), signed)])
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None
    first, second = stored.attempts["a"]
    assert first == old and first.headers is None
    assert second == signed and dict(second.headers or {}) == headers


def test_a_late_failure_never_hides_a_success_and_does_not_block_its_siblings(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a"), DeliveryStatus("b")])
    stores.activity.create(event)
    delivered = DeliveryStatus("a", state="delivered", attempts=1, status_code=200)
    stores.activity.record(tenant, event.id, [(delivered, None)])
    late = DeliveryStatus("a", state="retrying", attempts=2, error="timeout")
    b_done = DeliveryStatus("b", state="delivered", attempts=1, status_code=204)
    stores.activity.record(tenant, event.id, [(late, Attempt(2, NOW, 1, None, "timeout")), (b_done, None)])
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None and stored.deliveries == {"a": delivered, "b": b_done}
    stores.activity.record(tenant, str(uuid.uuid4()), [(delivered, None)])  # no such event: nothing, no error


def test_a_delivery_is_reopened_once_for_the_attempts_seen_and_never_while_leased(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a"), DeliveryStatus("b", state="retrying", attempts=1)])
    stores.activity.create(event)
    assert stores.activity.reopen(tenant, event.id, "b", NOW, seen_attempts=0) is False  # it made 1
    assert stores.activity.reopen(tenant, event.id, "b", NOW, seen_attempts=1, from_states=("failed",)) is False
    assert stores.activity.reopen(tenant, event.id, "b", NOW, seen_attempts=1) is True  # retrying: retry now
    assert stores.activity.claim(tenant, event.id, "b", NOW, 30, seen_attempts=1) is Claim.TAKEN
    assert stores.activity.reopen(tenant, event.id, "b", NOW + timedelta(seconds=10), seen_attempts=1) is False
    failed = DeliveryStatus("a", state="failed", attempts=8)
    stores.activity.record(tenant, event.id, [(failed, None)])
    assert stores.activity.reopen(tenant, event.id, "a", NOW, seen_attempts=8, from_states=("failed",)) is True
    assert stores.activity.reopen(tenant, event.id, "a", NOW, seen_attempts=8, from_states=("failed",)) is False
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None
    a = stored.deliveries["a"]
    assert (a.state, a.attempts, a.next_attempt_at, a.lease_until) == ("pending", 8, NOW, None)
    assert stores.activity.reopen(tenant, event.id, "missing", NOW, seen_attempts=0) is False
    assert stores.activity.reopen(tenant, str(uuid.uuid4()), "a", NOW, seen_attempts=0) is False


def test_a_retry_reopens_a_delivery_only_from_a_retryable_state_in_the_write_itself(stores: Stores) -> None:
    """``reopen(..., from_states=RETRYABLE)``: the state is part of the conditional write, so a delivery
    that is delivered is refused even with the attempts and the lease the caller expects."""
    tenant = _tenant()
    statuses = [
        DeliveryStatus("waiting", state="retrying", attempts=1),
        DeliveryStatus("failed", state="failed", attempts=3),
        DeliveryStatus("skipped", state="skipped"),
        DeliveryStatus("queued", state="pending", attempts=1),
        DeliveryStatus("done", state="retrying", attempts=1),
    ]
    event = _event(tenant, statuses)
    stores.activity.create(event)
    # delivered with the attempts the caller saw (only the state tells it from a retrying one)
    done = DeliveryStatus("done", state="delivered", attempts=1, status_code=200, updated_at=NOW)
    stores.activity.record(tenant, event.id, [(done, None)])
    later = NOW + timedelta(seconds=1)
    for status in statuses:
        reopened = stores.activity.reopen(tenant, event.id, status.integration_id, later, status.attempts, RETRYABLE)
        assert reopened is (status.integration_id in {"waiting", "failed", "skipped"}), status.integration_id
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None
    assert stored.deliveries["done"] == done  # nothing written
    assert stored.deliveries["queued"].state == "pending" and stored.deliveries["queued"].next_attempt_at is None
    assert {i: s.state for i, s in stored.deliveries.items() if i != "done"} == dict.fromkeys(
        ["waiting", "failed", "skipped", "queued"], "pending"
    )
    assert stores.activity.reopen(tenant, event.id, "waiting", later, 1, ()) is False  # no state allowed
    # the list filters see the delivered one where it was
    assert [e.id for e in stores.activity.list_events(tenant, 1, 10, "done", EventFilter(state="delivered"))] == [
        event.id
    ]


class _StaleReads:
    """The activity store, but ``get`` answers first with what a page read before (a stale view)."""

    def __init__(self, store: ActivityStore, stale: ActivityEvent) -> None:
        self.store = store
        self.stale: ActivityEvent | None = stale

    def get(self, tenant_id: str, event_id: str) -> ActivityEvent | None:
        stale, self.stale = self.stale, None
        return stale if stale is not None else self.store.get(tenant_id, event_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("attempts", [2, 1], ids=["after-its-retry", "same-attempts"])
def test_a_retry_of_a_delivery_delivered_meanwhile_writes_and_queues_nothing(stores: Stores, attempts: int) -> None:
    """The race of issue 21: "Retry now" on a row still shown as retrying whose scheduled retry has
    just succeeded. The retry reads the delivery as retrying; its conditional write refuses it (the
    state, and the attempts), so nothing is queued and the receiver never gets the event twice."""
    tenant = _tenant()
    webhook = _integration(tenant)
    stores.integrations.add(webhook, 20)
    event = _event(tenant, [DeliveryStatus(webhook.id, state="retrying", attempts=1, error="HTTP 503")])
    stores.activity.create(event)
    stale = stores.activity.get(tenant, event.id)
    assert stale is not None
    # meanwhile the scheduled retry: taken, POSTed, recorded delivered (``same-attempts``: a success
    # recorded without a new attempt count, which only the state condition can refuse)
    assert stores.activity.claim(tenant, event.id, webhook.id, NOW, 30, seen_attempts=1) is Claim.TAKEN
    done = DeliveryStatus(webhook.id, state="delivered", attempts=attempts, status_code=200, updated_at=NOW)
    stores.activity.record(tenant, event.id, [(done, None)])
    queue = MemoryTaskQueue()
    service = DeliveryService(
        stores.integrations,
        _StaleReads(stores.activity, stale),
        queue,
        lambda: pytest.fail("no dispatcher"),
        retention=3600,
        clock=lambda: NOW + timedelta(minutes=5),
    )
    with pytest.raises(Conflict) as refused:
        service.retry(tenant, event.id, webhook.id)
    assert refused.value.message == DELIVERED_ALREADY  # from a fresh read, after the write was refused
    assert queue.scheduled == []
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None and stored.deliveries[webhook.id] == done
    # and without a stale view: refused before any write
    with pytest.raises(Conflict):
        service.retry(tenant, event.id, None)
    assert queue.scheduled == []


class _DeliveredAfterTheRead:
    """The activity store, but one delivery is recorded delivered right after ``webhook_events``
    read the window (its scheduled retry succeeded meanwhile): the reads are stale for it."""

    def __init__(self, store: ActivityStore, event_id: str, done: DeliveryStatus) -> None:
        self.store = store
        self.event_id = event_id
        self.done = done

    def webhook_events(self, *args: Any) -> list[ActivityEvent]:
        events = self.store.webhook_events(*args)
        self.store.record(events[0].tenant_id, self.event_id, [(self.done, None)])
        return events

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_recover_reopens_what_is_failing_never_a_delivery_delivered_since_and_only_once(stores: Stores) -> None:
    """Issue 21: recover sends now every delivery of the window whose last attempt failed (retrying,
    failed) or that is held (retrying, no attempt), in the store's conditional write: one delivered
    after the window was read is not reopened, and a second call finds the rest pending."""
    tenant = _tenant()
    webhook = _integration(tenant)
    stores.integrations.add(webhook, 20)
    hook = webhook.id
    states = {
        "retrying": DeliveryStatus(hook, state="retrying", attempts=1, error="HTTP 500"),
        "held": DeliveryStatus(hook, state="retrying", attempts=0, error="circuit open"),
        "failed": DeliveryStatus(hook, state="failed", attempts=9, error="HTTP 500"),
        "raced": DeliveryStatus(hook, state="retrying", attempts=2, error="HTTP 500"),
        "delivered": DeliveryStatus(hook, state="delivered", attempts=1, status_code=200),
        "skipped": DeliveryStatus(hook, state="skipped", error="webhook is disabled"),
        "pending": DeliveryStatus(hook),
    }
    ids: dict[str, str] = {}
    for n, (name, status) in enumerate(states.items()):
        event = _event(tenant, [status], NOW + timedelta(seconds=n))
        stores.activity.create(event)
        ids[name] = event.id
    done = DeliveryStatus(hook, state="delivered", attempts=3, status_code=200, updated_at=NOW)
    queue = MemoryTaskQueue()

    def service(activity: Any) -> DeliveryService:
        return DeliveryService(
            stores.integrations,
            activity,
            queue,
            lambda: pytest.fail("no dispatcher"),
            retention=3600,
            clock=lambda: NOW + timedelta(minutes=5),
        )

    first = service(_DeliveredAfterTheRead(stores.activity, ids["raced"], done)).recover(tenant, hook, NOW, None)
    assert (first.count, first.already_queued, dict(first.skipped)) == (3, 1, {"delivered": 1, "disabled": 1})
    stored = {name: stores.activity.get(tenant, i) for name, i in ids.items()}
    assert {name: e.deliveries[hook].state for name, e in stored.items() if e is not None} == {
        "retrying": "pending",
        "held": "pending",
        "failed": "pending",
        "raced": "delivered",
        "delivered": "delivered",
        "skipped": "skipped",
        "pending": "pending",
    }
    queued = {t.event_id: t.seen_attempts for t, _ in queue.scheduled}
    # the raced one's task was queued before its write was refused: it saw 2 attempts, the delivery
    # made 3 and is delivered, so its claim is refused and nothing is sent
    assert queued == {ids["retrying"]: 1, ids["held"]: 0, ids["failed"]: 9, ids["raced"]: 2}
    second = service(stores.activity).recover(tenant, hook, NOW, None)
    assert (second.count, second.already_queued, dict(second.skipped)) == (0, 4, {"disabled": 1})
    assert len(queue.scheduled) == 4


def test_a_webhooks_events_of_a_window_come_oldest_first(stores: Stores) -> None:
    tenant = _tenant()
    times = [NOW + timedelta(seconds=n) for n in range(5)]
    events = [
        _event(tenant, [DeliveryStatus("x"), DeliveryStatus("a")] if n % 2 else [DeliveryStatus("a")], t)
        for n, t in enumerate(times)
    ]
    for event in reversed(events):
        stores.activity.create(event)
    stores.activity.create(_event(tenant, [DeliveryStatus("b")], times[2]))  # another webhook's
    stores.activity.create(_event(_tenant(), [DeliveryStatus("a")], times[2]))  # another tenant's
    window = stores.activity.webhook_events(tenant, "a", times[1], times[4], 10)  # since <= time < until
    assert [e.id for e in window] == [e.id for e in events[1:4]]
    assert window[0].deliveries["a"] == DeliveryStatus("a")
    assert [e.id for e in stores.activity.webhook_events(tenant, "a", times[0], times[4], 2)] == [
        e.id for e in events[:2]
    ]
    assert [e.id for e in stores.activity.webhook_events(tenant, "x", NOW, times[4] + timedelta(1), 10)] == [
        events[1].id,
        events[3].id,
    ]
    assert stores.activity.webhook_events(tenant, "a", times[3], times[3], 10) == []


def test_added_deliveries_are_pending_and_listed_under_their_webhook(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a", state="delivered", attempts=1)])
    stores.activity.create(event)
    stores.activity.add_deliveries(tenant, event.id, ["a", "c"])
    stored = stores.activity.get(tenant, event.id)
    assert (
        stored is not None
        and stored.deliveries["a"].state == "delivered"
        and stored.deliveries["c"] == DeliveryStatus("c")
    )
    assert [e.id for e in stores.activity.list_events(tenant, 1, 10, "c")] == [event.id]


def test_events_are_listed_newest_first_in_pages_per_tenant_and_per_webhook(stores: Stores) -> None:
    tenant = _tenant()
    events = [
        _event(
            tenant,
            [DeliveryStatus("a"), DeliveryStatus("b")] if n % 2 else [DeliveryStatus("b")],
            NOW + timedelta(seconds=n),
        )
        for n in range(5)
    ]
    for event in events:
        stores.activity.create(event)
    stores.activity.create(_event(_tenant(), [DeliveryStatus("a")]))
    newest_first = [e.id for e in reversed(events)]
    assert [e.id for e in stores.activity.list_events(tenant, 1, 10)] == newest_first
    assert [e.id for e in stores.activity.list_events(tenant, 2, 2)] == newest_first[2:4]
    assert stores.activity.list_events(tenant, 4, 2) == []
    # "a" is each odd event's first webhook (the event item is indexed), "b" its second (a marker)
    assert [e.id for e in stores.activity.list_events(tenant, 1, 10, "a")] == [events[3].id, events[1].id]
    assert [e.id for e in stores.activity.list_events(tenant, 1, 10, "b")] == newest_first
    listed = stores.activity.list_events(tenant, 1, 1, "b")[0]
    assert listed == stores.activity.get(tenant, listed.id)  # whole events, statuses included


def test_removing_a_tenant_removes_its_events_and_markers_only(stores: Stores) -> None:
    tenant, other = _tenant(), _tenant()
    for n in range(3):
        stores.activity.create(_event(tenant, [DeliveryStatus("a"), DeliveryStatus("b")], NOW + timedelta(seconds=n)))
    kept = _event(other, [DeliveryStatus("a")])
    stores.activity.create(kept)
    assert stores.activity.remove_tenant(tenant) == 3
    assert stores.activity.list_events(tenant, 1, 10) == [] and stores.activity.list_events(tenant, 1, 10, "b") == []
    assert [e.id for e in stores.activity.list_events(other, 1, 10)] == [kept.id]


# ---------------------------------------------------------------------------------- event filters
def _elsewhere(stores: Stores) -> ActivityStore:
    """The same activity log through another store instance (another process: nothing remembered)."""
    if isinstance(stores.activity, DynamoActivityStore):
        return DynamoActivityStore(stores.activity.table_name, stores.activity.client)
    return stores.activity


def _device_event(tenant: str, n: int, hooks: list[str], event_type: str, device: str) -> ActivityEvent:
    data: dict[str, object] = {"id": device}
    if event_type == "device-inventory-changed":
        data = {
            "device_id": device,
            "tenant_id": tenant,
            "inventory": [{"name": "os", "value": "x", "scope": "inventory"}],
        }
    elif event_type == "webhook-test":
        data = {"integration_id": hooks[0] if hooks else "none", "message": "test"}
    event = WebhookEvent(
        id=new_event_id(NOW + timedelta(seconds=n), event_type),
        tenant_id=tenant,
        type=event_type,
        data=data,
        time=NOW + timedelta(seconds=n),
    )  # type: ignore[arg-type]
    leased = [DeliveryStatus.leased(h, NOW + timedelta(seconds=n + 60)) for h in hooks]
    return ActivityEvent.new(event, int(NOW.timestamp()) + 3600, leased)


def _all_pages(
    stores: Stores, tenant: str, per_page: int, integration_id: str | None, only: EventFilter
) -> list[list[str]]:
    pages = []
    for page in range(1, 100):
        found = [e.id for e in stores.activity.list_events(tenant, page, per_page, integration_id, only)]
        if not found:
            return pages
        pages.append(found)
    raise AssertionError("too many pages")


class _Log:
    """The filtered activity log the contract expects: each event's device, type, time and states."""

    def __init__(self, stores: Stores) -> None:
        self.stores, self.tenant = stores, _tenant()
        self.events: list[ActivityEvent] = []
        self.states: dict[str, dict[str, str]] = {}
        self.devices: dict[str, str | None] = {}

    def add(self, n: int, hooks: list[str], event_type: str, device: str) -> ActivityEvent:
        event = _device_event(self.tenant, n, hooks, event_type, device)
        assert self.stores.activity.create(event) is None
        self.events.append(event)
        self.states[event.id] = {h: "pending" for h in hooks}
        self.devices[event.id] = None if event_type == "webhook-test" else device
        return event

    def set(self, event: ActivityEvent, hook: str, state: str, store: ActivityStore | None = None) -> None:
        at = NOW + timedelta(minutes=len(self.states[event.id]) + 5)
        status = DeliveryStatus(hook).after_attempt(
            Attempt(number=1, at=at, status_code=200 if state == "delivered" else 500),
            state,  # type: ignore[arg-type]
            at,
            at if state == "retrying" else None,
        )
        (store or self.stores.activity).record(self.tenant, event.id, [(status, None)])
        if self.states[event.id][hook] != "delivered":  # a success is never overwritten
            self.states[event.id][hook] = state

    def expected(self, integration_id: str | None, only: EventFilter) -> list[str]:
        out = []
        for event in sorted(self.events, key=lambda e: (e.time, e.id), reverse=True):
            states = self.states[event.id]
            if integration_id is not None and integration_id not in states:
                continue
            if only.device_id is not None and self.devices[event.id] != only.device_id:
                continue
            device = self.devices[event.id]
            if only.device_prefix is not None and not (device or "").startswith(only.device_prefix):
                continue
            if only.type is not None and event.type != only.type:
                continue
            if only.since is not None and event.time < only.since:
                continue
            if only.until is not None and event.time >= only.until:
                continue
            if only.state is not None:
                kept = [states[integration_id]] if integration_id is not None else list(states.values())
                if only.state not in kept:
                    continue
            out.append(event.id)
        return out

    def check(self, integration_id: str | None, only: EventFilter, per_page: int = 3) -> list[str]:
        pages = _all_pages(self.stores, self.tenant, per_page, integration_id, only)
        assert all(len(p) == per_page for p in pages[:-1]), (only, integration_id, pages)  # full pages
        listed = [e for p in pages for e in p]
        assert listed == self.expected(integration_id, only), (only, integration_id)  # exact, newest first
        return listed


def _filtered_log(stores: Stores) -> tuple[_Log, str, str]:
    log, a, b = _Log(stores), str(uuid.uuid4()), str(uuid.uuid4())
    types = ["device-provisioned", "device-status-changed", "device-inventory-changed", "device-decommissioned"]
    fan = [[a], [a, b], [b], [b, a], []]
    for n in range(30):
        hooks = fan[n % 5]
        event = log.add(n, hooks, types[n % 4] if n % 7 else "webhook-test", f"dev-{n % 3}")
        store = _elsewhere(stores) if n % 2 else stores.activity  # known and unknown carriers alike
        if n % 3 == 0 and hooks:
            log.set(event, hooks[0], "delivered", store)
        if n % 4 == 1 and len(hooks) == 2:
            log.set(event, hooks[1], "failed", store)
        if n % 5 == 3:
            log.set(event, hooks[0], "retrying", store)
        if n % 6 == 5 and hooks:
            log.set(event, hooks[-1], "skipped", store)
    return log, a, b


def test_events_are_filtered_by_device_exactly_across_pages(stores: Stores) -> None:
    log, a, b = _filtered_log(stores)
    assert log.check(None, EventFilter(device_id="dev-1"))
    assert log.check(None, EventFilter(device_id="dev-2"), per_page=1)
    assert log.check(a, EventFilter(device_id="dev-0"))
    assert log.check(b, EventFilter(device_id="dev-1", state="pending"), per_page=2)
    assert log.check(None, EventFilter(device_id="dev-2", type="device-inventory-changed"), per_page=1)
    assert log.check(None, EventFilter(device_id="nobody")) == []


def test_events_are_filtered_by_device_prefix_exactly_across_pages_case_as_stored(stores: Stores) -> None:
    log, a, b = _Log(stores), str(uuid.uuid4()), str(uuid.uuid4())
    devices = ["dev-041", "dev-042", "DEV-042", "dev-0420", "x-dev-042", "dev-04#2", "dev-04%2", "de"]
    types = ["device-provisioned", "device-status-changed", "device-inventory-changed", "device-decommissioned"]
    for n in range(24):
        event = log.add(n, [[a], [a, b], [b]][n % 3], types[n % 4], devices[n % len(devices)])
        if n % 5 == 0:
            log.set(event, a if n % 3 != 2 else b, "failed")
    other = _Log(stores)  # another tenant whose key starts like these: never in them
    other.tenant = log.tenant + "#V#dev"
    other.add(0, [a], types[0], "-042")
    assert log.check(None, EventFilter(device_prefix="dev-04"), per_page=4)
    assert log.check(None, EventFilter(device_prefix="dev-042"), per_page=2)
    assert log.check(None, EventFilter(device_prefix="dev-04#"), per_page=1)  # ids holding the separator
    assert log.check(None, EventFilter(device_prefix="dev-04%"), per_page=1)
    assert log.check(None, EventFilter(device_prefix="DEV"))  # case as stored
    assert log.check(None, EventFilter(device_prefix="dev-04", type="device-status-changed"), per_page=1)
    assert log.check(a, EventFilter(device_prefix="dev-042"), per_page=1)
    assert log.check(None, EventFilter(device_prefix="dev-04", state="failed"), per_page=1)
    assert log.check(b, EventFilter(device_prefix="d", since=NOW + timedelta(seconds=5)), per_page=3)
    assert log.check(None, EventFilter(device_prefix="nobody")) == []


def test_events_are_filtered_by_state_exactly_across_pages(stores: Stores) -> None:
    log, a, b = _filtered_log(stores)
    for state in ("pending", "retrying", "delivered", "failed", "skipped"):
        log.check(None, EventFilter(state=state))  # type: ignore[arg-type]
        log.check(a, EventFilter(state=state), per_page=2)  # type: ignore[arg-type]
        log.check(b, EventFilter(state=state))  # type: ignore[arg-type]
    assert log.check(None, EventFilter(state="delivered"))
    assert log.check(b, EventFilter(state="failed"))


def test_a_webhooks_waiting_deliveries_are_counted_to_a_cap_with_the_oldest_exact(stores: Stores) -> None:
    log, a, b = _Log(stores), str(uuid.uuid4()), str(uuid.uuid4())
    assert stores.activity.waiting(log.tenant, a) == Waiting()
    types = ["device-provisioned", "device-status-changed", "webhook-test", "device-inventory-changed"]
    events = [log.add(n, [a, b] if n % 2 else [b, a], types[n % 4], f"dev-{n}") for n in range(8)]
    log.set(events[0], b, "retrying")  # another webhook's, older than any of a's: not a's
    log.set(events[1], a, "failed")  # failed, not waiting
    log.set(events[2], a, "delivered")
    log.set(events[3], a, "retrying")  # after a failed attempt (on the marker: a is second)
    held = DeliveryStatus(a).held(NOW + timedelta(minutes=9), "held: the webhook's rate limit is reached", NOW)
    for event in events[4:7]:  # held: retrying without an attempt, of three types
        stores.activity.record(log.tenant, event.id, [(held, None)])
    elsewhere = _elsewhere(stores)
    assert elsewhere.waiting(log.tenant, a) == Waiting(count=4, oldest_at=events[3].time)
    assert elsewhere.waiting(log.tenant, b) == Waiting(count=1, oldest_at=events[0].time)
    # the count stops past the cap ("3+"); the oldest stays exact
    assert elsewhere.waiting(log.tenant, a, cap=3) == Waiting(count=3, more=True, oldest_at=events[3].time)
    assert elsewhere.waiting(log.tenant, a, cap=1) == Waiting(count=1, more=True, oldest_at=events[3].time)
    assert elsewhere.waiting(log.tenant, a, cap=4) == Waiting(count=4, oldest_at=events[3].time)
    # delivered at last: it waits no more, and the oldest is the next one
    log.set(events[3], a, "delivered")
    assert elsewhere.waiting(log.tenant, a) == Waiting(count=3, oldest_at=events[4].time)
    assert elsewhere.waiting(_tenant(), a) == Waiting()


def test_events_are_filtered_by_type_and_time_exactly_across_pages(stores: Stores) -> None:
    log, a, b = _filtered_log(stores)
    for kind in ("device-provisioned", "device-status-changed", "device-inventory-changed", "webhook-test"):
        assert log.check(None, EventFilter(type=kind), per_page=2)
        log.check(a, EventFilter(type=kind))
    window = EventFilter(since=NOW + timedelta(seconds=4), until=NOW + timedelta(seconds=21))
    assert len(log.check(None, window, per_page=4)) == 17  # from <= time < to
    log.check(a, window)
    log.check(None, replace(window, type="device-status-changed"))
    log.check(b, replace(window, state="pending", type="device-inventory-changed"), per_page=1)
    log.check(None, replace(window, device_id="dev-0", state="delivered"), per_page=1)
    log.check(a, EventFilter(until=NOW + timedelta(seconds=10)))
    log.check(None, EventFilter(since=NOW + timedelta(seconds=25)))
    # the widest window a time can say, years 1 to 9999, and one before year 1000 (whose keys sort before 2026's)
    widest = EventFilter(since=datetime(1, 1, 1, tzinfo=UTC), until=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert len(log.check(None, widest, per_page=7)) == 30
    log.check(b, replace(widest, device_id="dev-1"))
    ancient = EventFilter(until=datetime(999, 1, 2, tzinfo=UTC))
    assert log.check(None, ancient) == [] and log.check(None, replace(ancient, type="device-provisioned")) == []


def test_a_reopened_or_added_delivery_moves_to_pending_in_the_filters(stores: Stores) -> None:
    log, a, b = _Log(stores), str(uuid.uuid4()), str(uuid.uuid4())
    two = log.add(1, [a, b], "device-provisioned", "dev-x")
    elsewhere = _elsewhere(stores)
    at = NOW + timedelta(minutes=1)
    failed = [
        (DeliveryStatus(h).after_attempt(Attempt(number=1, at=at, status_code=500), "failed", at), None) for h in (b, a)
    ]
    elsewhere.record(log.tenant, two.id, failed)  # together, the carrier unknown (and not guessed)
    log.states[two.id] = {a: "failed", b: "failed"}
    log.check(a, EventFilter(state="failed"))
    log.check(b, EventFilter(state="failed"))
    log.check(None, EventFilter(state="pending"))
    for hook in (a, b):
        assert elsewhere.reopen(log.tenant, two.id, hook, NOW + timedelta(hours=1), 1, ("failed",))
        log.states[two.id][hook] = "pending"
    log.check(None, EventFilter(state="failed"))
    log.check(a, EventFilter(state="pending"))
    log.check(b, EventFilter(state="pending"))
    none = log.add(2, [], "device-decommissioned", "dev-x")
    log.check(None, EventFilter(type="device-decommissioned"))  # to no webhook: listed by its type
    stores.activity.add_deliveries(log.tenant, none.id, [b])
    log.states[none.id] = {b: "pending"}
    log.check(b, EventFilter(state="pending", device_id="dev-x"))
    log.check(None, EventFilter(type="device-decommissioned"))


# Ids may hold "#", the separator of the keys' parts (Mender allows it): no two tenants, events or
# webhooks may share a key, nor one id's key be the prefix of another's.
def test_a_device_filter_lists_its_own_tenants_events_whatever_the_ids_hold(stores: Stores) -> None:
    devices = {"acme": "d#V#e", "acme#V#d": "e", "acme%23V%23d": "e"}  # once one by_device partition
    for tenant in devices:
        stores.activity.remove_tenant(tenant)
    mine: dict[str, list[str]] = {tenant: [] for tenant in devices}
    for n in range(7):
        for k, (tenant, device) in enumerate(devices.items()):
            event = _device_event(tenant, 3 * n + k, ["h#1"], "device-provisioned", device)
            assert stores.activity.create(event) is None
            mine[tenant].insert(0, event.id)  # newest first
    for tenant, device in devices.items():
        only = EventFilter(device_id=device)
        assert [e.id for e in stores.activity.list_events(tenant, 1, 1, None, only)] == mine[tenant][:1]
        assert _all_pages(stores, tenant, 3, None, only) == [mine[tenant][:3], mine[tenant][3:6], mine[tenant][6:]]
        assert _all_pages(stores, tenant, 2, "h#1", replace(only, state="pending")) == [
            mine[tenant][i : i + 2] for i in range(0, 7, 2)
        ]
        assert [e.id for e in stores.activity.list_events(tenant, 1, 10)] == mine[tenant]
    assert stores.activity.list_events("acme", 1, 10, None, EventFilter(device_id="e")) == []
    assert stores.activity.list_events("acme#V#d", 1, 10, None, EventFilter(device_id="d#V#e")) == []
    for tenant in devices:
        assert stores.activity.remove_tenant(tenant) == 7


def test_webhook_listings_and_state_filters_keep_to_their_webhook_whatever_the_ids_hold(stores: Stores) -> None:
    # "acme" + "x#I#y" and "acme#I#x" + "y" once shared a by_webhook partition; "x#I#y" and
    # "x%23I%23y" would share one were only "#" escaped; "x" is a prefix of them
    hooks = {"acme": ["x#I#y", "x%23I%23y", "x"], "acme#I#x": ["y", "x#I#y"]}
    for tenant in hooks:
        stores.activity.remove_tenant(tenant)
    logs = {tenant: _Log(stores) for tenant in hooks}
    events: dict[tuple[str, str], list[str]] = {}
    for n in range(10):
        for k, (tenant, ids) in enumerate(hooks.items()):
            log = logs[tenant]
            log.tenant = tenant
            fan = [ids[n % len(ids)], ids[(n + 1) % len(ids)]][: 1 + n % 2]  # the second by a marker
            event = log.add(2 * n + k, fan, "device-provisioned" if n % 3 else "device-decommissioned", f"d#{n}")
            store = _elsewhere(stores) if n % 4 > 1 else stores.activity  # the carrier known or read
            log.set(event, fan[-1], "delivered" if n % 3 else "failed", store)
            for hook in fan:
                events.setdefault((tenant, hook), []).append(event.id)
    for tenant, log in logs.items():
        for hook in hooks[tenant]:
            assert log.check(hook, EventFilter(), per_page=2) == events[tenant, hook][::-1]
            for state in ("pending", "delivered", "failed"):
                log.check(hook, EventFilter(state=state), per_page=1)  # type: ignore[arg-type]
            log.check(hook, EventFilter(type="device-decommissioned"), per_page=1)
            window = stores.activity.webhook_events(tenant, hook, NOW, NOW + timedelta(hours=1), 100)
            assert [e.id for e in window] == events[tenant, hook]
        for state in ("pending", "delivered", "failed"):
            log.check(None, EventFilter(state=state), per_page=2)  # type: ignore[arg-type]
        log.check(None, EventFilter(device_id="d#3"))
    assert stores.activity.list_events("acme", 1, 10, "y") == []
    assert stores.activity.list_events("acme#I#x", 1, 10, "x%23I%23y") == []
    for tenant in hooks:
        assert stores.activity.remove_tenant(tenant) == 10


# ---------------------------------------------------------------------------------- webhook health
def test_attempts_are_counted_per_webhook_and_hour_the_latest_attempt_last(stores: Stores) -> None:
    tenant, hook = _tenant(), str(uuid.uuid4())
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    ok = Attempt(number=1, at=hour + timedelta(minutes=30), status_code=204)
    bad = Attempt(number=2, at=hour + timedelta(minutes=10), status_code=503, error="HTTP 503")
    late = HourCount(hour=hour).plus(ok, True).plus(ok, True)
    early = HourCount(hour=hour).plus(bad, False)
    stores.activity.count_attempts(tenant, hook, late, 0)
    stores.activity.count_attempts(tenant, hook, early, 0)  # written after, but its attempt is older
    before = HourCount(hour=hour - timedelta(hours=3)).plus(replace(bad, at=hour - timedelta(hours=3)), False)
    stores.activity.count_attempts(tenant, hook, before, 0)
    stores.activity.count_attempts(tenant, str(uuid.uuid4()), late, 0)  # another webhook
    after = HourCount(hour=hour + timedelta(hours=1)).plus(replace(ok, at=hour + timedelta(hours=1)), True)
    stores.activity.count_attempts(tenant, hook, after, 0)
    counted = stores.activity.hour_counts(tenant, hook, NOW, 24)
    assert [(c.hour, c.delivered, c.failed) for c in counted] == [(hour, 2, 1), (hour - timedelta(hours=3), 0, 1)]
    assert (counted[0].last_at, counted[0].last_delivered, counted[0].last_status_code) == (ok.at, True, 204)
    assert (counted[1].last_delivered, counted[1].last_status_code, counted[1].last_error) == (False, 503, "HTTP 503")
    assert len(stores.activity.hour_counts(tenant, hook, NOW + timedelta(hours=1), 1)) == 1
    assert stores.activity.hour_counts(_tenant(), hook, NOW, 24) == []


def test_counts_taken_back_leave_the_hours_last_attempt(stores: Stores) -> None:
    # the health counter's take-back (services/health_counter.py): a batch that comes back counts
    # these attempts again, with the same last attempt
    tenant, hook = _tenant(), str(uuid.uuid4())
    hour = NOW.replace(minute=0, second=0, microsecond=0)
    ok = Attempt(number=1, at=hour + timedelta(minutes=30), status_code=204)
    bad = Attempt(number=2, at=hour + timedelta(minutes=40), status_code=503, error="HTTP 503")
    stores.activity.count_attempts(tenant, hook, HourCount(hour=hour).plus(ok, True).plus(ok, True).plus(bad, False), 0)
    stores.activity.uncount_attempts(tenant, hook, hour, 1, 1)
    [counted] = stores.activity.hour_counts(tenant, hook, NOW, 24)
    assert (counted.delivered, counted.failed, counted.last_status_code, counted.last_at) == (1, 0, 503, bad.at)


def test_hour_counts_keep_to_their_webhook_whatever_its_id_holds(stores: Stores) -> None:
    # unescaped, "h"'s hours were a prefix of the others' keys ("H#h#..."), and "h#x" and "h%23x" one key
    tenant, hour = _tenant() + "#H#h", NOW.replace(minute=0, second=0, microsecond=0)
    hooks = ["h", "h#", "h#x", "h%23x", "h#" + hour.strftime("%Y-%m-%dT%H"), "h%"]
    ok = Attempt(number=1, at=hour + timedelta(minutes=5), status_code=204)
    for k, hook in enumerate(hooks):
        counts = HourCount(hour=hour)
        for _ in range(k + 1):
            counts = counts.plus(ok, True)
        stores.activity.count_attempts(tenant, hook, counts, 0)
        earlier = HourCount(hour=hour - timedelta(hours=k + 1)).plus(
            replace(ok, at=hour - timedelta(hours=k + 1)), False
        )
        stores.activity.count_attempts(tenant, hook, earlier, 0)
    for k, hook in enumerate(hooks):
        counted = stores.activity.hour_counts(tenant, hook, NOW, 24)
        assert [(c.hour, c.delivered, c.failed) for c in counted] == [
            (hour, k + 1, 0),
            (hour - timedelta(hours=k + 1), 0, 1),
        ], hook
    assert stores.activity.hour_counts(tenant.removesuffix("#H#h"), "h", NOW, 24) == []
    assert stores.activity.hour_counts(tenant, "h#h", NOW, 24) == []


# ------------------------------------------------------------------------- bounded event items
def _big_event(tenant: str, integration_ids: list[str], size: int = BODY_BYTES) -> ActivityEvent:
    """An event whose body is exactly ``size`` bytes (240 KiB: the largest an event may be)."""
    at = NOW
    data: dict[str, Any] = {"id": "dev-1", "pad": ""}
    plain = WebhookEvent(
        id=new_event_id(at, "device-decommissioned"), tenant_id=tenant, type="device-decommissioned", data=data, time=at
    )  # type: ignore[arg-type]
    data["pad"] = "x" * (size - len(plain.body()))
    event = replace(plain, data=data)
    assert len(event.body()) == size
    statuses = [DeliveryStatus(i) for i in integration_ids]
    return ActivityEvent.new(event, int(at.timestamp()) + 3600, statuses)


def _worst_attempt(number: int, event_id: str) -> Attempt:
    """An attempt with everything at its largest: a binary error body (each byte U+FFFD, 3 bytes as
    UTF-8), a long error, the headers of a signed request during a secret rotation and more."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "devicehooks/1.0",
        "webhook-id": event_id,
        "webhook-timestamp": "1764410000",
        "X-Men-Signature": "ab" * 32,
        "X-Men-Algorithm": "MEN-HMAC-SHA256-Payload",
        "webhook-signature": "v1," + "K" * 44 + " v1," + "Z" * 44,
        **{f"X-Extra-{n}": "v" * 100 for n in range(20)},
    }
    return Attempt(number, NOW + timedelta(seconds=number), 10_000, 500, "e" * 2000, "\ufffd" * 256, headers)


def _stored_size(stores: Stores, tenant: str, event_id: str) -> int | None:
    """The event item's size by DynamoDB's rules (None on the memory store)."""
    if not isinstance(stores.activity, DynamoActivityStore):
        return None
    from bench.dynamometer import item_size

    store = stores.activity
    raw = store.client.get_item(TableName=store.table_name, Key=store._key(tenant, event_id))["Item"]
    return item_size(raw)


def test_a_deliverys_log_keeps_its_first_and_latest_attempts_and_says_how_many_it_left_out(
    stores: Stores,
) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a"), DeliveryStatus("b")])
    stores.activity.create(event)
    status = DeliveryStatus("a")
    for number in range(1, 11):
        attempt = Attempt(number, NOW + timedelta(seconds=number), 5, 503, "unexpected status code from webhook: 503")
        status = status.after_attempt(attempt, "retrying", NOW, NOW + timedelta(seconds=number))
        stores.activity.record(tenant, event.id, [(status, attempt)], deliveries=2)
        stored = stores.activity.get(tenant, event.id)
        assert stored is not None
        numbers = [a.number for a in stored.attempts["a"]]
        assert numbers == ([1, *range(max(2, number - KEEP_MAX + 2), number + 1)] if number > 1 else [1])
        assert len(numbers) == min(number, KEEP_MAX)
        assert dropped(stored.deliveries["a"], stored.attempts["a"]) == max(0, number - KEEP_MAX)
    # an event to as many webhooks as a tenant may have keeps only each delivery's latest attempt,
    # without its headers
    crowd = _event(tenant, [DeliveryStatus("a")])
    stores.activity.create(crowd)
    status = DeliveryStatus("a")
    for number in range(1, 4):
        attempt = _worst_attempt(number, crowd.id)
        status = status.after_attempt(attempt, "retrying", NOW, NOW)
        stores.activity.record(tenant, crowd.id, [(status, attempt)], deliveries=99)
    stored = stores.activity.get(tenant, crowd.id)
    assert stored is not None
    (latest,) = stored.attempts["a"]
    assert (latest.number, latest.headers, latest.status_code) == (3, None, 500)
    assert dropped(stored.deliveries["a"], stored.attempts["a"]) == 2


def test_what_an_attempt_keeps_is_capped_as_stored(stores: Stores) -> None:
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a")])
    stores.activity.create(event)
    attempt = _worst_attempt(1, event.id)
    status = DeliveryStatus("a").after_attempt(attempt, "retrying", NOW, NOW, error="x" * 5000)
    stores.activity.record(tenant, event.id, [(status, attempt)], deliveries=1)
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None
    (kept,) = stored.attempts["a"]
    assert kept.response_body == "\ufffd" * (SNIPPET_BYTES // 3)  # 256 bytes as stored, not 768
    assert len((kept.error or "").encode()) == ERROR_BYTES
    assert len((stored.deliveries["a"].error or "").encode()) == ERROR_BYTES
    headers = dict(kept.headers or {})
    assert sum(len(k) + len(v) for k, v in headers.items()) <= HEADER_BYTES
    # the signature headers come first and are kept whole; the extras only while they fit
    assert headers["webhook-signature"] == attempt.headers["webhook-signature"]  # type: ignore[index]
    assert headers["X-Men-Signature"] == "ab" * 32


def test_an_event_of_240_kib_to_20_webhooks_redelivered_again_and_again_stays_bounded(stores: Stores) -> None:
    """The issue's case: every attempt at its largest, 20 webhooks, 12 rounds (an attempt each, then
    a redelivery): every claim is taken, every attempt recorded (as the POST it stands for), every
    reopen done; the item never grows past the bound's worst case."""
    tenant = _tenant()
    webhooks = [str(uuid.uuid4()) for _ in range(20)]
    event = _big_event(tenant, webhooks)
    assert stores.activity.create(event) is None
    statuses = {i: DeliveryStatus(i) for i in webhooks}
    sizes = []
    rounds = 12
    for n in range(1, rounds + 1):
        at = NOW + timedelta(minutes=n)
        updates = []
        for i in webhooks:  # the POSTs: each one leased first
            assert stores.activity.claim(tenant, event.id, i, at, 30, seen_attempts=n - 1) is Claim.TAKEN
            attempt = _worst_attempt(n, event.id)
            statuses[i] = statuses[i].after_attempt(attempt, "failed", at)
            updates.append((statuses[i], attempt))
        stores.activity.record(tenant, event.id, updates[:10], deliveries=20)  # as they finish together
        for update in updates[10:]:
            stores.activity.record(tenant, event.id, [update], deliveries=20)  # or one by one
        for i in webhooks:  # POST /events/{id}/redeliver
            assert stores.activity.reopen(tenant, event.id, i, at + timedelta(minutes=1), seen_attempts=n) is True
        size = _stored_size(stores, tenant, event.id)
        if size is not None:
            sizes.append(size)
    stored = stores.activity.get(tenant, event.id)
    assert stored is not None
    keep = bound_for(20).keep
    for i in webhooks:
        assert stored.deliveries[i].attempts == rounds  # every POST recorded
        assert [a.number for a in stored.attempts[i]] == [1, *range(rounds - keep + 2, rounds + 1)]
        assert dropped(stored.deliveries[i], stored.attempts[i]) == rounds - keep
    if sizes:
        assert max(sizes) <= worst_case_bytes(20) <= TARGET_BYTES
        assert max(sizes) > BODY_BYTES + 20 * keep * 700  # the attempts were at their largest


class _Refusing:
    """A DynamoDB client that refuses, as DynamoDB does an item grown past 400 KB, the UpdateItem
    calls ``refuse`` picks (an item from before the bounds: the fallbacks' only way there)."""

    def __init__(self, client: Any, refuse: Any) -> None:
        self._client = client
        self.refuse = refuse

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_item(self, **kwargs: Any) -> Any:
        if self.refuse(kwargs):
            from botocore.exceptions import ClientError

            error = {
                "Code": "ValidationException",
                "Message": "Item size to update has exceeded the maximum allowed size",
            }
            raise ClientError({"Error": error}, "UpdateItem")
        return self._client.update_item(**kwargs)


def test_on_dynamodb_an_item_too_large_records_what_it_can_and_refuses_a_reopen_clearly(stores: Stores) -> None:
    """An item that cannot grow (written before the bounds, near DynamoDB's limit): a record after a
    POST still counts the attempt (bare, or in the status alone), never an unexplained error; a
    reopen (a redelivery) and a lease are refused as :class:`ItemTooLarge`, before anything is sent."""
    if not isinstance(stores.activity, DynamoActivityStore):
        pytest.skip("DynamoDB only: the memory store has no item size")
    tenant = _tenant()
    event = _event(tenant, [DeliveryStatus("a"), DeliveryStatus("b")])
    assert stores.activity.create(event) is None
    client = _Refusing(stores.activity.client, lambda kwargs: False)
    store = DynamoActivityStore(stores.activity.table_name, client)

    def full(kwargs: dict[str, Any]) -> bool:  # refuses an attempt with its headers or snippet
        return any(
            "headers" in str(v) or "response_body" in str(v) for v in kwargs["ExpressionAttributeValues"].values()
        )

    client.refuse = full
    first = _worst_attempt(1, event.id)
    status_a = DeliveryStatus("a").after_attempt(first, "retrying", NOW, NOW)
    status_b = DeliveryStatus("b").after_attempt(first, "retrying", NOW, NOW)
    store.record(tenant, event.id, [(status_a, first), (status_b, first)], deliveries=2)  # no error
    stored = store.get(tenant, event.id)
    assert stored is not None
    for i in ("a", "b"):
        assert stored.deliveries[i].attempts == 1  # counted: its retry sees it, never a duplicate
        (bare,) = stored.attempts[i]
        assert (bare.number, bare.status_code, bare.headers, bare.response_body) == (1, 500, None, None)

    client.refuse = lambda kwargs: "attempt_log" in kwargs["UpdateExpression"]  # no attempt fits at all
    second = replace(first, number=2)
    store.record(tenant, event.id, [(status_a.after_attempt(second, "retrying", NOW, NOW), second)], deliveries=2)
    stored = store.get(tenant, event.id)
    assert stored is not None
    assert stored.deliveries["a"].attempts == 2 and [a.number for a in stored.attempts["a"]] == [1]
    assert dropped(stored.deliveries["a"], stored.attempts["a"]) == 1  # shown as left out

    client.refuse = lambda kwargs: True  # nothing fits
    with pytest.raises(ItemTooLarge):  # a redelivery: refused before anything is queued or sent
        store.reopen(tenant, event.id, "a", NOW + timedelta(hours=1), seen_attempts=2)
    with pytest.raises(ItemTooLarge):  # a retry: not leased, so not POSTed
        store.claim(tenant, event.id, "a", NOW + timedelta(hours=1), 30, seen_attempts=2)
    with pytest.raises(ItemTooLarge):  # not even the status: a clear error, never a bare ClientError
        store.record(tenant, event.id, [(status_a, replace(first, number=3))], deliveries=2)
