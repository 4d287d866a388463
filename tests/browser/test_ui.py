"""The web UI in headless Chromium against a real ``devicehooks local`` stack and a real receiver.

Every test fails on a JavaScript error, a failed request or a 5xx answer seen by the page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, expect, sync_playwright

from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack
from tests.conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DEVICEHOOKS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MANAGEMENT = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"
SCREENSHOTS = ROOT / "docs" / "screenshots"
# axe-core (MPL-2.0), as the axe-playwright-python package ships it: run in the tests, never served
AXE = resources.files("axe_playwright_python") / "axe.min.js"
TIMEOUT = 10_000  # ms, for anything the UI shows after one API call
POLL_TIMEOUT = 25_000  # ms, for what may need the Activity tab's 10 s poll
STRAY = re.compile(r"\b(null|undefined|NaN)\b|\[object Object\]")  # a missing value rendered as text
T = TypeVar("T")
CIRCUIT_OPENS_WITHIN = 20.0  # s: 5 failed deliveries (retries after 5 s add more) open the circuit


# ---------------------------------------------------------------------------- a webhook receiver
@dataclass
class Receiver:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # /switch/<name> answers codes[name] (200 when unset): a test turns a failing endpoint good
    codes: dict[str, int] = field(default_factory=dict)

    def hook(self, path: str = "/hook") -> str:
        return self.url + path


def _handler(received: list[dict[str, Any]], codes: dict[str, int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append({"path": self.path, "headers": dict(self.headers), "body": body})
            # /status/<code> answers that code; anything else is a 200 (a query string aside)
            parts = self.path.split("?", 1)[0].strip("/").split("/")
            code = int(parts[1]) if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit() else 200
            if len(parts) == 2 and parts[0] == "switch":
                code = codes.get(parts[1], 200)
            answer = b'{"received":true}' if code == 200 else b'{"error":"nope"}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    return Handler


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    received: list[dict[str, Any]] = []
    codes: dict[str, int] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received, codes))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received, codes)
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------- the stack and the browser
# the health counter's batches gathered for a second, not the template's 10: the health figures
# the pages show follow the deliveries within about a second (they lag by the stream's batch)
FAST_HEALTH = {"DEVICEHOOKS_LOCAL_STREAM_WINDOW": "1"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("browser"), FAST_HEALTH)
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def short_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A second stack whose deliveries fail for good quickly (one retry, after 1 s), and where a
    tenant may have 99 webhooks (the paged list)."""
    running = start_stack(
        tmp_path_factory.mktemp("browser-short"),
        {"DEVICEHOOKS_RETRY_SCHEDULE": "1", "DEVICEHOOKS_MAX_INTEGRATIONS": "99", **FAST_HEALTH},
    )
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set DEVICEHOOKS_CHROMIUM)")
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield launched
    launched.close()


@dataclass
class Session:
    """A page whose JavaScript errors, failed requests and 5xx answers are recorded."""

    context: BrowserContext
    page: Page
    base: str
    problems: list[str] = field(default_factory=list)

    def open(self, path: str = "/") -> None:
        self.page.goto(self.base + path)

    def assert_clean(self) -> None:
        assert self.problems == [], "\n".join(self.problems)


def _request_failed(session: Session, request: Any) -> None:
    # A read cancelled by the browser (net::ERR_ABORTED) is no failure of the page's: the favicon,
    # fetched in the background, or a webhook's health still loading in the list when the test
    # reloads or signs out. A server or network failure has another code.
    if request.method == "GET" and "ERR_ABORTED" in str(request.failure):
        return
    session.problems.append(f"request failed: {request.method} {request.url} {request.failure}")


def _new_session(
    browser: Browser, stack: RunningStack, width: int, height: int, timezone: str | None = None
) -> Session:
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=stack.url, timezone_id=timezone)
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    session = Session(context, page, stack.url)
    page.on("pageerror", lambda error: session.problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: _request_failed(session, request))
    page.on(
        "response",
        lambda response: (
            session.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")
            if response.status >= 500
            else None
        ),
    )
    return session


def _session(browser: Browser, stack: RunningStack, width: int, height: int) -> Iterator[Session]:
    session = _new_session(browser, stack, width, height)
    yield session
    problems = list(session.problems)
    session.context.close()
    assert problems == [], "\n".join(problems)


@pytest.fixture
def ui(browser: Browser, stack: RunningStack) -> Iterator[Session]:
    yield from _session(browser, stack, 1280, 860)


@pytest.fixture
def narrow(browser: Browser, stack: RunningStack) -> Iterator[Session]:
    yield from _session(browser, stack, 360, 740)


# ---------------------------------------------------------------------------- API helpers
def _tenant() -> str:
    return f"ui-{uuid.uuid4().hex[:12]}"


def _headers(stack: RunningStack, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(tenant)}"}


def _create_webhook(stack: RunningStack, tenant: str, url: str, *, timeout: float = 10, **extra: Any) -> str:
    http: dict[str, str] = {"url": url}
    if "secret" in extra:
        http["secret"] = extra.pop("secret")
    body = {"provider": "webhook", "credentials": {"type": "http", "http": http}, **extra}
    created = requests.post(
        f"{stack.url}{MANAGEMENT}/integrations", json=body, headers=_headers(stack, tenant), timeout=timeout
    )
    assert created.status_code == 201, created.text
    return str(created.headers["Location"].rsplit("/", 1)[1])


def _integrations(stack: RunningStack, tenant: str) -> list[dict[str, Any]]:
    listed = requests.get(f"{stack.url}{MANAGEMENT}/integrations", headers=_headers(stack, tenant), timeout=10)
    assert listed.status_code == 200, listed.text
    result: list[dict[str, Any]] = listed.json()
    return result


def _integration(stack: RunningStack, tenant: str, hook: str) -> dict[str, Any]:
    got = requests.get(f"{stack.url}{MANAGEMENT}/integrations/{hook}", headers=_headers(stack, tenant), timeout=10)
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def _activity(stack: RunningStack, tenant: str, hook: str) -> list[dict[str, Any]]:
    listed = requests.get(
        f"{stack.url}{MANAGEMENT}/events",
        params={"integration_id": hook, "per_page": 50},
        headers=_headers(stack, tenant),
        timeout=10,
    )
    assert listed.status_code == 200, listed.text
    result: list[dict[str, Any]] = listed.json()
    return result


def _wait_for(probe: Callable[[], T | None], what: str, deadline: float = 20.0) -> T:
    """``probe()``'s first true answer, asked every 0.2 s until ``deadline`` seconds have passed."""
    end = time.monotonic() + deadline
    while True:
        answer = probe()
        if answer:
            return answer
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline} s: {what}")
        time.sleep(0.2)


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections to it are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _contrast(page: Page, selector: str) -> float:
    """The WCAG contrast ratio of the first ``selector``'s text against its (first opaque) background."""
    ratio: float = page.evaluate(
        """(selector) => {
            const rgb = (css) => (css.match(/[\\d.]+/g) || []).map(Number);
            const lum = ([r, g, b]) => {
              const f = (c) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
              return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
            };
            const node = document.querySelector(selector);
            const fg = rgb(getComputedStyle(node).color);
            let bg = rgb(getComputedStyle(document.body).backgroundColor);
            for (let n = node; n; n = n.parentElement) {
              const c = rgb(getComputedStyle(n).backgroundColor);
              if (c.length === 3 || (c.length === 4 && c[3] === 1)) {
                bg = c;
                break;
              }
            }
            const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
            return (hi + 0.05) / (lo + 0.05);
        }""",
        selector,
    )
    return ratio


def _provision(stack: RunningStack, tenant: str, device: str) -> None:
    sent = requests.post(
        f"{stack.url}{INTERNAL}/tenants/{tenant}/devices", json={"id": device, "status": "accepted"}, timeout=10
    )
    assert sent.status_code == 202, sent.text


def _sign_in(ui: Session, stack: RunningStack, tenant: str, path: str = "") -> None:
    ui.open(f"/#token={stack.token(tenant)}")
    expect(ui.page.get_by_role("heading", name="Webhooks")).to_be_visible()
    if path:
        ui.open(path)


def _no_stray_text(page: Page) -> None:
    expect(page.locator("main")).not_to_contain_text(STRAY)


def _no_horizontal_overflow(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url}: the page is {width} px wide"


def _axe_clean(page: Page, screen: str) -> None:
    """axe-core finds no violation of WCAG 2.x A/AA or best practice on the page, light and dark."""
    if not page.evaluate("typeof window.axe === 'object'"):
        # evaluated by the browser's debugger protocol, which the page's CSP does not govern
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    try:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme, reduced_motion="reduce")  # no colour mid-transition
            found: list[dict[str, Any]] = page.evaluate(
                """async () => (await axe.run(document, {
                    runOnly: {
                      type: "tag",
                      values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
                    },
                    resultTypes: ["violations"],
                })).violations.map((v) => ({ id: v.id, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }))
                """
            )
            assert found == [], f"{screen} ({scheme}): " + json.dumps(found, indent=1)
    finally:
        page.emulate_media(color_scheme="light", reduced_motion="null")


def _forget(session: Session, pattern: str) -> None:
    """Drops the problems a test caused on purpose (``pattern`` in them) from the watchdog's list."""
    session.problems[:] = [p for p in session.problems if pattern not in p]


