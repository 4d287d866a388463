"""End to end: only admins change integrations, both ways a deployment decides who is an admin.

Two ``devicehooks local`` stacks: one standalone (``DEVICEHOOKS_ADMIN_CLAIM=roles``, tokens from
``devicehooks token --role``), one alongside Mender (``DEVICEHOOKS_USERADM_VERIFY_URL`` naming a
real HTTP server that speaks useradm's verify contract, tests/useradm.py). In both, a non-admin
is refused every write with Mender's 403 and allowed every read; alongside Mender, a useradm that
fails or cannot be reached means 503 for writes and reads that still work.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from pytest_httpserver import HTTPServer

from devicehooks.security.useradm import UNAVAILABLE
from devicehooks_dev.cli import ROLE_CLAIM
from devicehooks_dev.local.process import BIN, RunningStack, start_stack, stop_stack
from tests.useradm import VERIFY_PATH, FakeUseradm

pytestmark = pytest.mark.e2e
BASE = "/api/management/v1/iot-manager"


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    """One real HTTP server: the fake useradm, and the webhook receiver of the test deliveries."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    server.expect_request("/hook", method="POST").respond_with_data("ok")
    yield server
    if server.is_running():
        server.stop()


def _public_pem(key_file: Path) -> str:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(
        tmp_path_factory.mktemp("rbac-standalone"),
        {"DEVICEHOOKS_ADMIN_CLAIM": ROLE_CLAIM, "DEVICEHOOKS_ADMIN_CLAIM_VALUES": "admin"},
    )
    yield stack
    stop_stack(stack)


@dataclass
class MenderStack:
    stack: RunningStack
    useradm: FakeUseradm
    server: HTTPServer


@pytest.fixture(scope="module")
def mender(tmp_path_factory: pytest.TempPathFactory, server: HTTPServer) -> Iterator[MenderStack]:
    useradm = FakeUseradm(public_pem="")
    server.expect_request(VERIFY_PATH).respond_with_handler(useradm)
    workdir = tmp_path_factory.mktemp("rbac-mender")
    stack = start_stack(workdir, {"DEVICEHOOKS_USERADM_VERIFY_URL": server.url_for(VERIFY_PATH)})
    useradm.public_pem = _public_pem(workdir / "dev-key.pem")  # the stack made its development key
    yield MenderStack(stack, useradm, server)
    stop_stack(stack)


def _token(stack: RunningStack, tenant: str, role: str) -> str:
    """``devicehooks token --role``, as a developer runs it."""
    command = [str(BIN / "devicehooks"), "token", "--tenant", tenant, "--role", role]
    return subprocess.run(command, env=stack.env, check=True, capture_output=True, text=True).stdout.strip()


