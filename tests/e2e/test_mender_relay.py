"""Mender's workflows, unchanged, through the relay (docs/mender.md).

Each task of Mender's workflows that calls iot-manager (mender-server
``backend/services/workflows/worker/workflows/*.json``) is replayed as the workflows worker sends
it: plain HTTP to ``$IOT_MANAGER_ADDR``, the path built with ``${encoding=url;...}`` (Go's
``url.QueryEscape``) from ids that need it, Go's canonical ``X-Men-Requestid``, the body as the
worker marshals the task's ``json`` (Go's ``json.Marshal`` of the workflow's input: compact, keys
sorted). It goes to the relay (devicehooks_relay), which signs it with SigV4; a stand-in for API
Gateway's IAM check (tests/sigv4_gateway.py) recomputes the signature with botocore from what it
received and forwards it to the local stack's internal API. Each answer must be a status the
task accepts, and the tenant's webhook must receive the event.
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
from botocore.credentials import Credentials

from devicehooks_dev.local.process import RunningStack
from devicehooks_relay.relay import Relay, Settings
from tests.e2e.tenant import MGMT
from tests.mender_workflows import (
    BASE,
    DECOMMISSION_OK,
    PROVISION_OK,
    STATUS_OK,
    go_json,
    go_query_escape,
    workflow_tasks,
)
from tests.receiver import Receiver
from tests.sigv4_gateway import SigV4Gateway

pytestmark = pytest.mark.e2e

REGION = "eu-west-1"


def as_worker_sends(base_url: str, method: str, target: str, body: bytes | None, request_id: str) -> tuple[int, bytes]:
    """One request as Go's client sends the worker's (``http.NewRequest`` + ``Header.Add``): the
    raw target, untouched by any client-side re-encoding."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=120)
    headers = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip", "X-Men-Requestid": request_id}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, target, body=body if body is not None else b"", headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def credentials() -> Credentials:
    """The relay's key, and the one the stand-in knows (made per run: nothing committed)."""
    return Credentials("AKIDRELAYTEST", secrets.token_hex(20))


@pytest.fixture(scope="module")
def gateway(local_stack: RunningStack, credentials: Credentials) -> Iterator[SigV4Gateway]:
    stand_in = SigV4Gateway(credentials, REGION, local_stack.url)
    yield stand_in
    stand_in.close()


def _relay(upstream: str, credentials: Credentials, read_timeout: float = 30.0) -> Relay:
    settings = Settings.make(upstream, REGION, host="127.0.0.1", port=0, read_timeout=read_timeout)
    return Relay(settings, credentials).start()


@pytest.fixture(scope="module")
def relay(gateway: SigV4Gateway, credentials: Credentials) -> Iterator[Relay]:
    # generous: a loaded test machine may take many seconds to start the functions' environments
    running = _relay(gateway.url, credentials, read_timeout=90)
    yield running
    running.stop()