# ---------------------------------------------------------------------------- tests
def test_add_a_webhook_see_its_activity_and_delete_it(ui: Session, stack: RunningStack, receiver: Receiver) -> None:
    tenant = _tenant()
    page = ui.page
    ui.open(f"/#token={stack.token(tenant)}")
    expect(page).to_have_title("Integrations · devicehooks")
    expect(page.get_by_role("heading", name="Integrations", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    assert "token=" not in page.url
    assert page.evaluate("sessionStorage.getItem('devicehooks.token')")
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    # nor in the history: Back leaves the UI instead of returning to the token
    page.go_back()
    assert page.url == "about:blank"
    page.go_forward()
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    assert "token=" not in page.url
    _axe_clean(page, "empty list")

    # the form validates the URL and the secret before anything is sent
    page.get_by_role("button", name="Add webhook", exact=True).click()
    expect(page.get_by_role("heading", name="Add webhook", level=1)).to_be_visible()
    expect(page).to_have_title("Add webhook · devicehooks")
    url = page.get_by_label("URL", exact=True)
    secret = page.get_by_label("Secret", exact=True)
    url.fill("not a url")
    secret.fill("not-hex!")
    expect(page.get_by_text("Please enter a valid URL")).to_be_visible()
    expect(page.get_by_text("The secret has to be entered as a hexadecimal string")).to_be_visible()
    _axe_clean(page, "add form with errors")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Add webhook", level=1)).to_be_visible()  # still on the form
    expect(url).to_have_attribute("aria-invalid", "true")
    secret.fill("abc")  # odd length: not a whole number of bytes
    expect(page.get_by_text("The secret has to be entered as a hexadecimal string")).to_be_visible()

    hook_url = receiver.hook(f"/hook/{tenant}")
    url.fill(hook_url)
    expect(page.get_by_text("not protected by HTTPS")).to_be_visible()  # the receiver is plain http
    secret.fill("deadbeef")
    expect(page.get_by_text("Please enter a valid URL")).to_be_hidden()
    expect(page.get_by_text("The secret has to be entered as a hexadecimal string")).to_be_hidden()
    page.get_by_label("Description", exact=True).fill("Browser test <b>receiver</b>")
    page.get_by_role("button", name="Save", exact=True).click()

    # listed, with the description as text (never as markup)
    expect(page.get_by_text("The webhook was set up successfully")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=hook_url)
    expect(row).to_be_visible()
    expect(row).to_contain_text("Browser test <b>receiver</b>")
    expect(row).to_contain_text("All events")
    expect(row).to_contain_text("Enabled")
    _no_stray_text(page)
    [stored] = _integrations(stack, tenant)
    assert stored["credentials"]["http"] == {"url": hook_url, "secret": "<omitted>"}
    assert "event_types" not in stored

    # a device event reaches the receiver, signed with the secret
    device = f"dev-{uuid.uuid4().hex[:8]}"
    _provision(stack, tenant, device)
    row.get_by_role("button", name="View details").click()
    expect(page.get_by_role("tab", name="Settings")).to_have_attribute("aria-selected", "true")
    expect(page.locator("dt:text-is('Secret') + dd")).to_have_text("Set")
    page.get_by_role("tab", name="Activity").click()
    expect(page.get_by_role("tab", name="Activity")).to_have_attribute("aria-selected", "true")
    assert page.url.endswith("/activity")
    event_row = page.get_by_role("row").filter(has_text="Device provisioned")
    expect(event_row).to_be_visible(timeout=POLL_TIMEOUT)
    expect(event_row.get_by_text("200")).to_be_visible(timeout=POLL_TIMEOUT)
    expect(event_row.locator(".status.ok")).to_be_visible()
    _no_stray_text(page)
    delivered = [r for r in receiver.requests if r["path"] == f"/hook/{tenant}"]
    assert len(delivered) == 1
    signature = hmac.new(bytes.fromhex("deadbeef"), delivered[0]["body"], hashlib.sha256).hexdigest()
    assert {k.lower(): v for k, v in delivered[0]["headers"].items()}["x-men-signature"] == signature

    # the event's exact payload and its attempts
    event_row.get_by_role("button", name="View details").click()
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    payload = page.get_by_role("region", name="Request body (JSON)")
    expect(payload).to_contain_text(device)
    assert payload.inner_text() == delivered[0]["body"].decode()  # the exact bytes
    expect(page.get_by_role("heading", name="Delivery attempts")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="HTTP 200")).to_be_visible()
    _no_stray_text(page)

    # redelivery (after a confirmation) sends the same event again
    page.get_by_role("button", name="Redeliver").click()
    page.get_by_role("dialog", name="Redeliver").get_by_role("button", name="Redeliver").click()
    expect(page.get_by_text("The event was queued for redelivery")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="HTTP 200")).to_have_count(2, timeout=POLL_TIMEOUT)
    again = [r for r in receiver.requests if r["path"] == f"/hook/{tenant}"]
    assert len(again) == 2 and again[1]["body"] == delivered[0]["body"]

    # back to the webhook, then delete it (after a confirmation)
    page.get_by_role("link", name="Back to webhook").click()
    expect(page.get_by_role("tab", name="Activity")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Settings").click()
    page.get_by_role("button", name="Delete webhook").click()
    dialog = page.get_by_role("dialog")
    # the dialog names the webhook and says how many deliveries wait for it
    expect(dialog).to_contain_text(f"Delete the webhook “Browser test <b>receiver</b>” ({hook_url})?")
    expect(dialog).to_contain_text("No delivery is waiting for it.")
    _axe_clean(page, "delete dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert len(_integrations(stack, tenant)) == 1
    page.get_by_role("button", name="Delete webhook").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_text("The webhook was removed successfully")).to_be_visible()
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    assert _integrations(stack, tenant) == []
    ui.assert_clean()


def test_an_inventory_webhook_from_the_form_and_its_labelled_event(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    tenant = _tenant()
    page = ui.page
    _sign_in(ui, stack, tenant)

    # choosing the inventory type alone puts the webhook in the inventory scope, with no filter
    page.get_by_role("button", name="Add webhook").click()
    page.get_by_label("URL", exact=True).fill(receiver.hook(f"/inventory/{tenant}"))
    page.get_by_label("Device inventory changed").check()
    page.get_by_role("button", name="Save", exact=True).click()
    row = page.get_by_role("row").filter(has_text=f"/inventory/{tenant}")
    expect(row).to_contain_text("Device inventory events")
    [stored] = _integrations(stack, tenant)
    assert stored["scopes"] == ["inventory"] and "event_types" not in stored

    # an inventory change is delivered and shows in the activity as Mender's UI labels it
    sent = requests.post(
        f"{stack.url}{INTERNAL}/tenants/{tenant}/devices/dev-inv/inventory",
        json=[{"name": "os", "value": ["RelaxedOS"], "scope": "inventory"}],
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    _provision(stack, tenant, "dev-auth")  # deviceauth: not for this webhook
    row.get_by_role("button", name="View details").click()
    page.get_by_role("tab", name="Activity").click()
    event_row = page.get_by_role("row").filter(has_text="Device inventory changed")
    expect(event_row).to_be_visible(timeout=POLL_TIMEOUT)
    expect(event_row.locator(".status.ok")).to_be_visible(timeout=POLL_TIMEOUT)
    expect(event_row.locator("td.device")).to_have_text("dev-inv")  # an inventory event's data.device_id
    expect(page.get_by_role("row").filter(has_text="Device provisioned")).to_have_count(0)
    _no_stray_text(page)
    ui.assert_clean()


def test_sign_in_form_and_development_token(ui: Session, stack: RunningStack, receiver: Receiver) -> None:
    page = ui.page
    ui.open("/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    token_field = page.get_by_label("Access token", exact=True)
    expect(token_field).to_be_visible()
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text("Enter a token")).to_be_visible()

    tenant = _tenant()
    _create_webhook(stack, tenant, receiver.hook("/signed-in"), description="visible after sign-in")
    token_field.fill(stack.token(tenant))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text=receiver.hook("/signed-in"))).to_be_visible()
    expect(page.get_by_text(f"Tenant: {tenant}")).to_be_visible()

    # a reload keeps the session (sessionStorage); signing out forgets it
    page.reload()
    expect(page.get_by_role("row").filter(has_text="visible after sign-in")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Access token", exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('devicehooks.token')") is None

    # the local stack answers /local/info, so the development token is offered
    other = _tenant()
    tenant_field = page.get_by_label("Tenant", exact=True)
    expect(tenant_field).to_have_value("acme")
    tenant_field.fill(other)
    page.get_by_role("button", name="Use a development token").click()
    expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    expect(page.get_by_text(f"Tenant: {other}")).to_be_visible()
    expect(page.get_by_text("No webhooks yet")).to_be_visible()
    ui.assert_clean()


def test_development_token_is_hidden_without_the_local_stack(ui: Session) -> None:
    page = ui.page
    # as behind CloudFront: /local/info is a 404
    page.route(
        "**/local/info",
        lambda route: route.fulfill(status=404, content_type="application/json", body='{"message":"Not Found"}'),
    )
    with page.expect_response("**/local/info") as answered:
        ui.open("/")
    assert answered.value.status == 404
    expect(page.get_by_label("Access token", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Use a development token")).to_have_count(0)
    ui.assert_clean()


def test_a_refused_token_returns_to_sign_in_with_the_reason(ui: Session, stack: RunningStack) -> None:
    page = ui.page
    ui.open("/#token=not-a-valid-token")
    expect(page.get_by_text("Your session has expired or the token was refused: sign in again")).to_be_visible()
    expect(page.get_by_role("alert").filter(has_text="identity: incorrect token format")).to_be_visible()
    expect(page.get_by_label("Access token", exact=True)).to_be_visible()
    assert "token=" not in page.url
    assert page.evaluate("sessionStorage.getItem('devicehooks.token')") is None

    # an expired session mid-way does the same
    tenant = _tenant()
    _sign_in(ui, stack, tenant)
    page.evaluate(f"sessionStorage.setItem('devicehooks.token', {json.dumps(stack.token(tenant, ttl=-120))})")
    page.get_by_role("button", name="Add webhook").click()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("alert").filter(has_text="identity: token has expired")).to_be_visible()
    expect(page.get_by_label("Access token", exact=True)).to_be_visible()
    ui.assert_clean()


def test_settings_actions_and_keyboard_tabs(ui: Session, stack: RunningStack, receiver: Receiver) -> None:
    tenant = _tenant()
    page = ui.page
    _sign_in(ui, stack, tenant)

    # a subset of event types is sent as event_types; no secret means "Not set"
    page.get_by_role("button", name="Add webhook").click()
    page.get_by_label("URL", exact=True).fill(receiver.hook(f"/settings/{tenant}"))
    page.get_by_label("Device decommissioned").check()
    page.get_by_role("button", name="Save", exact=True).click()
    row = page.get_by_role("row").filter(has_text=f"/settings/{tenant}")
    expect(row).to_contain_text("Device decommissioned")
    [stored] = _integrations(stack, tenant)
    assert stored["event_types"] == ["device-decommissioned"]
    assert "secret" not in stored["credentials"]["http"]

    row.get_by_role("button", name="View details").click()
    panel = page.get_by_role("tabpanel")
    secret_state = page.locator("dt:text-is('Secret') + dd")
    expect(secret_state).to_have_text("Not set")
    expect(panel).to_contain_text("Device decommissioned")
    _no_stray_text(page)

    # disable (confirmed first: a cancel changes nothing), enable (at once)
    panel.get_by_role("button", name="Disable").click()
    confirm = page.get_by_role("dialog", name="Disable webhook")
    expect(confirm).to_contain_text(f"Disable “127.0.0.1:{receiver.url.rsplit(':', 1)[1]}”? Nothing is sent to it")
    _axe_clean(page, "disable dialog")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert _integrations(stack, tenant)[0]["enabled"] is True
    panel.get_by_role("button", name="Disable").click()
    confirm.get_by_role("button", name="Disable").click()
    expect(panel).to_contain_text("Disabled (disabled by a user)")
    assert _integrations(stack, tenant)[0]["enabled"] is False
    panel.get_by_role("button", name="Enable").click()
    expect(panel.get_by_text("The webhook was enabled")).to_be_visible()
    assert _integrations(stack, tenant)[0]["enabled"] is True

    # a test event reaches the receiver
    panel.get_by_role("button", name="Send test event").click()
    expect(panel.get_by_text("Test event delivered: HTTP 200")).to_be_visible()
    assert any(r["path"] == f"/settings/{tenant}" for r in receiver.requests)

    # rotate the secret: validated, then sent with the current URL
    panel.get_by_role("button", name="Rotate secret").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("New secret").fill("xyz")
    dialog.get_by_role("button", name="Save secret").click()
    expect(dialog.get_by_text("The secret has to be entered as a hexadecimal string")).to_be_visible()
    dialog.get_by_label("New secret").fill("00ff00ff")
    dialog.get_by_role("button", name="Save secret").click()
    expect(panel.get_by_text("The secret was replaced")).to_be_visible()
    expect(secret_state).to_have_text("Set")
    assert _integrations(stack, tenant)[0]["credentials"]["http"]["secret"] == "<omitted>"

    # the tabs work from the keyboard, and the test event shows in the activity
    settings_tab = page.get_by_role("tab", name="Settings")
    settings_tab.focus()
    page.keyboard.press("ArrowRight")
    activity_tab = page.get_by_role("tab", name="Activity")
    expect(activity_tab).to_be_focused()
    expect(activity_tab).to_have_attribute("aria-selected", "true")
    expect(settings_tab).to_have_attribute("aria-selected", "false")
    test_row = page.get_by_role("row").filter(has_text="Test event")
    expect(test_row).to_be_visible(timeout=POLL_TIMEOUT)
    expect(test_row).to_contain_text("200")
    page.keyboard.press("ArrowLeft")
    expect(settings_tab).to_be_focused()
    expect(settings_tab).to_have_attribute("aria-selected", "true")
    ui.assert_clean()


def test_a_refused_url_is_explained_on_the_url_field(ui: Session, stack: RunningStack) -> None:
    page = ui.page
    _sign_in(ui, stack, _tenant())
    page.get_by_role("button", name="Add webhook").click()
    expect(page.get_by_role("heading", name="Add webhook", level=1)).to_be_visible()
    url = page.get_by_label("URL", exact=True)
    url.fill("http://10.1.2.3/hook")  # private: the server refuses it
    page.get_by_role("button", name="Save", exact=True).click()
    error = page.locator("#url-error")
    expect(error).to_contain_text("This address is on a private or reserved network, which webhooks may not send to")
    expect(error).to_contain_text("The server said: hostname resolves to reserved address")
    expect(error).not_to_contain_text("malformed request body")
    expect(error).not_to_contain_text("credentials:")
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_be_focused()
    expect(page.get_by_role("alert").filter(has_text="malformed request body")).to_have_count(0)
    expect(page.get_by_role("heading", name="Add webhook", level=1)).to_be_visible()  # still on the form
    _axe_clean(page, "add form with a refused URL")
    url.fill("https://example.com/hook")
    expect(error).to_be_hidden()  # editing clears the server's complaint
    ui.assert_clean()


def test_edit_a_webhook_in_place(ui: Session, stack: RunningStack, receiver: Receiver) -> None:
    tenant = _tenant()
    page = ui.page
    hook = _create_webhook(stack, tenant, receiver.hook(f"/before/{tenant}"), description="Before")
    _provision(stack, tenant, "kept-device")
    _wait_for(lambda: _activity(stack, tenant, hook), "the event is in the activity")
    _sign_in(ui, stack, tenant, f"/#/integrations/{hook}")
    page.get_by_role("tabpanel").get_by_role("button", name="Edit webhook").click()
    expect(page.get_by_role("heading", name="Edit webhook", level=1)).to_be_visible()
    expect(page).to_have_title("Edit webhook · devicehooks")
    url = page.get_by_label("URL", exact=True)
    expect(url).to_have_value(receiver.hook(f"/before/{tenant}"))
    expect(page.get_by_label("Description", exact=True)).to_have_value("Before")
    # the default scope: the three device authentication events
    for label in ("Device provisioned", "Device decommissioned", "Device status updated"):
        expect(page.get_by_label(label)).to_be_checked()
    expect(page.get_by_label("Device inventory changed")).not_to_be_checked()
    expect(page.get_by_label("Secret", exact=True)).to_have_count(0)  # the secret has Rotate secret
    _axe_clean(page, "edit form")

    # a refused URL is explained on the field, and nothing is changed
    url.fill("http://10.9.8.7/hook")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#url-error")).to_contain_text("private or reserved network")
    expect(url).to_be_focused()
    assert _integration(stack, tenant, hook)["credentials"]["http"]["url"] == receiver.hook(f"/before/{tenant}")

    # then changed: URL, description, event types and rate limit
    url.fill(receiver.hook(f"/after/{tenant}"))
    page.get_by_label("Description", exact=True).fill("After")
    page.get_by_label("Device provisioned").uncheck()
    page.get_by_label("Device status updated").uncheck()
    limit = page.get_by_label("Rate limit")
    limit.fill("0")
    page.get_by_role("button", name="Save changes").click()
    expect(limit).to_be_focused()
    expect(limit).to_have_attribute("aria-invalid", "true")
    limit.fill("7")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").filter(has_text="The webhook was saved")).to_be_visible()
    expect(page.get_by_role("heading", name="After", level=1)).to_be_visible()  # its description
    expect(page).to_have_title("After · Webhook · devicehooks")
    panel = page.get_by_role("tabpanel")
    expect(panel.locator("dd.url")).to_have_text(receiver.hook(f"/after/{tenant}"))
    expect(panel).to_contain_text("After")
    expect(panel).to_contain_text("Device decommissioned")
    stored = _integration(stack, tenant, hook)
    assert stored["id"] == hook
    assert stored["credentials"]["http"]["url"] == receiver.hook(f"/after/{tenant}")
    assert stored["description"] == "After"
    assert stored["event_types"] == ["device-decommissioned"]
    assert stored["rate_limit"] == 7
    _no_stray_text(page)

    # the same webhook: its activity is still there
    page.get_by_role("tab", name="Activity").click()
    expect(page.get_by_role("row").filter(has_text="Device provisioned")).to_be_visible(timeout=POLL_TIMEOUT)

    # every event again, and no limit: cleared in place
    ui.open(f"/#/integrations/{hook}/edit")
    expect(page.get_by_label("Device decommissioned")).to_be_checked()
    expect(page.get_by_label("Rate limit")).to_have_value("7")
    page.get_by_label("Device decommissioned").uncheck()
    page.get_by_label("Rate limit").fill("")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status").filter(has_text="The webhook was saved")).to_be_visible()
    stored = _integration(stack, tenant, hook)
    assert "event_types" not in stored and "rate_limit" not in stored
    assert sorted(stored["scopes"]) == ["deviceauth", "inventory"]
    expect(page.get_by_role("tabpanel")).to_contain_text("All events")

    # Cancel changes nothing
    ui.open(f"/#/integrations/{hook}/edit")
    page.get_by_label("Description", exact=True).fill("Not saved")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("tab", name="Settings")).to_have_attribute("aria-selected", "true")
    assert _integration(stack, tenant, hook)["description"] == "After"
    ui.assert_clean()


def test_retrying_and_failed_deliveries_differ_and_say_why(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    """The activity list as the API would report a retrying and a failed delivery (rewritten answers)."""
    tenant = _tenant()
    page = ui.page
    hook = _create_webhook(stack, tenant, receiver.hook("/states"))
    soon = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 300))

    def event(n: int, state: str, **status: Any) -> dict[str, Any]:
        return {
            "id": f"0000000{n}-0000-4000-8000-000000000000",
            "type": "device-provisioned",
            "data": {"id": f"device-{n}", "status": "accepted"},
            "time": "2026-03-04T05:06:0{n}.000Z",
            "delivery_statuses": [{"integration_id": hook, "success": False, "state": state, **status}],
        }

    retrying = event(1, "retrying", attempts=2, status_code=503, error="HTTP 503", next_attempt=soon)
    failed = event(2, "failed", attempts=5, error="connection refused")
    page.route(
        re.compile(r".*/events\?.*"),
        lambda route: route.fulfill(json=[retrying, failed], content_type="application/json"),
    )
    page.route(re.compile(r".*/events/00000001-.*"), lambda route: route.fulfill(json=retrying))
    _sign_in(ui, stack, tenant, f"/#/integrations/{hook}/activity")
    rows = page.get_by_role("row")
    again = rows.filter(has_text="device-1").locator("td[data-label='Status']")
    gone = rows.filter(has_text="device-2").locator("td[data-label='Status']")
    expect(again.locator(".status.retry")).to_contain_text("Waiting")
    expect(again.locator(".status.retry")).to_contain_text("503")
    expect(again).to_contain_text(re.compile(r"Last attempt: HTTP 503\. Next try \d\d:\d\d:\d\d"))
    expect(gone.locator(".status.bad")).to_contain_text("Failed")
    expect(gone).to_contain_text("Last attempt: connection refused. No more tries.")
    expect(again).not_to_contain_text("Failed")
    # different dots: a ring for still to be tried, a filled one for failed
    dots = [
        page.evaluate(
            "(el) => ['backgroundColor', 'borderTopColor', 'borderTopWidth'].map((k) => getComputedStyle(el)[k])",
            cell.locator(".dot").element_handle(),
        )
        for cell in (again, gone)
    ]
    assert dots[0] != dots[1], dots
    _no_stray_text(page)
    _axe_clean(page, "activity with retrying and failed deliveries")

    # the details say it once: "Waiting", never "retrying retrying"
    rows.filter(has_text="device-1").get_by_role("button", name="View details").click()
    status = page.locator("dt:text-is('Status') + dd")
    expect(status).to_contain_text("Waiting")
    expect(status).not_to_contain_text(re.compile("(retrying|waiting).*(retrying|waiting)", re.IGNORECASE))
    expect(page.locator("dt:text-is('Error') + dd")).to_have_text("HTTP 503")
    expect(page.locator("dt:text-is('Next attempt') + dd time")).to_be_visible()
    _axe_clean(page, "event details of a retrying delivery")
    ui.assert_clean()


