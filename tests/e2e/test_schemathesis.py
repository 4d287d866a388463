"""Generated hostile input: schemathesis against the OpenAPI documents the running local stack serves.

Three campaigns, each one pytest test driven by schemathesis' pytest integration
(``schemathesis.pytest.from_fixture``): the management API with tenant A's token, the same
with tenant B's, and the internal API. Each runs schemathesis' coverage phase (boundary and
invalid values, missing and wrong-typed fields, unexpected methods) and its fuzzing phase
(positive and negative data) with a fixed seed and a fixed number of examples per operation,
so every run sends the same requests. Every response must pass:

- ``not_a_server_error``: no 5xx, whatever the input;
- ``status_code_conformance``: the status is one the operation documents;
- ``content_type_conformance`` and ``response_schema_conformance``: the body is what the
  document says (Mender's ``{"error","request_id"}`` for errors).

Both tenants own real integrations (pointing at a local receiver) and tenant A has recorded
events, and a share of the generated path ids are swapped for real ones, of the caller's
tenant or of the other: the answers must never carry the other tenant's data nor any secret.
A last test checks that the campaigns ran at least 1,000 cases in all, and prints the count.
"""

from __future__ import annotations

import re
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from pytest_httpserver import HTTPServer
from schemathesis.checks import (  # type: ignore[attr-defined]
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

MANAGEMENT = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"
SEED = 20261127
# Fuzzing-phase examples per operation (the coverage phase adds its own deterministic cases).
MAX_EXAMPLES = 40
MINIMUM_CASES = 1_000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Answers to swapped-in real ids: one in three generated ids is replaced.
SWAP_ONE_IN = 3


@dataclass
class Tenant:
    name: str
    token: str
    secret: str
    marker: str
    integration_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


@dataclass
class World:
    stack: RunningStack
    a: Tenant
    b: Tenant

    def other(self, tenant: Tenant) -> Tenant:
        return self.b if tenant is self.a else self.a


@dataclass
class Tally:
    """What each campaign ran: cases per operation and the statuses they got."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    done: bool = False


TALLIES: dict[str, Tally] = {name: Tally() for name in ("management-a", "management-b", "internal")}


@pytest.fixture(scope="module")
def receiver() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request(re.compile(".*")).respond_with_data("ok", status=200)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def _create(stack: RunningStack, tenant: Tenant, url: str, n: int) -> str:
    body = {
        "provider": "webhook",
        "credentials": {"type": "http", "http": {"url": url, "secret": tenant.secret}},
        "description": f"{tenant.marker} #{n}",
    }
    created = requests.post(
        f"{stack.url}{MANAGEMENT}/integrations",
        json=body,
        headers={"Authorization": f"Bearer {tenant.token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return str(created.headers["Location"].rsplit("/", 1)[1])


def _events(stack: RunningStack, tenant: Tenant) -> list[dict[str, Any]]:
    listed = requests.get(
        f"{stack.url}{MANAGEMENT}/events", headers={"Authorization": f"Bearer {tenant.token}"}, timeout=10
    )
    assert listed.status_code == 200, listed.text
    events: list[dict[str, Any]] = listed.json()
    return events


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, receiver: HTTPServer) -> Iterator[World]:
    stack = start_stack(tmp_path_factory.mktemp("schemathesis"))
    try:
        a, b = (
            Tenant(
                name=f"fuzz-{label}-{uuid.uuid4().hex[:8]}",
                token="",
                secret=uuid.uuid4().hex + uuid.uuid4().hex,
                marker=f"tenant-{label}-marker-{uuid.uuid4().hex}",
            )
            for label in ("a", "b")
        )
        for tenant, label in ((a, "a"), (b, "b")):
            tenant.token = stack.token(tenant.name)
            tenant.integration_ids = [
                _create(stack, tenant, receiver.url_for(f"/hook/{label}/{tenant.marker}"), n) for n in range(3)
            ]
        provisioned = requests.post(
            f"{stack.url}{INTERNAL}/tenants/{a.name}/devices", json={"id": "fuzz-device-1"}, timeout=10
        )
        assert provisioned.status_code == 202, provisioned.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not a.event_ids:
            a.event_ids = [e["id"] for e in _events(stack, a)]
            time.sleep(0.1)
        assert a.event_ids, "the provisioning event was not recorded in 30 s"
        yield World(stack, a, b)
    finally:
        stop_stack(stack)


def _config(token: str | None) -> schemathesis.Config:
    project: dict[str, Any] = {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "database": "none", "no-shrink": True},
        "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
        "request-timeout": 15,
    }
    if token is not None:
        project["headers"] = {"Authorization": f"Bearer {token}"}
    return schemathesis.Config.from_dict(project)


@pytest.fixture(scope="module")
def management_a(world: World) -> Any:
    return schemathesis.openapi.from_url(f"{world.stack.url}{MANAGEMENT}/openapi.json", config=_config(world.a.token))


@pytest.fixture(scope="module")
def management_b(world: World) -> Any:
    return schemathesis.openapi.from_url(f"{world.stack.url}{MANAGEMENT}/openapi.json", config=_config(world.b.token))


@pytest.fixture(scope="module")
def internal_api(world: World) -> Any:
    return schemathesis.openapi.from_url(f"{world.stack.url}{INTERNAL}/openapi.json", config=_config(None))


def _swap(value: Any, pool: list[str]) -> Any:
    """Deterministically replace one generated id in ``SWAP_ONE_IN`` with a real one from ``pool``."""
    if not pool:
        return value
    digest = zlib.crc32(repr(value).encode())
    return pool[digest % len(pool)] if digest % SWAP_ONE_IN == 0 else value


def _run_management_case(case: schemathesis.Case, world: World, caller: Tenant, tally: Tally) -> None:
    other = world.other(caller)
    ids = caller.integration_ids + other.integration_ids
    events = caller.event_ids + other.event_ids
    if "integration_id" in case.path_parameters:
        case.path_parameters["integration_id"] = _swap(case.path_parameters["integration_id"], ids)
    if "event_id" in case.path_parameters:
        case.path_parameters["event_id"] = _swap(case.path_parameters["event_id"], events)
    if isinstance(case.body, dict) and "integration_id" in case.body:
        case.body["integration_id"] = _swap(case.body["integration_id"], ids)
    response = case.call_and_validate(checks=CHECKS)
    tally.cases[case.operation.label] += 1
    tally.statuses[response.status_code] += 1
    text = response.text
    assert other.marker not in text, f"{caller.name} saw {other.name}'s integration: {text[:300]}"
    for tenant in (world.a, world.b):
        assert tenant.secret not in text.lower(), "a secret was echoed"
        assert tenant.token not in text, "a token was echoed"


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32 relabels ``request.node._nodeid`` per operation; pytest 9.2's nodes no longer have it."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


management_a_schema = schemathesis.pytest.from_fixture("management_a")
management_b_schema = schemathesis.pytest.from_fixture("management_b")
internal_schema = schemathesis.pytest.from_fixture("internal_api")


@management_a_schema.parametrize()
def test_management_api_for_tenant_a_answers_every_generated_request_as_documented(
    case: schemathesis.Case, world: World
) -> None:
    _run_management_case(case, world, world.a, TALLIES["management-a"])


@management_b_schema.parametrize()
def test_management_api_for_tenant_b_answers_every_generated_request_as_documented(
    case: schemathesis.Case, world: World
) -> None:
    _run_management_case(case, world, world.b, TALLIES["management-b"])


@internal_schema.parametrize()
def test_internal_api_answers_every_generated_request_as_documented(case: schemathesis.Case, world: World) -> None:
    tally = TALLIES["internal"]
    if "tenant_id" in case.path_parameters and case.method.upper() != "DELETE":
        # device events for the real tenants too: the dispatcher then delivers generated device data
        case.path_parameters["tenant_id"] = _swap(case.path_parameters["tenant_id"], [world.a.name, world.b.name])
    response = case.call_and_validate(checks=CHECKS)
    tally.cases[case.operation.label] += 1
    tally.statuses[response.status_code] += 1


def _tracebacks_through_devicehooks(output: str) -> list[str]:
    """Tracebacks that went through devicehooks' code: a crashed handler or an unhandled API error.

    moto's server logs its own internal errors too ("Error on request:"; its DynamoDB
    transactions are not thread-safe), which botocore retries: those are not the service's.
    """
    found = []
    for chunk in output.split("Traceback (most recent call last):")[1:]:
        lines = chunk.splitlines()
        end = next((n for n, line in enumerate(lines[1:], 1) if line and not line[0].isspace()), len(lines))
        block = "\n".join(lines[: end + 1])
        if "devicehooks/" in block:
            found.append(block)
    found += [line for line in output.splitlines() if '"unhandled error"' in line]
    return found


def test_the_campaigns_ran_at_least_1000_generated_cases(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    ran = {name: sum(t.cases.values()) for name, t in TALLIES.items()}
    if not all(ran.values()):
        pytest.skip("run the whole module: this test counts what the three campaigns ran")
    total = sum(ran.values())
    statuses = sum((t.statuses for t in TALLIES.values()), Counter[int]())
    with capsys.disabled():
        print(f"\nschemathesis: {total} generated cases ({', '.join(f'{k} {v}' for k, v in ran.items())});")
        print(f"  statuses: {dict(sorted(statuses.items()))}")
    assert total >= MINIMUM_CASES
    assert not any(code >= 500 for code in statuses)
    ours = _tracebacks_through_devicehooks("".join(world.stack.output))
    assert not ours, "\n".join(ours)