def test_mender_workflow_tasks_through_the_relay_are_accepted_and_reach_the_webhook(
    local_stack: RunningStack, gateway: SigV4Gateway, relay: Relay, receiver: Receiver
) -> None:
    # ids that need ${encoding=url;...}: '/', '#', '%', '+', ':', '@' and non-ASCII
    tenant_id = f"acme/eu#{uuid.uuid4().hex[:8]}"
    device = {
        "id": "dev/1#é:@+%x",
        "status": "accepted",
        "created_ts": "2025-01-02T03:04:05.123456789Z",
        "revision": 2,  # deviceauth adds it (updateDeviceStatusEvent's AdditionalProperties)
        "auth_sets": [
            {
                "id": str(uuid.uuid4()),
                "device_id": "dev/1#é:@+%x",
                "identity_data": {"mac": "00:11:22:33:44:55"},
                "pubkey": "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA<&>\n-----END PUBLIC KEY-----\n",
                "status": "accepted",
                "ts": "2025-01-02T03:04:05Z",
            }
        ],
    }
    token = local_stack.token(tenant_id)
    body = {"provider": "webhook", "credentials": {"type": "http", "http": {"url": receiver.url("/mender")}}}
    created = requests.post(
        f"{local_stack.url}{MGMT}/integrations", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    assert created.status_code == 201, created.text

    tasks = workflow_tasks(tenant_id, device)
    for task in tasks:
        request_id = str(uuid.uuid4())
        target = f"{BASE}{task.path}"
        status, answer = as_worker_sends(relay.url, task.method, target, task.body, request_id)
        label = f"{task.workflow}/{task.name}"
        assert status in task.accepted, f"{label}: {status} {answer!r}"
        seen = gateway.seen[-1]
        assert seen.verified, label
        assert seen.target == target, label  # the url-encoded ids arrive exactly as the worker wrote them
        assert seen.method == task.method
        assert seen.headers["x-men-requestid"] == request_id
        assert seen.body == (task.body or b"")

    got = receiver.wait_for(len(tasks), "/mender", timeout=120)
    events = [json.loads(r.body) for r in got]
    assert sorted(e["type"] for e in events) == sorted(t.event for t in tasks)
    assert {e["data"]["id"] for e in events} == {device["id"]}
    statuses = sorted(e["data"]["status"] for e in events if e["type"] == "device-status-changed")
    assert statuses == ["accepted", "rejected"]


def test_the_relay_checks_devicehooks_with_a_signed_request(relay: Relay, gateway: SigV4Gateway) -> None:
    assert requests.get(f"{relay.url}/healthz", timeout=5).json() == {"status": "ok"}
    answer = requests.get(f"{relay.url}/healthz/upstream", timeout=120)
    assert answer.status_code == 200, answer.text
    assert gateway.seen[-1].target == f"{BASE}/alive" and gateway.seen[-1].verified


def test_an_unsigned_request_or_a_wrong_signature_is_refused(gateway: SigV4Gateway, credentials: Credentials) -> None:
    target = f"{BASE}/tenants/acme/devices"
    body = go_json({"id": "dev-1"})
    status, answer = as_worker_sends(gateway.url, "POST", target, body, str(uuid.uuid4()))
    assert (status, json.loads(answer)) == (403, {"message": "Forbidden"})
    assert not gateway.seen[-1].verified

    wrong = Credentials(credentials.access_key, secrets.token_hex(20))
    relay = _relay(gateway.url, wrong)
    try:
        status, answer = as_worker_sends(relay.url, "POST", target, body, str(uuid.uuid4()))
    finally:
        relay.stop()
    # the gateway's refusal is passed back: a status no task accepts, so the workflow retries, then fails
    assert status == 403 and b"signature" in answer
    assert status not in PROVISION_OK | STATUS_OK | DECOMMISSION_OK
    assert not gateway.seen[-1].verified


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/api/management/v1/iot-manager/integrations", 404),
        ("/api/internal/v1/deviceauth/tenants/acme/devices", 404),
        ("/healthz/../api/internal/v1/iot-manager/tenants/acme/devices", 404),
        (f"{BASE}/../../management/v1/iot-manager/integrations", 400),
        (f"{BASE}/%2E%2E/%2e%2e/management/v1/iot-manager/integrations", 400),
        (f"{BASE}/tenants/acme/devices<x>", 400),
    ],
)
def test_a_path_outside_the_internal_api_is_refused_by_the_relay(
    relay: Relay, gateway: SigV4Gateway, target: str, status: int
) -> None:
    before = len(gateway.seen)
    got, answer = as_worker_sends(relay.url, "POST", target, b"{}", "req-1")
    assert got == status, answer
    assert json.loads(answer)["request_id"] == "req-1"
    assert len(gateway.seen) == before  # nothing was sent


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_devicehooks_unreachable_is_a_5xx_the_workflow_retries(credentials: Credentials) -> None:
    relay = _relay(f"http://127.0.0.1:{_closed_port()}", credentials)
    try:
        target = f"{BASE}/tenants/{go_query_escape('acme/eu')}/devices/{go_query_escape('dev#1')}"
        status, answer = as_worker_sends(relay.url, "DELETE", target, None, "req-2")
        assert status == 502
        assert status not in DECOMMISSION_OK  # a status the task does not accept: retried, not a connection error
        error = json.loads(answer)
        assert error["request_id"] == "req-2" and "cannot be reached" in error["error"]
        # the relay itself stays healthy (its probe does not go upstream); the upstream check says why
        assert requests.get(f"{relay.url}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{relay.url}/healthz/upstream", timeout=5).status_code == 502
    finally:
        relay.stop()


def test_devicehooks_not_answering_in_time_is_a_504(credentials: Credentials) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        relay = _relay(f"http://127.0.0.1:{silent.getsockname()[1]}", credentials, read_timeout=0.5)
        try:
            status, answer = as_worker_sends(relay.url, "PUT", f"{BASE}/tenants/acme/bulk/devices/status/accepted",
                                             b'[{"id":"dev-1"}]', "req-3")  # fmt: skip
        finally:
            relay.stop()
    assert status == 504 and status not in STATUS_OK
    assert "did not answer within 0.5 s" in json.loads(answer)["error"]