def test_an_unreachable_api_shows_a_heading_and_a_working_retry(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    tenant = _tenant()
    page = ui.page
    hook = _create_webhook(stack, tenant, receiver.hook("/later"), description="Reached after Retry")
    down = True

    def maybe_down(route: Any) -> None:
        if down:
            route.abort("connectionrefused")
        else:
            route.continue_()

    page.route(f"**{MANAGEMENT}/**", maybe_down)
    ui.open(f"/#token={stack.token(tenant)}")
    heading = page.get_by_role("heading", name="The server cannot be reached", level=1)
    expect(heading).to_be_visible()
    expect(heading).to_be_focused()
    expect(page.get_by_role("alert")).to_contain_text("The devicehooks API did not answer")
    _axe_clean(page, "list with the API unreachable")
    down = False
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("row").filter(has_text="Reached after Retry")).to_be_visible()

    # a webhook's details too, with a way back
    down = True
    ui.open(f"/#/integrations/{hook}")
    expect(heading).to_be_visible()
    expect(page.get_by_role("link", name="Back to integrations")).to_be_visible()
    down = False
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("tab", name="Settings")).to_be_visible()
    _forget(ui, "ERR_CONNECTION_REFUSED")
    ui.assert_clean()


def test_a_malformed_token_link_says_so(ui: Session, stack: RunningStack) -> None:
    page = ui.page
    for link in ("/#token=%E0%A4%A", "/#token="):
        ui.open(link)
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("This sign-in link is not valid")
        expect(page.get_by_label("Access token", exact=True)).to_be_visible()
        assert "token=" not in page.url
        assert page.evaluate("sessionStorage.getItem('devicehooks.token')") is None
        expect(page.get_by_role("button", name="Use a development token")).to_be_visible()  # /local/info answered
        page.reload()  # only once: the message is about the link just opened
        expect(page.get_by_role("button", name="Use a development token")).to_be_visible()
        expect(page.get_by_text("This sign-in link is not valid")).to_have_count(0)
    _axe_clean(page, "sign-in")
    ui.assert_clean()


def test_every_view_details_button_names_its_row(ui: Session, stack: RunningStack, receiver: Receiver) -> None:
    tenant = _tenant()
    page = ui.page
    hook = _create_webhook(stack, tenant, receiver.hook("/named"), description="Named rows")
    _create_webhook(stack, tenant, receiver.hook("/named-too"))
    for n in range(4):
        _provision(stack, tenant, f"named-{n}")
    requests.post(
        f"{stack.url}{MANAGEMENT}/integrations/{hook}/test", headers=_headers(stack, tenant), timeout=10
    ).raise_for_status()
    _wait_for(lambda: len(_activity(stack, tenant, hook)) == 5, "five events in the activity")

    def names() -> list[str]:
        buttons = page.get_by_role("button", name="View details")
        return [
            page.evaluate("(el) => el.textContent.replace(/\\s+/g, ' ').trim()", b.element_handle())
            for b in buttons.all()
        ]

    _sign_in(ui, stack, tenant)
    expect(page.get_by_role("button", name="View details")).to_have_count(2)
    listed = names()
    assert len(set(listed)) == 2 and "View details for Named rows" in listed, listed
    _axe_clean(page, "integrations list")

    ui.open(f"/#/integrations/{hook}/activity")
    expect(page.get_by_role("button", name="View details")).to_have_count(5, timeout=POLL_TIMEOUT)
    shown = names()
    assert len(set(shown)) == 5, shown
    one = re.compile(r"View details for Device provisioned, device named-2, [\d-]+ [\d:]+")
    assert any(one.fullmatch(name) for name in shown), shown
    expect(page.get_by_role("button", name=re.compile(r"^View details for Test event, "))).to_have_count(1)
    _axe_clean(page, "activity")

    # the settings, with a test event's response (a scrollable box the keyboard reaches)
    page.get_by_role("tab", name="Settings").click()
    page.get_by_role("button", name="Send test event").click()
    page.get_by_text("Response body").click()
    box = page.get_by_role("region", name="Test event response body")
    expect(box).to_contain_text("received")
    box.focus()
    expect(box).to_be_focused()
    _axe_clean(page, "settings with a test event's response")

    page.get_by_role("tab", name="Activity").click()
    page.get_by_role("button", name=re.compile(r"^View details for Device provisioned, device named-0")).click()
    payload = page.get_by_role("region", name="Request body (JSON)")
    expect(payload).to_contain_text("named-0")
    expect(payload).to_have_attribute("tabindex", "0")
    expect(page.get_by_role("row").filter(has_text="HTTP 200")).to_be_visible(timeout=POLL_TIMEOUT)
    _axe_clean(page, "event details")
    ui.assert_clean()