def _call(stack: RunningStack, token: str, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method, f"{stack.url}{BASE}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


@dataclass
class Tenant:
    """A tenant with one webhook and one event in its activity log, made by an admin."""

    name: str
    integration_id: str
    event_id: str


def _tenant(stack: RunningStack, server: HTTPServer) -> Tenant:
    name = f"tenant-{uuid.uuid4()}"
    admin = _token(stack, name, "admin")
    created = _call(stack, admin, "POST", "/integrations", _webhook(server))
    assert created.status_code == 201, created.text
    integration_id = created.headers["Location"].rsplit("/", 1)[1]
    tested = _call(stack, admin, "POST", f"/integrations/{integration_id}/test")
    assert tested.status_code == 200 and tested.json()["success"] is True, tested.text
    return Tenant(name, integration_id, tested.json()["event_id"])


def _webhook(server: HTTPServer) -> dict[str, Any]:
    return {
        "provider": "webhook",
        "credentials": {"type": "http", "http": {"url": server.url_for("/hook"), "secret": "deadbeef"}},
        "description": "rbac",
    }


def _writes(tenant: Tenant, server: HTTPServer) -> list[tuple[str, str, Any]]:
    """Every request that changes something, valid in every other way."""
    integration = f"/integrations/{tenant.integration_id}"
    return [
        ("POST", "/integrations", _webhook(server)),
        ("PUT", integration, {"description": "changed"}),
        ("PUT", f"{integration}/credentials", {"type": "http", "http": {"url": server.url_for("/hook")}}),
        ("POST", f"{integration}/test", None),
        ("POST", f"{integration}/recover", {"since": "2026-01-01T00:00:00Z"}),
        ("POST", f"/events/{tenant.event_id}/redeliver", {"integration_id": tenant.integration_id}),
        ("POST", f"/events/{tenant.event_id}/retry", {"integration_id": tenant.integration_id}),
        ("PATCH", integration, {"description": "changed"}),
        ("DELETE", integration, None),
    ]


def _reads(tenant: Tenant) -> list[str]:
    return [
        "/integrations",
        f"/integrations/{tenant.integration_id}",
        "/events",
        f"/events/{tenant.event_id}",
    ]


def _assert_refused(response: requests.Response, status: int, message: str) -> None:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body["error"] == message
    assert uuid.UUID(body["request_id"])
    assert set(body) == {"error", "request_id"}


def _assert_unchanged(stack: RunningStack, tenant: Tenant) -> None:
    admin = _token(stack, tenant.name, "admin")
    listed = _call(stack, admin, "GET", "/integrations").json()
    assert [(i["id"], i["description"]) for i in listed] == [(tenant.integration_id, "rbac")]


def _assert_reads_allowed(stack: RunningStack, token: str, tenant: Tenant) -> None:
    for path in _reads(tenant):
        response = _call(stack, token, "GET", path)
        assert response.status_code == 200, (path, response.text)
    listed = _call(stack, token, "GET", "/integrations").json()
    assert [i["id"] for i in listed] == [tenant.integration_id]
    events = _call(stack, token, "GET", "/events").json()
    assert tenant.event_id in [e["id"] for e in events]


def _assert_admin_writes(stack: RunningStack, token: str, tenant: Tenant, server: HTTPServer) -> None:
    for method, path, body in _writes(tenant, server):
        response = _call(stack, token, method, path, body)
        # each gets the route's own answer: success, or the API's refusal of the request itself
        # (a test event is not redelivered or retried: 409; PATCH is no route: 405), never 401/403/503
        assert response.status_code in {200, 201, 202, 204, 405, 409}, (method, path, response.text)
    assert _call(stack, token, "GET", f"/integrations/{tenant.integration_id}").status_code == 404  # deleted


# ------------------------------------------------------------------ standalone: a token claim


def test_standalone_a_user_without_the_admin_role_is_refused_every_write(
    standalone: RunningStack, server: HTTPServer
) -> None:
    tenant = _tenant(standalone, server)
    user = _token(standalone, tenant.name, "user")
    for method, path, body in _writes(tenant, server):
        _assert_refused(_call(standalone, user, method, path, body), 403, "unauthorized")
    _assert_unchanged(standalone, tenant)


def test_standalone_a_token_without_any_role_claim_is_not_an_admin(
    standalone: RunningStack, server: HTTPServer
) -> None:
    tenant = _tenant(standalone, server)
    plain = standalone.token(tenant.name)  # devicehooks token without --role
    _assert_refused(_call(standalone, plain, "DELETE", f"/integrations/{tenant.integration_id}"), 403, "unauthorized")
    assert _call(standalone, plain, "GET", "/integrations").status_code == 200


def test_standalone_a_user_without_the_admin_role_reads_everything(
    standalone: RunningStack, server: HTTPServer
) -> None:
    tenant = _tenant(standalone, server)
    _assert_reads_allowed(standalone, _token(standalone, tenant.name, "user"), tenant)


def test_standalone_an_admin_may_write(standalone: RunningStack, server: HTTPServer) -> None:
    tenant = _tenant(standalone, server)
    _assert_admin_writes(standalone, _token(standalone, tenant.name, "admin"), tenant, server)


def test_standalone_the_web_uis_development_token_is_an_admins(standalone: RunningStack, server: HTTPServer) -> None:
    """The local stack's UI signs in with ``/local/dev-token``: with a claim deciding, it must be
    an admin's, or the UI could not manage the webhooks it shows."""
    tenant = _tenant(standalone, server)
    minted = requests.post(f"{standalone.url}/local/dev-token", json={"tenant": tenant.name}, timeout=30)
    assert minted.status_code == 200, minted.text
    token = minted.json()["token"]
    response = _call(standalone, token, "PUT", f"/integrations/{tenant.integration_id}", {"description": "ui"})
    assert response.status_code == 200 and response.json()["description"] == "ui", response.text


# ------------------------------------------------------------------ alongside Mender: useradm decides


def test_alongside_mender_useradm_refusing_a_user_refuses_every_write(mender: MenderStack) -> None:
    stack = mender.stack
    tenant = _tenant(stack, mender.server)
    user = _token(stack, tenant.name, "user")
    for method, path, body in _writes(tenant, mender.server):
        _assert_refused(_call(stack, user, method, path, body), 403, "unauthorized")
    _assert_unchanged(stack, tenant)
    asked = mender.useradm.forwarded()
    # asked about the very request, by Mender's path, as Mender's gateway asks
    assert ("DELETE", f"{BASE}/integrations/{tenant.integration_id}") in asked
    assert ("POST", f"{BASE}/events/{tenant.event_id}/redeliver") in asked


def test_alongside_mender_a_read_only_user_reads_everything(mender: MenderStack) -> None:
    tenant = _tenant(mender.stack, mender.server)
    _assert_reads_allowed(mender.stack, _token(mender.stack, tenant.name, "user"), tenant)


def test_alongside_mender_an_admin_may_write(mender: MenderStack) -> None:
    tenant = _tenant(mender.stack, mender.server)
    _assert_admin_writes(mender.stack, _token(mender.stack, tenant.name, "admin"), tenant, mender.server)


def test_alongside_mender_a_failing_useradm_means_503_for_writes_and_reads_go_on(mender: MenderStack) -> None:
    stack = mender.stack
    tenant = _tenant(stack, mender.server)
    admin = _token(stack, tenant.name, "admin")  # never asked about before: nothing remembered
    mender.useradm.failing = 500
    try:
        for method, path, body in _writes(tenant, mender.server):
            _assert_refused(_call(stack, admin, method, path, body), 503, UNAVAILABLE)
        _assert_reads_allowed(stack, admin, tenant)
    finally:
        mender.useradm.failing = None
    _assert_unchanged(stack, tenant)


def test_alongside_mender_an_unreachable_useradm_means_503_for_writes_and_reads_go_on(mender: MenderStack) -> None:
    stack = mender.stack
    tenant = _tenant(stack, mender.server)
    admin = _token(stack, tenant.name, "admin")
    mender.server.stop()
    try:
        for method, path, body in _writes(tenant, mender.server):
            _assert_refused(_call(stack, admin, method, path, body), 503, UNAVAILABLE)
        for path in _reads(tenant):
            assert _call(stack, admin, "GET", path).status_code == 200, path
    finally:
        mender.server.start()
    _assert_unchanged(stack, tenant)
    # useradm back: the same token's writes are asked about again (an outage is not remembered)
    assert _call(stack, admin, "PUT", f"/integrations/{tenant.integration_id}", {"enabled": True}).status_code == 200
