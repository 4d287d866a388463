"""Regression tests for what schemathesis found: hostile request input gets a clear 4xx, never a 500.

Each test drives the real handlers (``management.handle``, ``internal.handle``) with API Gateway
HTTP API events, as the deployed functions receive them.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devicehooks.api import management
from devicehooks.handlers import internal as internal_handler
from devicehooks.handlers import management as management_handler
from tests.conftest import FakeContext, load_event
from tests.unit.test_management_api import Api

BASE = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"


@pytest.fixture
def api() -> Iterator[Api]:
    client = Api()
    management.app.dependency_overrides[management.integration_service] = lambda: client.service
    management.app.dependency_overrides[management.event_service] = lambda: client.events
    yield client
    management.app.dependency_overrides.clear()


def _event(method: str, path: str, body: bytes, tenant: str = "tenant-1") -> dict[str, Any]:
    """A request whose body API Gateway base64-encoded, as it does for bytes that are not UTF-8."""
    event = copy.deepcopy(load_event("management-create-integration.json"))
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["authorizer"]["lambda"]["tenant_id"] = tenant
    event["headers"].pop("x-men-requestid")
    event.pop("pathParameters")
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


def _answer(raw: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    assert raw["headers"]["Content-Type"] == "application/json; charset=utf-8"
    body = json.loads(raw["body"])
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == raw["headers"]["X-MEN-RequestID"]
    return raw["statusCode"], body


NOT_UTF8 = [b"\xe2l", b"\xa5", b"@V\xca\xa1u\x8a", b'{"provider": "webhook"\xff}']


@pytest.mark.parametrize("body", NOT_UTF8, ids=lambda b: b.hex())
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"{BASE}/integrations"),
        ("PUT", f"{BASE}/integrations/{uuid.UUID(int=1)}"),
        ("PUT", f"{BASE}/integrations/{uuid.UUID(int=1)}/credentials"),
        ("POST", f"{BASE}/events/{uuid.UUID(int=1)}/redeliver"),
    ],
)
def test_management_bodies_that_are_not_utf8_get_400_not_500(api: Api, method: str, path: str, body: bytes) -> None:
    status, answer = _answer(management_handler.handle(_event(method, path, body), FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer
    assert answer["error"].startswith("malformed request body: invalid JSON")


def test_invalid_utf8_inside_a_json_string_becomes_the_replacement_character_as_in_go(api: Api) -> None:
    body = (
        b'{"provider":"webhook","credentials":{"type":"http","http":{"url":"http://127.0.0.1:9000/hook"}},'
        b'"description":"caf\xe9"}'
    )
    raw = management_handler.handle(_event("POST", f"{BASE}/integrations", body), FakeContext())  # type: ignore[arg-type]
    assert raw["statusCode"] == 201, raw["body"]
    [created] = api.service.list_integrations("tenant-1")
    assert created.description == "caf\ufffd"


@pytest.mark.parametrize("body", NOT_UTF8, ids=lambda b: b.hex())
def test_internal_provision_bodies_that_are_not_utf8_get_400_not_500(body: bytes) -> None:
    event = _event("POST", f"{INTERNAL}/tenants/t1/devices", body)
    status, answer = _answer(internal_handler.handle(event, FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer
    assert answer["error"].startswith("malformed request body: ")


@pytest.mark.parametrize("body", NOT_UTF8, ids=lambda b: b.hex())
def test_internal_bulk_status_bodies_that_are_not_utf8_get_400_not_500(body: bytes) -> None:
    event = _event("PUT", f"{INTERNAL}/tenants/t1/bulk/devices/status/accepted", body)
    status, answer = _answer(internal_handler.handle(event, FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer
    assert answer["error"].startswith("invalid request body: ")


def test_a_body_gateway_marked_base64_but_not_base64_is_a_400(api: Api) -> None:
    event = _event("POST", f"{BASE}/integrations", b"")
    event["body"] = "not base64 at all!"
    status, answer = _answer(management_handler.handle(event, FakeContext()))  # type: ignore[arg-type]
    assert status == 400, answer


def _internal(method: str, path: str) -> dict[str, Any]:
    event = _event(method, path, b"")
    event["body"], event["isBase64Encoded"] = "", False
    del event["requestContext"]["authorizer"]
    return internal_handler.handle(event, FakeContext())  # type: ignore[arg-type]


def test_an_empty_device_id_is_no_route_and_the_document_says_device_ids_are_not_empty() -> None:
    status, answer = _answer(_internal("DELETE", f"{INTERNAL}/tenants/t1/devices/"))
    assert (status, answer["error"]) == (404, "not found")

    document = json.loads(_internal("GET", f"{INTERNAL}/openapi.json")["body"])
    operation = document["paths"][f"{INTERNAL}/tenants/{{tenant_id}}/devices/{{device_id}}"]["delete"]
    [device_id] = [p for p in operation["parameters"] if p["name"] == "device_id"]
    assert device_id["schema"]["minLength"] == 1


# ------------------------------------------------------------------ JSON that is Python's but not passable
# Python's json reads NaN, Infinity, 1e400 (as inf) and "\ud800" (a lone surrogate), raises ValueError
# on a 4,300-digit integer and RecursionError on deep nesting: each was a 500, or was stored or
# published and failed later. Every body of both APIs is read by jsonenc.loads, which refuses them.

DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_INT = b"1" * 5_000
HUGE_INT_QUOTED = "1" * 21 + "..."  # messages quote at most 24 characters of a refused number
_CREATE = b'{"provider":"webhook","credentials":{"type":"http","http":{"url":"http://127.0.0.1:9000/hook"}}'
MANAGEMENT_BODIES = [
    ("POST", f"{BASE}/integrations"),
    ("PUT", f"{BASE}/integrations/{uuid.UUID(int=1)}"),
    ("PUT", f"{BASE}/integrations/{uuid.UUID(int=1)}/credentials"),
    ("POST", f"{BASE}/events/{uuid.UUID(int=1)}/redeliver"),
]


@pytest.mark.parametrize(("method", "path"), MANAGEMENT_BODIES)
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(DEEP, "nested more than 64 levels deep.", id="nested-100000-deep"),
        pytest.param(b"[" * 65 + b"]" * 65, "nested more than 64 levels deep.", id="nested-65-deep"),
        pytest.param(b'{"x":' + HUGE_INT + b"}", f"x: integer {HUGE_INT_QUOTED} is out of range (64-bit).", id="int"),
        pytest.param(b'{"x":NaN}', "x: NaN is not a JSON number.", id="nan"),
        pytest.param(b'{"x":[-Infinity]}', "x: (0: -Infinity is not a JSON number.).", id="minus-infinity"),
        pytest.param(b'{"x":1e400}', "x: number is out of range (beyond a 64-bit float).", id="float-overflow"),
    ],
)
def test_management_bodies_python_reads_but_json_cannot_carry_get_400(
    api: Api, method: str, path: str, body: bytes, detail: str
) -> None:
    status, answer = _answer(management_handler.handle(_event(method, path, body), FakeContext()))  # type: ignore[arg-type]
    assert (status, answer["error"]) == (400, f"malformed request body: invalid JSON: {detail}")


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (
            _CREATE + b',"description":"\\ud800"}',
            "description: contains a lone surrogate (\\ud800), which is not Unicode.",
        ),
        (_CREATE + b',"description":NaN}', "description: NaN is not a JSON number."),
        (_CREATE + b',"description":Infinity}', "description: Infinity is not a JSON number."),
        (
            b'{"provider":"webhook","credentials":{"type":"http","http":{"url":"http://127.0.0.1:9000/\\udc00"}}}',
            "credentials: (http: (url: contains a lone surrogate (\\udc00), which is not Unicode.).).",
        ),
        (
            _CREATE + b',"scopes":{"\\ud83d":1}}',
            "scopes: a key contains a lone surrogate (\\ud83d), which is not Unicode.",
        ),
    ],
)
def test_management_nan_infinity_and_lone_surrogates_are_400_and_nothing_is_stored(
    api: Api, body: bytes, detail: str
) -> None:
    status, answer = _answer(
        management_handler.handle(_event("POST", f"{BASE}/integrations", body), FakeContext())  # type: ignore[arg-type]
    )
    assert (status, answer["error"]) == (400, f"malformed request body: invalid JSON: {detail}")
    assert api.service.list_integrations("tenant-1") == []


def test_a_surrogate_pair_written_as_escapes_is_one_character_and_is_accepted(api: Api) -> None:
    body = _CREATE + b',"description":"\\ud83d\\ude00"}'
    raw = management_handler.handle(_event("POST", f"{BASE}/integrations", body), FakeContext())  # type: ignore[arg-type]
    assert raw["statusCode"] == 201, raw["body"]
    [created] = api.service.list_integrations("tenant-1")
    assert created.description == "\U0001f600"


def _internal_body(method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    event = _event(method, path, body)
    del event["requestContext"]["authorizer"]
    return _answer(internal_handler.handle(event, FakeContext()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "prefix"),
    [
        ("POST", f"{INTERNAL}/tenants/t1/devices", "malformed request body: "),
        ("PUT", f"{INTERNAL}/tenants/t1/bulk/devices/status/accepted", "invalid request body: "),
    ],
)
@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param(DEEP, "nested more than 64 levels deep.", id="nested-100000-deep"),
        pytest.param(
            b'[{"id":"d","n":' + HUGE_INT + b"}]",
            f"0: (n: integer {HUGE_INT_QUOTED} is out of range (64-bit).).",
            id="int",
        ),
    ],
)
def test_internal_bodies_too_deep_or_with_huge_integers_get_400_not_500(
    method: str, path: str, prefix: str, body: bytes, detail: str
) -> None:
    status, answer = _internal_body(method, path, body)
    assert (status, answer["error"]) == (400, prefix + detail)


LONG = "t" * 257


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"{INTERNAL}/tenants/{LONG}/devices", b'{"id":"d"}'),
        ("DELETE", f"{INTERNAL}/tenants/{LONG}/devices/d", b""),
        ("PUT", f"{INTERNAL}/tenants/{LONG}/bulk/devices/status/accepted", b'[{"id":"d"}]'),
        ("DELETE", f"{INTERNAL}/tenants/{LONG}", b""),
    ],
)
def test_internal_tenant_ids_over_256_characters_get_400_on_every_route(method: str, path: str, body: bytes) -> None:
    status, answer = _internal_body(method, path, body)
    assert (status, answer["error"]) == (400, "invalid tenant ID: the length must be no more than 256")


def test_decommissioning_a_device_id_of_300_characters_is_a_400_not_a_500() -> None:
    status, answer = _answer(_internal("DELETE", f"{INTERNAL}/tenants/t/devices/{'d' * 300}"))
    assert (status, answer["error"]) == (400, "invalid device ID: the length must be no more than 256")


def _create(api: Api, url: str) -> tuple[int, str]:
    body = json.dumps({"provider": "webhook", "credentials": {"type": "http", "http": {"url": url}}}).encode()
    raw = management_handler.handle(_event("POST", f"{BASE}/integrations", body), FakeContext())  # type: ignore[arg-type]
    return raw["statusCode"], json.loads(raw["body"])["error"] if raw["body"] else ""


@pytest.mark.parametrize(
    ("url", "error"),
    [
        # urllib.parse reads host 93.184.216.34 here; the sender (urllib3) dials 10.0.0.1
        ("http://10.0.0.1\\@93.184.216.34/hook", "hostname resolves to reserved address"),
        ("http://%31%30.0.0.1/hook", "hostname resolves to reserved address"),  # urllib3 decodes it to 10.0.0.1
        ("http://[fec0::1]/hook", "hostname resolves to reserved address"),
        ("http://hooks.example.com:0/hook", "must be a valid URL"),
        ("http://\u2488.example/hook", "must be a valid URL"),
    ],
)
def test_create_refuses_urls_for_what_the_sender_would_dial(api: Api, url: str, error: str) -> None:
    assert _create(api, url) == (400, f"malformed request body: credentials: (http: (url: {error}.).).")
    assert api.service.list_integrations("tenant-1") == []


def test_create_accepts_user_info_that_is_not_a_host_and_checks_the_host(api: Api) -> None:
    assert _create(api, "http://%E2%82%AC:pw@hooks.example.com/hook") == (201, "")
    [created] = api.service.list_integrations("tenant-1")
    assert created.url == "http://%E2%82%AC:pw@hooks.example.com/hook"