def test_static_egress_addresses_are_shown_above_the_list_only_when_the_service_has_some(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    """A stack deployed with StaticEgressIps answers GET /egress with its addresses (the local one never does)."""
    tenant = _tenant()
    page = ui.page
    _create_webhook(stack, tenant, receiver.hook("/egress"), description="Allow-listing receiver")
    line = page.locator("#egress-addresses")
    row = page.get_by_role("row").filter(has_text="Allow-listing receiver")

    # the local stack's own answer: no addresses, so no line (waited for, so its absence means something)
    with page.expect_response(f"**{MANAGEMENT}/egress") as answered:
        _sign_in(ui, stack, tenant)
    assert answered.value.status == 200
    assert answered.value.json() == {"addresses": []}
    expect(row).to_be_visible()
    expect(line).to_have_count(0)
    expect(page.locator(".egress")).to_be_empty()

    # what GET /egress answers for a stack with StaticEgressIps (EgressOut: its two NAT gateways' addresses)
    addresses = ["203.0.113.10", "198.51.100.7"]
    page.route(f"**{MANAGEMENT}/egress", lambda route: route.fulfill(json={"addresses": addresses}))
    page.reload()
    expect(line).to_have_text(
        "Requests come from these addresses, for your firewall's allow-list: 203.0.113.10, 198.51.100.7."
    )
    expect(line.locator("code")).to_have_text(addresses)
    expect(line).to_be_visible()
    # in the Webhooks card, above the list
    expect(page.get_by_role("region", name="Webhooks").locator("#egress-addresses")).to_have_count(1)
    above, table = line.bounding_box(), row.bounding_box()
    assert above is not None and table is not None and above["y"] + above["height"] <= table["y"], (above, table)
    _no_stray_text(page)
    _axe_clean(page, "list with static egress addresses")
    ui.assert_clean()


def test_activity_rows_are_compact_on_a_phone(narrow: Session, stack: RunningStack, receiver: Receiver) -> None:
    tenant = _tenant()
    page = narrow.page
    hook = _create_webhook(stack, tenant, receiver.hook("/phone"))
    _provision(stack, tenant, "phone-device")
    _sign_in(narrow, stack, tenant, f"/#/integrations/{hook}/activity")
    row = page.get_by_role("row").filter(has_text="Device provisioned")
    expect(row.locator(".status.ok")).to_be_visible(timeout=POLL_TIMEOUT)
    expect(row).to_contain_text("1 attempt")
    expect(row.locator("td.device")).to_be_visible()
    expect(row.locator("td.device")).to_have_text("phone-device")
    box = row.bounding_box()
    assert box is not None and box["height"] <= 100, f"an activity row is {box} at 360 px"
    button = row.get_by_role("button", name="View details").bounding_box()
    assert button is not None and button["height"] >= 24  # still a comfortable target
    _no_horizontal_overflow(page)
    _axe_clean(page, "activity at 360 px")
    narrow.assert_clean()


def test_rate_limit_set_changed_and_removed_in_settings(ui: Session, stack: RunningStack, receiver: Receiver) -> None:
    tenant = _tenant()
    page = ui.page
    hook = _create_webhook(stack, tenant, receiver.hook(f"/limited/{tenant}"))
    _sign_in(ui, stack, tenant, f"/#/integrations/{hook}")
    limit = page.get_by_label("Rate limit")
    expect(limit).to_have_value("")  # no limit
    expect(limit).to_have_attribute("type", "number")
    expect(limit).to_have_attribute("placeholder", "No limit")
    save = page.get_by_role("button", name="Save rate limit")

    # checked before anything is sent
    limit.fill("0")
    expect(page.get_by_text("Enter a whole number of deliveries per second from 1 to 10,000")).to_be_visible()
    expect(limit).to_have_attribute("aria-invalid", "true")
    save.click()
    expect(limit).to_be_focused()
    assert "rate_limit" not in _integration(stack, tenant, hook)

    # set, and still there after a reload
    limit.fill("12")
    expect(limit).not_to_have_attribute("aria-invalid", "true")
    save.click()
    expect(page.get_by_role("status").filter(has_text="at most 12 deliveries per second")).to_be_visible()
    assert _integration(stack, tenant, hook)["rate_limit"] == 12
    page.reload()
    expect(page.get_by_label("Rate limit")).to_have_value("12")
    _no_stray_text(page)

    # the server's refusal is shown on the field, in plain words (here the value is changed on its way)
    def too_many(route: Any) -> None:
        if route.request.method == "PUT":
            route.continue_(post_data=json.dumps({"rate_limit": 10_001}))
        else:
            route.continue_()

    page.route(f"**{MANAGEMENT}/integrations/{hook}", too_many)
    limit.fill("50")
    save.click()
    error = page.locator("#rate-limit-error")
    expect(error).to_contain_text("The rate limit was not saved: enter a whole number from 1 to 10,000")
    expect(error).to_contain_text("The server said: Input should be less than or equal to 10000")
    expect(error).not_to_contain_text("malformed request body")
    expect(limit).to_have_attribute("aria-invalid", "true")
    expect(limit).to_be_focused()
    page.unroute(f"**{MANAGEMENT}/integrations/{hook}", too_many)
    assert _integration(stack, tenant, hook)["rate_limit"] == 12

    # changed
    limit.fill("50")
    expect(error).to_be_hidden()  # editing clears the server's complaint
    save.click()
    expect(page.get_by_role("status").filter(has_text="at most 50 deliveries per second")).to_be_visible()
    assert _integration(stack, tenant, hook)["rate_limit"] == 50

    # removed: an empty field is no limit
    limit.fill("")
    save.click()
    expect(page.get_by_role("status").filter(has_text="The rate limit was removed")).to_be_visible()
    assert "rate_limit" not in _integration(stack, tenant, hook)
    page.reload()
    expect(page.get_by_label("Rate limit")).to_have_value("")
    expect(page.get_by_role("tabpanel")).to_contain_text("Destination URL")
    _no_stray_text(page)
    ui.assert_clean()


def test_an_open_circuit_shows_as_waiting_and_held_deliveries_read_sensibly(ui: Session, stack: RunningStack) -> None:
    tenant = _tenant()
    page = ui.page
    down = f"http://127.0.0.1:{_closed_port()}/down"
    hook = _create_webhook(stack, tenant, down, description="Receiver that is down")
    for n in range(5):  # 5 failures in a row open the circuit
        _provision(stack, tenant, f"down-{n}")

    def circuit_open() -> dict[str, Any] | None:
        circuit = _integration(stack, tenant, hook).get("circuit")
        return circuit if circuit and circuit["state"] == "open" else None

    circuit = _wait_for(circuit_open, "the circuit opens", CIRCUIT_OPENS_WITHIN)
    # from here it stays open for 30 s (the first cooldown): long enough for the list and the details

    # the list: enabled, and paused, in words
    _sign_in(ui, stack, tenant)
    row = page.get_by_role("row").filter(has_text=down)
    paused = row.locator(".circuit.open")
    expect(row).to_contain_text("Enabled")
    expect(paused).to_contain_text(
        re.compile(r"^Waiting: failing since (\d{4}-\d\d-\d\d )?\d\d:\d\d, next try (at [\d: -]+|any moment now)$")
    )
    expect(paused.locator("time")).to_have_attribute("datetime", circuit["since"])
    _no_stray_text(page)
    assert _contrast(page, ".circuit.open") >= 4.5
    assert _contrast(page, ".state.on") >= 4.5
    page.emulate_media(color_scheme="dark")
    assert _contrast(page, ".circuit.open") >= 4.5
    assert _contrast(page, ".state.on") >= 4.5
    page.emulate_media(color_scheme="light")
    _axe_clean(page, "list with a paused webhook")

    # the details: the same, with what it means
    row.get_by_role("button", name="View details").click()
    state = page.locator("dt:text-is('State') + dd")
    expect(state).to_contain_text("Enabled")
    expect(state.locator(".circuit.open")).to_contain_text("Waiting: the webhook has been failing since")
    expect(state).to_contain_text("failures in a row")
    expect(state).to_contain_text("none is lost")
    _no_stray_text(page)
    _axe_clean(page, "settings of a paused webhook")

    # an event while the circuit is open is held: retrying, with no attempt, the reason and the next try
    held = requests.put(
        f"{stack.url}{INTERNAL}/tenants/{tenant}/bulk/devices/status/rejected", json=[{"id": "late"}], timeout=10
    )
    assert held.status_code == 202, held.text

    def held_delivery() -> dict[str, Any] | None:
        for event in _activity(stack, tenant, hook):
            if event["type"] == "device-status-changed":
                [status] = event["delivery_statuses"]
                return status if status["state"] == "retrying" else None
        return None

    status = _wait_for(held_delivery, "the late event is held")
    assert status["attempts"] == 0 and status["error"].startswith("circuit open")
    page.get_by_role("tab", name="Activity").click()
    late = page.get_by_role("row").filter(has_text="Device status updated")
    expect(late).to_be_visible(timeout=POLL_TIMEOUT)
    expect(late.locator("td[data-label='Attempts']")).to_have_text("0 attempts")  # the unit shows on phones only
    status_cell = late.locator("td[data-label='Status']")
    expect(status_cell).to_contain_text("Waiting, not attempted yet")
    expect(status_cell).to_contain_text(
        re.compile(r"The webhook has been failing; devicehooks tries it again (at [\d: -]+|any moment now)\.")
    )
    expect(status_cell.locator(".status.held")).to_be_visible()  # a grey ring: not a failure of its own
    expect(late).not_to_contain_text("Failed")
    expect(late).not_to_contain_text(re.compile(r"attempt 0", re.IGNORECASE))
    _no_stray_text(page)
    _axe_clean(page, "activity with a held delivery")

    # its details: the reason (not an error) and the next attempt, and no attempt yet
    late.get_by_role("button", name="View details").click()
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    reason = page.locator("dt:text-is('Waiting because') + dd")
    expect(reason).to_contain_text("The webhook has been failing")
    expect(reason).to_contain_text("circuit open since")  # the API's own words too
    expect(page.locator("dt:text-is('Next attempt') + dd")).to_have_text(
        re.compile(r"^(Any moment now|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)$")  # never a time past
    )
    expect(page.locator("dt:text-is('Error')")).to_have_count(0)
    expect(page.get_by_text("No delivery attempt yet.")).to_be_visible()
    _no_stray_text(page)
    _axe_clean(page, "event details of a held delivery")
    ui.assert_clean()


def test_every_circuit_state_reads_in_plain_words(ui: Session, stack: RunningStack, receiver: Receiver) -> None:
    """Testing (half-open) and failures in a row (closed) as the API would report them."""
    tenant = _tenant()
    page = ui.page
    testing = _create_webhook(stack, tenant, receiver.hook("/half-open"), description="half-open")
    failing = _create_webhook(stack, tenant, receiver.hook("/failing"), description="failing")
    healthy = _create_webhook(stack, tenant, receiver.hook("/healthy"), description="healthy")
    since = "2025-03-04T05:06:07.000Z"
    circuits: dict[str, dict[str, Any]] = {
        testing: {"state": "half-open", "failures": 7, "since": since, "next_attempt": since},
        failing: {"state": "closed", "failures": 3},
    }

    def with_circuits(route: Any) -> None:
        answer = route.fetch()
        body = answer.json()
        for integration in body if isinstance(body, list) else [body]:
            if integration["id"] in circuits:
                integration["circuit"] = circuits[integration["id"]]
        route.fulfill(response=answer, json=body)

    page.route(re.compile(r".*/integrations(/[^/]+)?$"), with_circuits)
    _sign_in(ui, stack, tenant)
    rows = page.get_by_role("row")
    expect(rows.filter(has_text="/half-open").locator(".circuit.half-open")).to_have_text(
        "Testing: one delivery decides"
    )
    expect(rows.filter(has_text="/failing").locator(".circuit.failing")).to_have_text("3 failures in a row")
    expect(rows.filter(has_text="/healthy").locator(".circuit")).to_have_count(0)
    for selector in (".circuit.half-open", ".circuit.failing"):
        assert _contrast(page, selector) >= 4.5, selector
    _no_stray_text(page)

    ui.open(f"/#/integrations/{testing}")
    state = page.locator("dt:text-is('State') + dd")
    expect(state).to_contain_text("Testing: one delivery decides")
    expect(state).to_contain_text("if it succeeds, deliveries resume")
    ui.open(f"/#/integrations/{failing}")
    expect(page.get_by_role("tabpanel")).to_contain_text("/failing")
    expect(state).to_contain_text("3 failures in a row")
    ui.open(f"/#/integrations/{healthy}")
    expect(page.get_by_role("tabpanel")).to_contain_text("/healthy")
    expect(state).to_have_text("Enabled")
    _no_stray_text(page)
    ui.assert_clean()


def test_readable_at_360_px_without_horizontal_overflow(
    narrow: Session, stack: RunningStack, receiver: Receiver
) -> None:
    tenant = _tenant()
    page = narrow.page
    long_url = receiver.hook("/a-rather-long-path/" + "segment/" * 8 + "?with=query&and=more")
    hook = _create_webhook(stack, tenant, long_url, secret="deadbeef", description="A webhook " * 12)
    _provision(stack, tenant, "narrow-device-with-a-long-identifier")

    _sign_in(narrow, stack, tenant)
    expect(page.get_by_role("row").filter(has_text="A webhook")).to_be_visible()
    _no_horizontal_overflow(page)

    page.get_by_role("button", name="View details").click()
    expect(page.get_by_role("tabpanel")).to_contain_text("Destination URL")
    _no_horizontal_overflow(page)
    page.get_by_role("tab", name="Activity").click()
    event_row = page.get_by_role("row").filter(has_text="Device provisioned")
    expect(event_row.get_by_text("200")).to_be_visible(timeout=POLL_TIMEOUT)
    _no_horizontal_overflow(page)
    event_row.get_by_role("button", name="View details").click()
    expect(page.get_by_role("region", name="Request body (JSON)")).to_contain_text(
        "narrow-device-with-a-long-identifier"
    )
    expect(page.get_by_role("region", name="Request headers of attempt 1")).to_contain_text("webhook-id")
    _no_horizontal_overflow(page)

    narrow.open("/#/integrations/new")
    expect(page.get_by_label("URL", exact=True)).to_be_visible()
    page.get_by_label("URL", exact=True).fill("http://plain.example.com/hook")
    expect(page.get_by_text("not protected by HTTPS")).to_be_visible()
    _no_horizontal_overflow(page)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Access token", exact=True)).to_be_visible()
    _no_horizontal_overflow(page)
    assert hook
    narrow.assert_clean()


def test_screenshots_of_the_list_and_the_activity(
    ui: Session, stack: RunningStack, receiver: Receiver, tmp_path: Path
) -> None:
    """Screenshots of the list, the Activity tab, an event's details and a failing webhook's health.

    They go to docs/screenshots/ when DEVICEHOOKS_UPDATE_SCREENSHOTS=1 (ports and times change at
    every run, so an ordinary run writes them to a temporary directory and leaves the tree clean).
    """
    shots = SCREENSHOTS if os.environ.get("DEVICEHOOKS_UPDATE_SCREENSHOTS") == "1" else tmp_path
    tenant = "acme"  # only this test uses it
    page = ui.page
    main = _create_webhook(
        stack, tenant, receiver.hook("/fleet/events"), secret="deadbeef", description="Fleet dashboard"
    )
    _create_webhook(
        stack,
        tenant,
        receiver.hook("/tickets"),
        description="Ticketing system",
        event_types=["device-decommissioned", "device-status-changed"],
    )
    disabled = _create_webhook(stack, tenant, receiver.hook("/archive"), description="Archive")
    requests.put(
        f"{stack.url}{MANAGEMENT}/integrations/{disabled}",
        json={"enabled": False},
        headers=_headers(stack, tenant),
        timeout=10,
    ).raise_for_status()
    for n in range(3):
        _provision(stack, tenant, f"sensor-{n:03d}")
    requests.post(
        f"{stack.url}{MANAGEMENT}/integrations/{main}/test", headers=_headers(stack, tenant), timeout=10
    ).raise_for_status()
    # a receiver that is down: 5 failed test events in a row open its circuit (for 30 s)
    down = _create_webhook(
        stack,
        tenant,
        f"http://127.0.0.1:{_closed_port()}/crm",
        description="Legacy CRM",
        event_types=["device-decommissioned"],
    )
    for _ in range(5):
        tested = requests.post(
            f"{stack.url}{MANAGEMENT}/integrations/{down}/test", headers=_headers(stack, tenant), timeout=30
        )
        assert tested.status_code == 200 and tested.json()["success"] is False, tested.text
    assert _integration(stack, tenant, down)["circuit"]["state"] == "open"

    _sign_in(ui, stack, tenant)
    expect(page.get_by_role("row").filter(has_text="Archive")).to_contain_text("Disabled")
    legacy = page.get_by_role("row").filter(has_text="Legacy CRM")
    expect(legacy).to_contain_text("Waiting: failing since")
    expect(page.locator("td.health .health-badge")).to_have_count(4)  # every row's health has arrived
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "integrations.png"))

    ui.open(f"/#/integrations/{main}/activity")
    rows = page.get_by_role("row").filter(has_text="Device provisioned")
    expect(rows).to_have_count(3, timeout=POLL_TIMEOUT)
    for n in range(3):
        expect(rows.nth(n).get_by_text("200")).to_be_visible(timeout=POLL_TIMEOUT)
    expect(page.get_by_role("row").filter(has_text="Test event")).to_be_visible()
    page.screenshot(path=str(shots / "activity.png"))

    rows.first.get_by_role("button", name="View details").click()
    expect(page.get_by_role("region", name="Request headers of attempt 1")).to_contain_text("X-Men-Signature: ")
    page.screenshot(path=str(shots / "event.png"), full_page=True)

    ui.open(f"/#/integrations/{down}")
    expect(page.locator(".health-verdict")).to_contain_text("Failing")
    page.screenshot(path=str(shots / "health.png"), full_page=True)
    for name in ("integrations", "activity", "event", "health"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
    ui.assert_clean()


def test_the_watchdog_sees_page_errors_failed_requests_and_server_errors(browser: Browser, stack: RunningStack) -> None:
    """The other tests' guarantee: what they would miss if these listeners did not work."""
    session = _new_session(browser, stack, 800, 600)
    try:
        page = session.page
        page.route("**/boom", lambda route: route.fulfill(status=502, body="bad gateway"))
        page.route("**/unreachable", lambda route: route.abort("connectionrefused"))
        session.open("/")
        expect(page.get_by_label("Access token", exact=True)).to_be_visible()
        page.evaluate("setTimeout(() => { throw new Error('deliberate') }, 0)")
        page.evaluate("fetch('/boom').catch(() => null)")
        page.evaluate("fetch('/unreachable').catch(() => null)")
        deadline = time.monotonic() + TIMEOUT / 1000
        while len(session.problems) < 3 and time.monotonic() < deadline:
            page.wait_for_timeout(50)  # lets Playwright deliver the events
        text = "\n".join(session.problems)
        assert "deliberate" in text and "HTTP 502" in text and "unreachable" in text
    finally:
        session.context.close()


def _delivery(stack: RunningStack, tenant: str, hook: str, device: str) -> dict[str, Any] | None:
    """The delivery status to ``hook`` of the event about ``device`` (None until there is one)."""
    for event in _activity(stack, tenant, hook):
        if event["data"].get("id") == device:
            for status in event.get("delivery_statuses") or []:
                if status.get("integration_id") == hook:
                    return dict(status)
    return None


def test_retry_now_on_a_retrying_delivery_from_the_list_and_the_details(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    tenant = _tenant()
    page = ui.page
    switch = f"retry-{tenant}"
    receiver.codes[switch] = 503
    path = f"/switch/{switch}"
    hook = _create_webhook(stack, tenant, receiver.hook(path))
    devices = [f"dev-a-{uuid.uuid4().hex[:6]}", f"dev-b-{uuid.uuid4().hex[:6]}"]
    for device in devices:
        _provision(stack, tenant, device)
    # both retrying after their second attempt (the schedule's first retry is after 5 s, the next after 300 s)
    for device in devices:
        _wait_for(
            lambda device=device: (
                (s := _delivery(stack, tenant, hook, device)) and s["state"] == "retrying" and s.get("attempts", 0) >= 2
            ),
            f"the delivery for {device} retrying after 2 attempts",
        )
    sent = lambda: sum(1 for r in receiver.requests if r["path"] == path)  # noqa: E731
    _sign_in(ui, stack, tenant, f"/#/integrations/{hook}/activity")

    # the device column, and the time to the second
    row = page.get_by_role("row").filter(has=page.locator("td.device", has_text=devices[0]))
    expect(row.locator(".status.retry")).to_be_visible(timeout=POLL_TIMEOUT)
    expect(row.locator("td.device")).to_have_text(devices[0])
    expect(row.locator("td.when")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    expect(page.get_by_role("columnheader", name="Device")).to_be_visible()
    retry = row.get_by_role("button", name=re.compile(r"^Retry now for Device provisioned, device " + devices[0]))
    expect(retry).to_be_visible()
    _axe_clean(page, "activity with Retry now")

    # Retry now: confirmed first (Cancel sends nothing), then attempted at once
    receiver.codes[switch] = 200
    before = sent()
    retry.click()
    dialog = page.get_by_role("dialog", name="Retry now")
    expect(dialog).to_be_visible()
    _axe_clean(page, "the Retry now dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert sent() == before
    retry.click()
    expect(dialog).to_contain_text("It is sent only if it has still not been delivered")
    with page.expect_request(re.compile(r".*/events/[^/]+/retry$")) as asked:  # retry, never redeliver
        dialog.get_by_role("button", name="Retry now").click()
    assert asked.value.method == "POST" and asked.value.post_data_json == {"integration_id": hook}
    expect(
        page.get_by_text(f"The Device provisioned event of device {devices[0]} is being sent again now.")
    ).to_be_visible()
    expect(row.locator(".status.ok")).to_be_visible(timeout=TIMEOUT)  # polled every 2 s meanwhile
    expect(row.locator("td.attempts")).to_contain_text("3")
    expect(row.get_by_role("button", name=re.compile("^Retry now"))).to_have_count(0)
    assert sent() == before + 1
    _no_stray_text(page)

    # on the details page the one action is "Retry now"
    other = page.get_by_role("row").filter(has=page.locator("td.device", has_text=devices[1]))
    other.get_by_role("button", name="View details").click()
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    expect(page.get_by_role("button", name="Redeliver")).to_have_count(0)
    now = page.get_by_role("button", name="Retry now")
    expect(now).to_be_visible()

    # a stale page: the delivery, still shown as retrying, is delivered meanwhile (here retried from
    # elsewhere). Retry now asks the server, which refuses (409) with its reason, shown as given, and
    # the receiver gets nothing more (issue 21: "Retry now" must never resend a delivered event)
    event_id = page.url.rsplit("/", 1)[1]
    event_path = re.compile(rf".*/events/{event_id}$")
    shown = requests.get(f"{stack.url}{MANAGEMENT}/events/{event_id}", headers=_headers(stack, tenant), timeout=10)
    assert shown.status_code == 200, shown.text
    page.route(event_path, lambda route: route.fulfill(json=shown.json()))  # the page keeps its view
    elsewhere = requests.post(
        f"{stack.url}{MANAGEMENT}/events/{event_id}/retry",
        json={"integration_id": hook},
        headers=_headers(stack, tenant),
        timeout=10,
    )
    assert elsewhere.status_code == 202, elsewhere.text
    _wait_for(
        lambda: (s := _delivery(stack, tenant, hook, devices[1])) and s["state"] == "delivered",
        "the delivery delivered from elsewhere",
    )
    before = sent()
    now.click()
    with page.expect_response(re.compile(r".*/events/[^/]+/retry$")) as answered:
        page.get_by_role("dialog", name="Retry now").get_by_role("button", name="Retry now").click()
    assert answered.value.status == 409
    refusal = page.get_by_role("alert")
    expect(refusal).to_have_text(
        "The delivery was not retried: the event was delivered to this webhook; redeliver it to send it again"
    )
    _axe_clean(page, "event details with a refused Retry now")
    page.unroute(event_path)
    # the view then shows the delivery as it stands: delivered, so the action is Redeliver
    expect(page.locator("dt:text-is('Status') + dd .status.ok")).to_be_visible(timeout=TIMEOUT)
    expect(now).to_have_count(0)
    assert sent() == before  # and still so after the redelivery below: exactly one more

    # Redeliver says that the receiver gets the event again, and sends it
    page.get_by_role("button", name="Redeliver").click()
    dialog = page.get_by_role("dialog", name="Redeliver")
    expect(dialog).to_contain_text("The receiver will get the event again")
    _axe_clean(page, "the Redeliver dialog")
    with page.expect_request(re.compile(r".*/events/[^/]+/redeliver$")):
        dialog.get_by_role("button", name="Redeliver").click()
    expect(page.get_by_text("The event was queued for redelivery.")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="HTTP 200")).to_have_count(2, timeout=TIMEOUT)
    assert sent() == before + 1
    ui.assert_clean()


def test_resend_failed_deliveries_since_an_hour_ago(
    browser: Browser, short_stack: RunningStack, receiver: Receiver
) -> None:
    stack = short_stack
    session = _new_session(browser, stack, 1280, 860)
    page = session.page
    try:
        tenant = _tenant()
        switch = f"recover-{tenant}"
        receiver.codes[switch] = 503
        path = f"/switch/{switch}"
        hook = _create_webhook(stack, tenant, receiver.hook(path))
        devices = [f"dev-a-{uuid.uuid4().hex[:6]}", f"dev-b-{uuid.uuid4().hex[:6]}"]
        for device in devices:
            _provision(stack, tenant, device)
        for device in devices:  # one retry after 1 s, then no more: failed
            _wait_for(
                lambda device=device: (s := _delivery(stack, tenant, hook, device)) and s["state"] == "failed",
                f"the delivery for {device} failed",
            )
        sent = lambda: sum(1 for r in receiver.requests if r["path"] == path)  # noqa: E731
        _sign_in(session, stack, tenant, f"/#/integrations/{hook}/activity")
        rows = page.get_by_role("row").filter(has=page.locator(".status.bad"))
        expect(rows).to_have_count(2, timeout=POLL_TIMEOUT)
        for device in devices:
            expect(page.locator("td.device", has_text=device)).to_be_visible()

        receiver.codes[switch] = 200
        before = sent()
        page.get_by_role("button", name="Resend failed deliveries…").click()
        dialog = page.get_by_role("dialog", name="Resend failed deliveries")
        expect(dialog).to_be_visible()
        since = dialog.get_by_label("From", exact=True)
        until = dialog.get_by_label("Until (optional)", exact=True)
        default = since.input_value()
        shown = time.strptime(default, "%Y-%m-%dT%H:%M")
        assert abs(time.mktime(shown) - (time.time() - 3600)) < 120, default  # an hour ago, local time
        _axe_clean(page, "the Resend failed deliveries dialog")

        # an end before the start is refused on the form; a start in the future by the server (400)
        until.fill("2000-01-01T00:00")
        dialog.get_by_role("button", name="Resend failed deliveries").click()
        expect(dialog.get_by_text("The end has to be after the start")).to_be_visible()
        expect(until).to_have_attribute("aria-invalid", "true")
        until.fill("")
        since.fill(time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 86_400)))
        dialog.get_by_role("button", name="Resend failed deliveries").click()
        expect(dialog.get_by_role("alert")).to_contain_text("the start has to be in the past and before the end")
        expect(dialog.get_by_role("alert")).to_contain_text("The server said: until: must be later than since.")
        expect(since).to_have_attribute("aria-invalid", "true")
        _axe_clean(page, "the Resend failed deliveries dialog with errors")
        assert sent() == before

        since.fill(default)
        dialog.get_by_role("button", name="Resend failed deliveries").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_text("Found 2 deliveries not delivered: 2 are being sent again now.")).to_be_visible()
        expect(page.get_by_role("row").filter(has=page.locator(".status.ok"))).to_have_count(2, timeout=TIMEOUT)
        assert sent() == before + 2
        _axe_clean(page, "activity after resending failed deliveries")

        # nothing left to resend; a disabled webhook is refused (409), said in plain words on the form
        resp = requests.put(
            f"{stack.url}{MANAGEMENT}/integrations/{hook}",
            json={"enabled": False},
            headers=_headers(stack, tenant),
            timeout=10,
        )
        assert resp.status_code in (200, 204), resp.text
        page.get_by_role("button", name="Resend failed deliveries…").click()
        dialog.get_by_role("button", name="Resend failed deliveries").click()
        # the server's refusal, as it gives it
        expect(dialog.get_by_role("alert")).to_have_text(
            "The failed deliveries were not sent again: "
            "the webhook is disabled; enable it before recovering its deliveries"
        )
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
        assert sent() == before + 2
    finally:
        problems = list(session.problems)
        session.context.close()
    assert problems == [], "\n".join(problems)


