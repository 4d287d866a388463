"""The Activity page across all of a tenant's webhooks (#/activity), in headless Chromium against a real
``devicehooks local`` stack and a real receiver: each row names its webhooks (a deleted one by its id),
the device search matches the start of the id as written, across pages, and the event page's device
links to it. The stack, the browser and the watchdog are test_ui.py's (conftest.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from devicehooks_dev.local.process import RunningStack
from tests.browser.test_ui import (
    MANAGEMENT,
    POLL_TIMEOUT,
    Receiver,
    Session,
    _axe_clean,
    _create_webhook,
    _headers,
    _no_horizontal_overflow,
    _no_stray_text,
    _provision,
    _sign_in,
    _tenant,
    _wait_for,
)

pytestmark = pytest.mark.browser


@dataclass
class Fleet:
    tenant: str
    dashboard: str  # "Fleet dashboard": every event
    bare: str  # no description: named by its URL's host
    gone: str  # "Old receiver", deleted after its deliveries
    host: str
    events: list[dict[str, Any]]  # newest first


@pytest.fixture(scope="module")
def fleet(stack: RunningStack, receiver: Receiver) -> Fleet:
    """24 events of one tenant: 2 to one webhook (DEV-042, dev-050), then 22 of dev-041 and dev-042 to three,
    one of which is then deleted."""
    tenant = _tenant()
    dashboard = _create_webhook(stack, tenant, receiver.hook(f"/fleet/{tenant}/a"), description="Fleet dashboard")
    _provision(stack, tenant, "DEV-042")
    _provision(stack, tenant, "dev-050")
    # delivered before the others exist (an event goes to the webhooks there are when it is dispatched)
    first = f"/fleet/{tenant}/a"
    _wait_for(lambda: len([r for r in receiver.requests if r["path"] == first]) == 2, "the first two events", 30)
    gone = _create_webhook(stack, tenant, receiver.hook(f"/fleet/{tenant}/c"), description="Old receiver")
    bare = _create_webhook(stack, tenant, receiver.hook(f"/fleet/{tenant}/b"))
    for n in range(22):
        _provision(stack, tenant, f"dev-04{1 + n % 2}")

    def settled() -> list[dict[str, Any]] | None:
        listed = requests.get(
            f"{stack.url}{MANAGEMENT}/events", params={"per_page": 50}, headers=_headers(stack, tenant), timeout=10
        )
        assert listed.status_code == 200, listed.text
        events = listed.json()
        states = [s["state"] for e in events for s in e.get("delivery_statuses") or []]
        return events if len(events) == 24 and len(states) == 2 + 22 * 3 and set(states) == {"delivered"} else None

    events = _wait_for(settled, "24 events delivered", 60)
    removed = requests.delete(
        f"{stack.url}{MANAGEMENT}/integrations/{gone}", headers=_headers(stack, tenant), timeout=10
    )
    assert removed.status_code == 204, removed.text
    return Fleet(tenant, dashboard, bare, gone, receiver.url.split("//", 1)[1], events)


def test_every_webhooks_events_on_one_page_and_the_device_found_by_the_start_of_its_id(
    ui: Session, stack: RunningStack, fleet: Fleet
) -> None:
    page = ui.page
    _sign_in(ui, stack, fleet.tenant)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Activity").click()
    expect(page).to_have_url(re.compile(r"#/activity$"))
    expect(page.get_by_role("heading", name="Activity", exact=True)).to_be_visible()
    rows = page.locator("table.activity tbody tr")
    expect(rows).to_have_count(20, timeout=POLL_TIMEOUT)
    # the newest event went to three webhooks: each named, in the list's order, the deleted one by its id, last
    newest = rows.first
    expect(newest).to_contain_text("dev-042")
    deliveries = newest.locator("ul.deliveries li")
    expect(deliveries).to_have_count(3)
    expect(deliveries.last).to_contain_text(f"Deleted webhook {fleet.gone}")
    expect(deliveries.filter(has_text="Fleet dashboard")).to_contain_text("Delivered")
    expect(deliveries.filter(has_text=fleet.host)).to_contain_text("Delivered")
    expect(deliveries.filter(has_text=f"Deleted webhook {fleet.gone}")).to_contain_text("Delivered")
    expect(page.get_by_role("link", name="Activity")).to_have_attribute("aria-current", "page")
    _no_stray_text(page)
    _axe_clean(page, "activity across webhooks")

    # the oldest two, on page 2, went to the one webhook there was
    page.get_by_role("button", name="Next page").click()
    expect(page).to_have_url(re.compile(r"#/activity\?page=2$"))
    expect(rows).to_have_count(4)
    expect(rows.last).to_contain_text("DEV-042")
    expect(rows.last.locator("ul.deliveries li")).to_have_count(1)
    expect(rows.last.locator("ul.deliveries")).to_contain_text("Fleet dashboard")

    # the device search matches the start of the id, upper and lower case as written, across pages
    search = page.get_by_label("Device ID starts with")
    expect(search).to_have_accessible_description(re.compile("start of the device ID"))
    search.fill("dev-04")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"#/activity\?device=dev-04$"))
    pager = page.get_by_role("navigation", name="Activity pages")
    expect(pager).to_contain_text("Page 1 · events 1–20 · more on the next page · filtered")
    expect(rows).to_have_count(20)
    expect(page.get_by_text("Showing all events of devices whose ID starts with dev-04.")).to_be_visible()
    devices = rows.locator("td.device")
    assert all(d in ("dev-041", "dev-042") for d in devices.all_inner_texts())
    _axe_clean(page, "activity searched by device")
    page.get_by_role("button", name="Next page").click()
    expect(page).to_have_url(re.compile(r"#/activity\?device=dev-04&page=2$"))
    expect(pager).to_contain_text("Page 2 · events 21–22 · last page · filtered")
    expect(rows).to_have_count(2)
    assert sorted(devices.all_inner_texts()) == ["dev-041", "dev-042"]
    expect(page.locator("table.activity")).not_to_contain_text("DEV-042")
    expect(page.locator("table.activity")).not_to_contain_text("dev-050")

    # the address keeps the search and the page: reload, then Back
    page.reload()
    expect(pager).to_contain_text("Page 2 · events 21–22 · last page · filtered", timeout=POLL_TIMEOUT)
    expect(page.get_by_label("Device ID starts with")).to_have_value("dev-04")
    page.go_back()
    expect(page).to_have_url(re.compile(r"#/activity\?device=dev-04$"))
    expect(rows).to_have_count(20)
    # and a webhook to choose: the bare one's events (22, all of dev-04…), with the other filters
    page.get_by_label("Webhook", exact=True).select_option(fleet.bare)
    page.get_by_label("Device ID starts with").fill("DEV")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(rf"#/activity\?device=DEV&webhook={fleet.bare}$"))
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    expect(page.get_by_text(f"Showing all events of devices whose ID starts with DEV to {fleet.host}.")).to_be_visible()
    ui.assert_clean()


def test_the_event_pages_device_leads_to_its_events_on_every_webhook(
    ui: Session, stack: RunningStack, fleet: Fleet
) -> None:
    page = ui.page
    _sign_in(ui, stack, fleet.tenant, "/#/activity?device=dev-042")
    rows = page.locator("table.activity tbody tr")
    expect(rows).to_have_count(11, timeout=POLL_TIMEOUT)  # dev-042's, not DEV-042's
    newest = next(e for e in fleet.events if e["data"]["id"] == "dev-042")
    rows.first.get_by_role("button", name=re.compile(r"^View details for Device provisioned, device dev-042, ")).click()
    expect(page).to_have_url(re.compile(rf"#/integrations/[0-9a-f-]+/events/{newest['id']}$"))
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    link = page.get_by_role("link", name="dev-042", exact=True)
    expect(link).to_be_visible(timeout=POLL_TIMEOUT)
    _axe_clean(page, "event details with its device's link")

    # the DEV-042 event's device leads to its own events: the same id, case as written
    oldest = fleet.events[-1]
    assert oldest["data"]["id"] == "DEV-042"
    ui.open(f"/#/integrations/{fleet.dashboard}/events/{oldest['id']}")
    page.get_by_role("link", name="DEV-042", exact=True).click()
    expect(page).to_have_url(re.compile(r"#/activity\?device=DEV-042$"))
    expect(page.get_by_label("Device ID starts with")).to_have_value("DEV-042")
    expect(rows).to_have_count(1, timeout=POLL_TIMEOUT)
    expect(rows.first).to_contain_text("DEV-042")
    expect(page.get_by_text("Showing all events of devices whose ID starts with DEV-042.")).to_be_visible()
    _axe_clean(page, "activity of one device")
    page.go_back()
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    ui.assert_clean()


def test_the_activity_page_at_360_px(narrow: Session, stack: RunningStack, fleet: Fleet) -> None:
    """One card per event, each webhook's delivery under it, and nothing wider than the screen."""
    page = narrow.page
    _sign_in(narrow, stack, fleet.tenant, "/#/activity?device=dev-04")
    rows = page.locator("table.activity tbody tr")
    expect(rows).to_have_count(20, timeout=POLL_TIMEOUT)
    expect(rows.first.locator("ul.deliveries li")).to_have_count(3)
    expect(page.get_by_role("link", name="Activity")).to_be_visible()
    _no_horizontal_overflow(page)
    _axe_clean(page, "activity across webhooks at 360 px")
    narrow.assert_clean()