def test_event_details_show_the_body_as_sent_each_attempts_headers_and_copy_them(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    tenant = _tenant()
    page = ui.page
    ui.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    switch = f"headers-{tenant}"
    receiver.codes[switch] = 503  # the first attempt fails, the retry (after 5 s) succeeds
    hook = _create_webhook(stack, tenant, receiver.hook(f"/switch/{switch}"), secret="c0ffee")
    device = f"dev-{uuid.uuid4().hex[:8]}"
    _provision(stack, tenant, device)
    _wait_for(lambda: (s := _delivery(stack, tenant, hook, device)) and s.get("attempts", 0) >= 1, "a first attempt")
    receiver.codes[switch] = 200
    _wait_for(lambda: (s := _delivery(stack, tenant, hook, device)) and s["state"] == "delivered", "the retry", 30)
    sent = [r for r in receiver.requests if r["path"] == f"/switch/{switch}"]
    assert len(sent) == 2
    signatures = [{k.lower(): v for k, v in r["headers"].items()}["x-men-signature"] for r in sent]
    [event] = _activity(stack, tenant, hook)

    _sign_in(ui, stack, tenant, f"/#/integrations/{hook}/events/{event['id']}")
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    body = page.get_by_role("region", name="Request body (JSON)")
    expect(body).to_have_text(sent[0]["body"].decode())
    expect(page.get_by_text(f"Exactly as sent: {len(sent[0]['body'])} bytes")).to_be_visible()
    # the last attempt is open, the first one opens on demand; each has its own headers
    second = page.get_by_role("region", name="Request headers of attempt 2")
    expect(second).to_contain_text(f"X-Men-Signature: {signatures[1]}")
    expect(second).to_contain_text("webhook-signature: v1,")
    expect(page.get_by_role("region", name="Response body of attempt 2 (first 256 bytes)")).to_have_text(
        '{"received":true}'
    )
    first = page.get_by_role("region", name="Request headers of attempt 1")
    expect(first).to_be_hidden()
    page.locator("summary").filter(has_text="Attempt 1").click()
    expect(first).to_contain_text(f"X-Men-Signature: {signatures[0]}")
    expect(page.get_by_role("region", name="Response body of attempt 1 (first 256 bytes)")).to_have_text(
        '{"error":"nope"}'
    )
    expect(page.locator("main")).not_to_contain_text("c0ffee")  # signatures, never the secret
    _no_stray_text(page)
    _axe_clean(page, "event details with attempts' headers")

    # copied exactly, with a confirmation that screen readers hear (role=status)
    page.get_by_role("button", name="Copy body").click()
    expect(page.get_by_role("status").filter(has_text="Copied the body to the clipboard.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == sent[0]["body"].decode()
    page.get_by_role("button", name="Copy headers of attempt 2").click()
    expect(page.get_by_role("status").filter(has_text="Copied the headers of attempt 2")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f"X-Men-Signature: {signatures[1]}" in copied.splitlines()
    # formatted on demand; the copy stays the exact bytes
    page.get_by_label("Show formatted").check()
    expect(body).to_contain_text(f'"id": "{device}"')
    page.get_by_role("button", name="Copy body").click()
    assert page.evaluate("navigator.clipboard.readText()") == sent[0]["body"].decode()

    # an answer without the body and the headers (a server that left them out) still reads sensibly
    def old_server(route: Any) -> None:
        answer = route.fetch().json()
        answer.pop("body", None)
        for status in answer["delivery_statuses"]:
            for attempt in status["attempt_log"]:
                attempt.pop("headers", None)
        route.fulfill(json=answer)

    page.route(f"**{MANAGEMENT}/events/{event['id']}", old_server)
    page.reload()
    expect(page.get_by_text("The server did not return the body as sent")).to_be_visible()
    expect(page.get_by_role("region", name="Request body (JSON)")).to_contain_text(device)
    expect(page.locator("details[open]").get_by_text("Not kept: the request was never built")).to_be_visible()
    expect(page.get_by_text("earlier attempts are not shown")).to_have_count(0)  # every attempt kept

    # a delivery whose record kept the first and the latest attempts says how many it left out
    def trimmed_server(route: Any) -> None:
        answer = route.fetch().json()
        for status in answer["delivery_statuses"]:
            status["attempts_not_kept"] = 7
        route.fulfill(json=answer)

    page.unroute(f"**{MANAGEMENT}/events/{event['id']}")
    page.route(f"**{MANAGEMENT}/events/{event['id']}", trimmed_server)
    page.reload()
    expect(page.get_by_text("7 earlier attempts are not shown: the record keeps the first attempt")).to_be_visible()
    _no_stray_text(page)
    _axe_clean(page, "event details without headers")
    ui.assert_clean()


def test_activity_filters_and_page_are_kept_in_the_address(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    """Search by device, status, trigger and time range, and the page: in the address, so reload and Back keep them."""
    tenant = _tenant()
    page = ui.page
    hook = _create_webhook(stack, tenant, receiver.hook(f"/filters/{tenant}"))
    needle = f"needle-{uuid.uuid4().hex[:8]}"
    _provision(stack, tenant, needle)  # the oldest: on page 2 of 24 events unfiltered
    for n in range(23):
        _provision(stack, tenant, f"bulk-{n:02d}-{tenant}")
    _wait_for(
        lambda: (
            len([e for e in _activity(stack, tenant, hook) if (e.get("delivery_statuses") or [{}])[0].get("success")])
            == 24
        ),
        "24 delivered events",
        40,
    )
    _sign_in(ui, stack, tenant, f"/#/integrations/{hook}/activity")
    rows = page.locator("table.activity tbody tr")
    expect(rows).to_have_count(20, timeout=POLL_TIMEOUT)
    pager = page.get_by_role("navigation", name="Activity pages")
    expect(pager).to_contain_text("Page 1 · events 1–20 · more on the next page")
    expect(page.locator("main")).not_to_contain_text(needle)

    # search by device id: found on the first page, and in the address
    page.get_by_label("Device ID").fill(needle)
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(rf"/activity\?device={needle}$"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(needle)
    expect(page.get_by_text(f"Showing all events of device {needle}.")).to_be_visible()
    _no_stray_text(page)
    _axe_clean(page, "activity filtered by device")

    # the page is in the address too
    page.get_by_role("button", name="Clear filters").click()
    expect(page).to_have_url(re.compile(r"/activity$"))
    expect(rows).to_have_count(20)
    page.get_by_role("button", name="Next page").click()
    expect(page).to_have_url(re.compile(r"/activity\?page=2$"))
    expect(pager).to_contain_text("Page 2 · events 21–24 · last page")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.reload()
    expect(pager).to_contain_text("Page 2 · events 21–24 · last page", timeout=POLL_TIMEOUT)
    expect(page.locator("main")).to_contain_text(needle)

    # status, trigger and time range; a new filter starts at page 1
    page.get_by_label("Status").select_option("delivered")
    page.get_by_label("Event trigger").select_option("device-provisioned")
    page.get_by_label("Until").fill("2020-01-01T00:00")
    page.get_by_role("button", name="Apply filters").click()
    expect(page).to_have_url(re.compile(r"\?status=delivered&type=device-provisioned&to=20[0-9T:-]+Z$"))
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    expect(page.get_by_text("Showing delivered Device provisioned events until 2020-01-01 00:00.")).to_be_visible()
    page.get_by_label("Until").fill("")
    page.get_by_label("From").fill("2020-01-01T00:00")
    page.get_by_role("button", name="Apply filters").click()
    expect(rows).to_have_count(20)
    expect(pager).to_contain_text("Page 1 · events 1–20 · more on the next page · filtered")
    page.reload()
    expect(page.get_by_label("Status")).to_have_value("delivered")
    expect(page.get_by_label("Event trigger")).to_have_value("device-provisioned")
    expect(page.get_by_label("From")).to_have_value("2020-01-01T00:00")
    expect(rows).to_have_count(20, timeout=POLL_TIMEOUT)
    _axe_clean(page, "activity filtered by status, trigger and time")

    # Back walks through the filters and pages seen, in order
    page.go_back()
    expect(page.get_by_label("From")).to_have_value("")
    expect(page.get_by_text("No event matches these filters.")).to_be_visible()
    page.go_back()
    expect(page).to_have_url(re.compile(r"/activity\?page=2$"))
    expect(pager).to_contain_text("Page 2 · events 21–24")
    expect(page.get_by_label("Status")).to_have_value("")
    page.go_back()
    page.go_back()
    expect(page).to_have_url(re.compile(rf"\?device={needle}$"))
    expect(page.get_by_label("Device ID")).to_have_value(needle)
    expect(rows).to_have_count(1)
    ui.assert_clean()


def _health(stack: RunningStack, tenant: str, hook: str) -> dict[str, Any]:
    got = requests.get(
        f"{stack.url}{MANAGEMENT}/integrations/{hook}/health", headers=_headers(stack, tenant), timeout=10
    )
    assert got.status_code == 200, got.text
    result: dict[str, Any] = got.json()
    return result


def _bars(chart: Locator) -> dict[str, int]:
    """How many hours of ``chart`` have a delivered bar, and a failed bar, and how many hours it shows."""
    found: dict[str, int] = chart.evaluate(
        """(svg) => {
            const n = (cls) => [...svg.querySelectorAll(`rect.${cls}`)].filter((r) => r.getBBox().height > 0).length;
            return { up: n("up"), down: n("down"), hours: svg.querySelectorAll("rect.hit").length };
        }"""
    )
    return found


def test_webhook_health_chart_and_verdict_in_the_list_and_the_settings(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    tenant = _tenant()
    page = ui.page
    switch = f"health-{tenant}"
    mixed = _create_webhook(stack, tenant, receiver.hook(f"/switch/{switch}"), description="Mixed receiver")
    good = _create_webhook(stack, tenant, receiver.hook(f"/healthy/{tenant}"), description="Good receiver")
    _provision(stack, tenant, f"ok-{uuid.uuid4().hex[:6]}")
    _wait_for(lambda: _health(stack, tenant, mixed)["delivered"] >= 1, "a delivery to the mixed webhook")
    receiver.codes[switch] = 503  # from now on it fails (the good one keeps delivering)
    _provision(stack, tenant, f"bad-{uuid.uuid4().hex[:6]}")
    health = _wait_for(
        lambda: (found := _health(stack, tenant, mixed))["failed"] >= 1 and found, "a failed delivery to the mixed one"
    )
    assert len(health["hourly"]) == 24 and health["success_rate"] is not None and health["success_rate"] < 1
    _wait_for(lambda: _health(stack, tenant, good)["delivered"] >= 2, "the good webhook's deliveries")

    _sign_in(ui, stack, tenant)
    bad_row = page.get_by_role("row").filter(has_text="Mixed receiver")
    good_row = page.get_by_role("row").filter(has_text="Good receiver")
    # in words and shape: never "Healthy" when some fail
    expect(bad_row.locator(".health-badge")).to_have_text(re.compile(r"^[✕▲](Failing|Degraded)$"))
    expect(bad_row.locator(".health-badge.good")).to_have_count(0)
    expect(good_row.locator(".health-badge")).to_have_text("✓Healthy")
    expect(good_row).to_contain_text("100% delivered")
    small = bad_row.get_by_role(
        "img", name=re.compile(r"^Deliveries per hour, last 24 hours: \d+ delivered, [1-9]\d* failed")
    )
    expect(small).to_be_visible()
    bars = _bars(small)
    assert bars["hours"] == 24 and bars["up"] >= 1 and bars["down"] >= 1, bars
    _no_stray_text(page)
    _axe_clean(page, "list with health")

    # the settings: verdict, rate, last delivery, the chart with its legend and the hourly table
    bad_row.get_by_role("button", name="View details").click()
    panel = page.get_by_role("tabpanel", name="Settings")
    expect(panel.get_by_role("heading", name="Health, last 24 hours")).to_be_visible()
    expect(panel.locator(".health-verdict")).to_contain_text(
        re.compile(r"(Failing|Degraded) \d+(\.\d)?% delivered \(\d+ of \d+\)")
    )
    expect(panel.locator("dt:text-is('Last delivery') + dd")).to_contain_text("HTTP 503")
    chart = panel.get_by_role(
        "img",
        name=re.compile(
            r"^Deliveries per hour, last 24 hours: .* failed; failures in \d+ hours?, the latest at \d\d:00\.$"
        ),
    )
    expect(chart).to_be_visible()
    bars = _bars(chart)
    assert bars["hours"] == 24 and bars["up"] >= 1 and bars["down"] >= 1, bars
    expect(panel.get_by_text("Failed (below the line)")).to_be_visible()
    panel.get_by_text("Deliveries per hour as a table").click()
    table = panel.get_by_role("region", name="Deliveries per hour")
    expect(table.locator("tbody tr")).to_have_count(24)
    expect(table.locator("tbody td:last-child").filter(has_not_text=re.compile(r"^0$")).first).to_be_attached()
    _no_stray_text(page)
    _axe_clean(page, "settings with health")
    ui.assert_clean()


def test_waiting_deliveries_read_in_plain_words_and_the_backlog_shows(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    """Retrying and held deliveries are one word, "Waiting", with the server's hold reasons in plain
    sentences and a next try never in the past; the webhook's health says how many wait since when;
    a disabled webhook's event offers no Retry now (rewritten answers of the real API)."""
    tenant = _tenant()
    page = ui.page
    hook = _create_webhook(stack, tenant, receiver.hook("/waiting"), description="Waiting receiver")
    off = _create_webhook(stack, tenant, receiver.hook("/off"), description="Disabled receiver")
    requests.put(
        f"{stack.url}{MANAGEMENT}/integrations/{off}",
        json={"enabled": False},
        headers=_headers(stack, tenant),
        timeout=10,
    ).raise_for_status()

    def iso(seconds: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + seconds))

    def event(n: int, integration: str, state: str, **status: Any) -> dict[str, Any]:
        return {
            "id": f"0000000{n}-0000-4000-8000-000000000000",
            "type": "device-provisioned",
            "data": {"id": f"device-{n}", "status": "accepted"},
            "time": iso(-60 * n),
            "delivery_statuses": [{"integration_id": integration, "success": False, "state": state, **status}],
        }

    past = iso(-120)
    circuit = event(
        1,
        hook,
        "retrying",
        attempts=0,
        error=f"circuit open since {iso(-900)} (5 failures in a row): next probe at {past}",
        next_attempt=past,
    )
    trial = event(
        2,
        hook,
        "retrying",
        attempts=0,
        error="held: the webhook is on trial (no delivery to it has succeeded yet, or one failed or was slow since): "
        "4 dispatchers at a time attempt it",
        next_attempt=iso(300),
    )
    again = event(3, hook, "retrying", attempts=2, status_code=503, error="HTTP 503", next_attempt=past)
    failed = event(4, off, "failed", attempts=5, error="connection refused")
    page.route(re.compile(r".*/events\?.*"), lambda route: route.fulfill(json=[circuit, trial, again]))
    page.route(re.compile(r".*/events/00000001-.*"), lambda route: route.fulfill(json=circuit))
    page.route(re.compile(r".*/events/00000004-.*"), lambda route: route.fulfill(json=failed))
    oldest = iso(-3600)
    page.route(
        re.compile(rf".*/integrations/{hook}/health$"),
        lambda route: route.fulfill(
            json={**route.fetch().json(), "waiting": 155, "waiting_more": False, "oldest_waiting_at": oldest}
        ),
    )

    _sign_in(ui, stack, tenant, f"/#/integrations/{hook}/activity")
    rows = page.get_by_role("row")
    paused = rows.filter(has_text="device-1").locator("td[data-label='Status']")
    checking = rows.filter(has_text="device-2").locator("td[data-label='Status']")
    retried = rows.filter(has_text="device-3").locator("td[data-label='Status']")
    expect(paused).to_contain_text("Waiting, not attempted yet")
    expect(paused).to_contain_text("The webhook has been failing; devicehooks tries it again any moment now.")
    expect(checking).to_contain_text(
        re.compile(r"devicehooks is checking the webhook works before sending more\. Next try \d\d:\d\d:\d\d")
    )
    expect(retried.locator(".status.retry")).to_contain_text("Waiting")
    expect(retried).to_contain_text("Last attempt: HTTP 503. Next try any moment now")
    table = page.get_by_role("table")
    for jargon in ("Held", "Retrying", "Paused", "was due", "on trial", "dispatchers"):
        expect(table).not_to_contain_text(jargon)
    expect(page.get_by_label("Status")).to_contain_text("Waiting")
    _no_stray_text(page)
    _axe_clean(page, "activity with waiting deliveries in plain words")

    # the details: the reason in words (and the server's own), and a next attempt that is not in the past
    rows.filter(has_text="device-1").get_by_role("button", name="View details").click()
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    reason = page.locator("dt:text-is('Waiting because') + dd")
    expect(reason).to_contain_text("The webhook has been failing; devicehooks tries it again any moment now")
    expect(reason).to_contain_text("circuit open since")
    expect(page.locator("dt:text-is('Next attempt') + dd")).to_have_text("Any moment now")
    _no_stray_text(page)
    _axe_clean(page, "event details of a waiting delivery")

    # the webhook's health: how many wait, since when
    ui.open(f"/#/integrations/{hook}")
    backlog = page.get_by_role("tabpanel", name="Settings").locator(".health-backlog")
    expect(backlog).to_have_text(re.compile(r"^155 deliveries waiting, the oldest since (\d{4}-\d\d-\d\d )?\d\d:\d\d$"))
    expect(backlog.locator("time")).to_have_attribute("datetime", oldest)
    _no_stray_text(page)
    _axe_clean(page, "settings with the deliveries waiting")

    # a disabled webhook's event: no Retry now (the server would refuse it), and why
    ui.open(f"/#/integrations/{off}/events/{failed['id']}")
    expect(page.get_by_role("heading", name="Event details")).to_be_visible()
    expect(page.locator(".disabled-note")).to_have_text(
        "The webhook is disabled, so this event cannot be sent to it: enable it on the Settings tab first."
    )
    expect(page.get_by_role("button", name=re.compile("Retry now|Redeliver"))).to_have_count(0)
    _no_stray_text(page)
    _axe_clean(page, "event details of a disabled webhook's delivery")
    ui.assert_clean()


def _health_asked(page: Page) -> list[str]:
    """The ids of the webhooks whose health the page asks for, in order, as it asks."""
    asked: list[str] = []
    health = re.compile(r".*/integrations/([^/?]+)/health$")

    def seen(request: Any) -> None:
        if found := health.match(request.url):
            asked.append(found[1])

    page.on("request", seen)
    return asked


def _wait_on_page(page: Page, probe: Callable[[], bool], what: str, deadline: float = 20.0) -> None:
    """``probe()`` true within ``deadline`` seconds, asked while the page's events are handled (the
    requests a listener records arrive only while Playwright runs: ``time.sleep`` would hold them)."""
    end = time.monotonic() + deadline
    while not probe():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline} s: {what}")
        page.wait_for_timeout(200)


def _axe_clean_on_a_stopped_clock(page: Page, screen: str) -> None:
    """axe (which needs timers) on a page whose clock the test stopped; stopped again after."""
    page.clock.resume()
    try:
        _axe_clean(page, screen)
    finally:
        now: float = page.evaluate("Date.now()")
        page.clock.pause_at(datetime.fromtimestamp(now / 1000 + 0.5, UTC))


def test_99_webhooks_are_searched_sorted_and_paged_with_health_for_the_rows_shown_only(
    browser: Browser, short_stack: RunningStack, receiver: Receiver
) -> None:
    """A tenant with 99 webhooks (issue 21: an 8,285 px page and 99 health requests): 20 rows a
    page, each row's health asked for when the row is shown and not before, a search, a sort, the
    page in the address; URLs shown with their query values masked; the list fetched again every
    30 s while the tab is visible (the page's clock run forward), never while it is hidden, with
    the time it was updated; times in the browser's zone, which the page names."""
    stack = short_stack
    session = _new_session(browser, stack, 1280, 860, timezone="America/New_York")
    page = session.page
    try:
        tenant = _tenant()
        with ThreadPoolExecutor(4) as pool:  # the local stack runs 4 API environments at most
            ids = list(
                pool.map(
                    lambda n: _create_webhook(
                        stack,
                        tenant,
                        receiver.hook(f"/many/{n}?token=secret-{n}&v=2"),
                        description=f"Hook {n:03d}",
                        timeout=60,  # 99 creates: a machine shared with other work may be slow
                    ),
                    range(99),
                )
            )
        by_name = {f"Hook {n:03d}": hook for n, hook in enumerate(ids)}
        requests.put(
            f"{stack.url}{MANAGEMENT}/integrations/{ids[50]}",
            json={"enabled": False},
            headers=_headers(stack, tenant),
            timeout=10,
        ).raise_for_status()
        # one webhook's backlog, as the health API gives it when deliveries wait (rewritten answer)
        oldest = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 3600))
        page.route(
            re.compile(rf".*/integrations/{ids[3]}/health$"),
            lambda route: route.fulfill(
                json={**route.fetch().json(), "waiting": 155, "waiting_more": False, "oldest_waiting_at": oldest}
            ),
        )
        asked = _health_asked(page)
        listed: list[str] = []
        page.on("request", lambda r: listed.append(r.url) if r.url.endswith(f"{MANAGEMENT}/integrations") else None)
        page.clock.install()
        _sign_in(session, stack, tenant)
        # the page's clock stopped: its 30 s refresh comes only when the test runs the clock forward
        page.clock.pause_at(datetime.now(UTC) + timedelta(seconds=1))

        rows = page.locator("tbody tr")
        names = page.locator("tbody tr td[data-label='Description']")
        expect(rows).to_have_count(20)
        expect(page.locator("td.health .health-badge")).to_have_count(20)
        expect(names.first).to_have_text("Hook 000")
        expect(names.last).to_have_text("Hook 019")
        expect(page.locator(".list-count")).to_have_text("99 webhooks, 1–20 shown.")
        expect(page.get_by_role("navigation", name="Webhook pages")).to_contain_text("Page 1 of 5")
        assert sorted(asked) == sorted(by_name[f"Hook {n:03d}"] for n in range(20))  # the rows shown, once each
        # the backlog in the list, from the health the list fetched
        backlog = rows.filter(has_text="Hook 003").locator(".health-backlog")
        expect(backlog).to_have_text(re.compile(r"^155 deliveries waiting, the oldest since \d\d:\d\d$"))
        # query-string values masked: the token is never on screen
        expect(rows.filter(has_text="Hook 001").locator("td.url")).to_have_text(
            receiver.hook("/many/1?token=•••&v=•••")
        )
        expect(page.locator("main")).not_to_contain_text("secret-")
        # the time zone named, the time updated in it (New York, UTC−05:00 in winter)
        expect(page.locator("#zone")).to_have_text(re.compile(r"^Times in America/New_York \(UTC−0[45]:00\)$"))
        updated = page.locator(".updated time")
        expect(updated).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
        _no_stray_text(page)
        _axe_clean_on_a_stopped_clock(page, "the first page of 99 webhooks")
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height < 3000, f"the list is {height} px high"

        # the next page: its 20 rows' health, and nothing else
        page.get_by_role("button", name="Next page").click()
        expect(names.first).to_have_text("Hook 020")
        expect(page.locator("td.health .health-badge")).to_have_count(20)
        assert "page=2" in page.url
        assert sorted(asked) == sorted(by_name[f"Hook {n:03d}"] for n in range(40))
        page.go_back()
        expect(names.first).to_have_text("Hook 000")

        # a search: the matching rows only, in the address; one health more (row 42 was never shown)
        page.get_by_label("Search").fill("hook 042")
        expect(rows).to_have_count(1)
        expect(names.first).to_have_text("Hook 042")
        expect(page.locator(".list-count")).to_have_text("1 of 99 webhooks match.")
        expect(page.get_by_role("navigation", name="Webhook pages")).to_be_hidden()
        expect(page.locator("td.health .health-badge")).to_have_count(1)
        assert "q=hook+042" in page.url
        assert len(asked) == 41 and asked[-1] == by_name["Hook 042"]
        page.get_by_label("Search").fill("secret-42")  # a masked value is not searched: it tells nothing
        expect(page.locator(".list-count")).to_have_text("No webhook matches “secret-42”.")
        page.get_by_label("Search").fill("no such hook")
        expect(page.locator(".list-count")).to_have_text("No webhook matches “no such hook”.")
        _axe_clean_on_a_stopped_clock(page, "a search that finds nothing")
        page.get_by_label("Search").fill("")
        expect(rows).to_have_count(20)

        # sorted with the problems first: the disabled webhook leads
        page.get_by_label("Sort by").select_option("state")
        expect(rows.first).to_contain_text("Hook 050")
        expect(rows.first).to_contain_text("Disabled")
        assert "sort=state" in page.url

        # 30 s later the list and the rows' health are fetched again, and the time says so
        was = updated.get_attribute("datetime")
        lists, healths = len(listed), len(asked)
        page.clock.fast_forward(31_000)
        expect(updated).not_to_have_attribute("datetime", was or "")
        _wait_on_page(page, lambda: len(asked) >= healths + 20, "the health of the 20 rows shown, again")
        assert len(listed) == lists + 1

        # a hidden tab asks nothing, however long; shown again, it is brought up to date at once
        page.evaluate(
            """() => {
                Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
                document.dispatchEvent(new Event("visibilitychange"));
            }"""
        )
        lists, healths = len(listed), len(asked)
        page.clock.fast_forward(5 * 60_000)
        page.wait_for_timeout(500)  # no deadline to wait for: give a wrongly scheduled refresh its chance
        assert (len(listed), len(asked)) == (lists, healths)
        page.evaluate(
            """() => {
                Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
                document.dispatchEvent(new Event("visibilitychange"));
            }"""
        )
        _wait_on_page(page, lambda: len(listed) == lists + 1, "the list fetched again once the tab is visible")
        session.assert_clean()
    finally:
        # a health request still in flight must not reach the rewriting route once the context is gone
        page.unroute_all(behavior="ignoreErrors")
        session.context.close()


def test_the_waiting_count_refusals_test_types_and_the_named_delete_dialog(
    ui: Session, stack: RunningStack, receiver: Receiver
) -> None:
    """A webhook whose deliveries wait (a receiver answering 503): the list says how many; a stale
    page's Retry now on a webhook disabled meanwhile shows the server's own refusal; its heading is
    its URL's host (no description), its URL shown masked; a test event of a chosen type; the
    delete dialog names it and says how many deliveries wait for it."""
    tenant = _tenant()
    page = ui.page
    switch = f"waiting-{tenant}"
    receiver.codes[switch] = 503
    path = f"/switch/{switch}?key=hunter2"
    hook = _create_webhook(stack, tenant, receiver.hook(path))
    device = f"dev-w-{uuid.uuid4().hex[:6]}"
    _provision(stack, tenant, device)
    _wait_for(
        lambda: (s := _delivery(stack, tenant, hook, device)) and s["state"] == "retrying" and s["attempts"] >= 2,
        "the delivery waits after 2 attempts",
    )
    _sign_in(ui, stack, tenant)
    row = page.get_by_role("row").filter(has_text=f"/switch/{switch}")
    expect(row.locator("td.url")).to_have_text(receiver.hook(f"/switch/{switch}?key=•••"))
    expect(row.locator(".health-backlog")).to_have_text(re.compile(r"^1 delivery waiting, since \d\d:\d\d$"))
    _axe_clean(page, "the list with a webhook's deliveries waiting")

    # the webhook's page: its host as heading and title, its URL masked
    row.get_by_role("button", name="View details").click()
    host = receiver.url.removeprefix("http://")
    expect(page.get_by_role("heading", level=1)).to_have_text(host)
    expect(page).to_have_title(f"{host} · Webhook · devicehooks")
    expect(page.locator("main")).not_to_contain_text("hunter2")

    # a test event of a chosen type: a sample of that type reaches the receiver
    receiver.codes[switch] = 200
    panel = page.get_by_role("tabpanel", name="Settings")
    panel.get_by_label("Test event type").select_option("device-decommissioned")
    _axe_clean(page, "settings with the test event type chooser")
    before = len(receiver.requests)
    with page.expect_request(re.compile(r".*/test$")) as asked:
        panel.get_by_role("button", name="Send test event").click()
    assert asked.value.post_data_json == {"type": "device-decommissioned"}
    expect(panel.get_by_text("Test event delivered: HTTP 200")).to_be_visible()
    sample = [r for r in receiver.requests[before:] if r["path"].startswith(f"/switch/{switch}")]
    assert [json.loads(r["body"])["type"] for r in sample] == ["device-decommissioned"]
    receiver.codes[switch] = 503

    # a stale page: the webhook is disabled elsewhere; Retry now gets the server's refusal, as given
    page.get_by_role("tab", name="Activity").click()
    retry = page.get_by_role("row").filter(has_text=device).get_by_role("button", name=re.compile("^Retry now"))
    expect(retry).to_be_visible(timeout=POLL_TIMEOUT)
    requests.put(
        f"{stack.url}{MANAGEMENT}/integrations/{hook}",
        json={"enabled": False},
        headers=_headers(stack, tenant),
        timeout=10,
    ).raise_for_status()
    retry.click()
    with page.expect_response(re.compile(r".*/events/[^/]+/retry$")) as answered:
        page.get_by_role("dialog", name="Retry now").get_by_role("button", name="Retry now").click()
    assert answered.value.status == 409
    expect(page.get_by_role("alert")).to_have_text(
        "The delivery was not retried: the webhook is disabled; enable it before retrying"
    )
    _axe_clean(page, "a refused Retry now on a webhook disabled meanwhile")

    # the delete dialog names the webhook and says what waits for it
    requests.put(
        f"{stack.url}{MANAGEMENT}/integrations/{hook}",
        json={"enabled": True},
        headers=_headers(stack, tenant),
        timeout=10,
    ).raise_for_status()
    page.get_by_role("tab", name="Settings").click()
    panel.get_by_role("button", name="Delete webhook").click()
    dialog = page.get_by_role("dialog", name="Delete webhook")
    expect(dialog).to_contain_text(
        f"Delete the webhook {receiver.hook(f'/switch/{switch}?key=•••')}? "
        "1 delivery is waiting for it: it is never sent."
    )
    _axe_clean(page, "the named delete dialog")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert len(_integrations(stack, tenant)) == 1
    ui.assert_clean()
