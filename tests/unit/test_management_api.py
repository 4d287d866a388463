"""The management API against Mender's behaviour (BEHAVIOUR.md §1), with in-memory stores.

Each test drives the real handler (``management.handle``) with an API Gateway HTTP API event
built from events/management-list-integrations.json, as the deployed function receives it.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devicehooks.api import management
from devicehooks.delivery.sender import HttpSender
from devicehooks.dispatch import Batch, DispatchContext, Dispatcher
from devicehooks.domain.activity import (
    DELIVERED_ALREADY,
    IN_FLIGHT,
    QUEUED_ALREADY,
    ActivityEvent,
    Attempt,
    DeliveryStatus,
    HourCount,
)
from devicehooks.domain.decisions import DispatchPolicy
from devicehooks.domain.eventids import new_event_id
from devicehooks.domain.events import WebhookEvent
from devicehooks.domain.models import Circuit
from devicehooks.handlers import management as management_handler
from devicehooks.security.auth import AuthConfig, authorize
from devicehooks.security.ssrf import DestinationGuard
from devicehooks.services.events import EventService
from devicehooks.services.health import HealthService
from devicehooks.services.integrations import IntegrationService
from devicehooks.services.redelivery import (
    RETRY_ALL_DELIVERED,
    RETRY_DISABLED,
    RETRY_NOT_SENT,
    RETRY_TEST,
    TOO_LARGE,
    DeliveryService,
)
from devicehooks.store.bounds import ItemTooLarge
from devicehooks.timeutil import rfc3339_millis
from devicehooks_dev.doubles import MemoryActivityStore, MemoryIntegrationStore, MemoryTaskQueue, PlainTestCipher
from tests.conftest import FakeContext, load_event

BASE = "/api/management/v1/iot-manager"
PUBLIC_HOST = {
    "hooks.example.com": ["93.184.216.34"],
    "other.example.com": ["93.184.216.35"],
    "localhost": ["127.0.0.1"],
}


def _resolver(host: str, port: int) -> list[tuple[Any, ...]]:
    if host not in PUBLIC_HOST:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in PUBLIC_HOST[host]]


class Api:
    """Calls the handler the way API Gateway does and decodes the answer."""

    def __init__(self) -> None:
        self.integrations = MemoryIntegrationStore()
        self.activity = MemoryActivityStore()
        self.service = IntegrationService(
            self.integrations,
            PlainTestCipher(),
            DestinationGuard(allowed_cidrs=(ipaddress.ip_network("127.0.0.0/8"),), resolver=_resolver),
            max_integrations=3,
        )
        self.events = EventService(self.activity)
        self.queue = MemoryTaskQueue()
        guard = DestinationGuard(allowed_cidrs=(ipaddress.ip_network("127.0.0.0/8"),), resolver=_resolver)
        self.dispatcher = Dispatcher(
            DispatchContext(
                integrations=self.integrations,
                activity=self.activity,
                cipher=PlainTestCipher(),
                sender=HttpSender(guard, timeout=2),
                queue=self.queue,
                policy=DispatchPolicy(),
            )
        )
        self.deliveries = DeliveryService(
            self.integrations, self.activity, self.queue, lambda: self.dispatcher, retention=3600
        )

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        tenant: str | None = "tenant-1",
        verdict: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        raw_body: str | None = None,
        query: str = "",
    ) -> Response:
        event = copy.deepcopy(load_event("management-list-integrations.json"))
        event["rawPath"] = path
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        event["headers"] = dict(headers or {})
        if query:
            event["rawQueryString"] = query
            event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
        if verdict is not None:
            event["requestContext"]["authorizer"] = {"lambda": verdict}
        elif tenant is None:
            del event["requestContext"]["authorizer"]
        else:
            event["requestContext"]["authorizer"]["lambda"]["tenant_id"] = tenant
        if raw_body is not None:
            event["body"] = raw_body
        elif body is not None:
            event["body"] = json.dumps(body)
        return Response(management_handler.handle(event, FakeContext()))  # type: ignore[arg-type]


class Response:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status = raw["statusCode"]
        self.headers = {k.lower(): v for k, v in raw.get("headers", {}).items()}
        self.text = raw.get("body") or ""

    def json(self) -> Any:
        return json.loads(self.text)


@pytest.fixture
def api() -> Iterator[Api]:
    client = Api()
    management.app.dependency_overrides[management.integration_service] = lambda: client.service
    management.app.dependency_overrides[management.event_service] = lambda: client.events
    management.app.dependency_overrides[management.delivery_service] = lambda: client.deliveries
    yield client
    management.app.dependency_overrides.clear()


def _webhook(
    url: str = "https://hooks.example.com/mender", secret: str | None = "deadbeef", **extra: Any
) -> dict[str, Any]:
    http: dict[str, Any] = {"url": url}
    if secret is not None:
        http["secret"] = secret
    return {"provider": "webhook", "credentials": {"type": "http", "http": http}, **extra}


def _create(api: Api, body: dict[str, Any] | None = None, tenant: str = "tenant-1") -> str:
    response = api("POST", f"{BASE}/integrations", body or _webhook(), tenant=tenant)
    assert response.status == 201, response.text
    return str(response.headers["location"].rsplit("/", 1)[1])


# ------------------------------------------------------------------ integrations


def test_create_answers_201_with_empty_body_and_a_location(api: Api) -> None:
    response = api("POST", f"{BASE}/integrations", _webhook(description="ops"))
    assert response.status == 201
    assert response.text == ""
    location = response.headers["location"]
    assert location.startswith(f"{BASE}/integrations/")
    assert str(uuid.UUID(location.rsplit("/", 1)[1])) == location.rsplit("/", 1)[1]


def test_list_returns_menders_integration_json_with_the_secret_omitted(api: Api) -> None:
    integration_id = _create(api, _webhook(description="ops"))
    response = api("GET", f"{BASE}/integrations")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == [
        {
            "id": integration_id,
            "provider": "webhook",
            "credentials": {
                "type": "http",
                "http": {"url": "https://hooks.example.com/mender", "secret": "<omitted>"},
            },
            "description": "ops",
            "enabled": True,
        }
    ]
    assert "\\u003comitted\\u003e" in response.text  # Go's HTML escaping, byte for byte
    assert "deadbeef" not in response.text


def test_an_empty_secret_is_a_secret_and_no_secret_is_left_out(api: Api) -> None:
    with_empty = _create(api, _webhook(secret=""))
    without = _create(api, _webhook(secret=None))
    by_id = {i["id"]: i for i in api("GET", f"{BASE}/integrations").json()}
    assert by_id[with_empty]["credentials"]["http"]["secret"] == "<omitted>"
    assert "secret" not in by_id[without]["credentials"]["http"]
    assert "description" not in by_id[without]


def test_list_is_empty_json_array_for_a_new_tenant(api: Api) -> None:
    response = api("GET", f"{BASE}/integrations")
    assert (response.status, response.text) == (200, "[]")


def test_get_returns_one_integration(api: Api) -> None:
    integration_id = _create(api)
    response = api("GET", f"{BASE}/integrations/{integration_id}")
    assert response.status == 200
    assert response.json()["id"] == integration_id


@pytest.mark.parametrize(
    ("bad", "detail"), [("not-a-uuid!!", "invalid UUID length: 12"), ("x" * 36, "invalid UUID format")]
)
def test_ids_that_are_not_uuids_get_400(api: Api, bad: str, detail: str) -> None:
    for method, suffix in (("GET", ""), ("DELETE", ""), ("PUT", "/credentials")):
        body = {"type": "http", "http": {"url": "https://hooks.example.com"}} if method == "PUT" else None
        response = api(method, f"{BASE}/integrations/{bad}{suffix}", body)
        assert response.status == 400
        assert response.json()["error"] == f"integration ID must be a valid UUID: {detail}"


def test_unknown_integration_is_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    for method, suffix in (("GET", ""), ("DELETE", ""), ("PUT", "/credentials")):
        body = {"type": "http", "http": {"url": "https://hooks.example.com"}} if method == "PUT" else None
        response = api(method, f"{BASE}/integrations/{missing}{suffix}", body)
        assert response.status == 404
        assert response.json()["error"] == "integration not found"


def test_another_tenants_integration_is_a_404_never_its_data(api: Api) -> None:
    theirs = _create(api, tenant="tenant-2")
    for method, suffix in (("GET", ""), ("DELETE", ""), ("PUT", "/credentials")):
        body = {"type": "http", "http": {"url": "https://other.example.com"}} if method == "PUT" else None
        response = api(method, f"{BASE}/integrations/{theirs}{suffix}", body, tenant="tenant-1")
        assert response.status == 404
        assert "hooks.example.com" not in response.text
    assert api("GET", f"{BASE}/integrations", tenant="tenant-1").json() == []
    assert api("GET", f"{BASE}/integrations/{theirs}", tenant="tenant-2").status == 200


def test_the_open_source_empty_tenant_is_a_tenant_of_its_own(api: Api) -> None:
    mine = _create(api, tenant="")
    assert [i["id"] for i in api("GET", f"{BASE}/integrations", tenant="").json()] == [mine]
    assert api("GET", f"{BASE}/integrations", tenant="tenant-1").json() == []


def test_delete_answers_204_then_the_integration_is_gone(api: Api) -> None:
    integration_id = _create(api)
    response = api("DELETE", f"{BASE}/integrations/{integration_id}")
    assert (response.status, response.text) == (204, "")
    assert api("GET", f"{BASE}/integrations/{integration_id}").status == 404


def test_put_credentials_replaces_url_and_secret_and_answers_204(api: Api) -> None:
    integration_id = _create(api)
    response = api(
        "PUT",
        f"{BASE}/integrations/{integration_id}/credentials",
        {"type": "http", "http": {"url": "https://other.example.com/x"}},
    )
    assert (response.status, response.text) == (204, "")
    stored = api("GET", f"{BASE}/integrations/{integration_id}").json()
    assert stored["credentials"]["http"] == {"url": "https://other.example.com/x"}  # secret left out: removed


def test_put_credentials_validates_like_create(api: Api) -> None:
    integration_id = _create(api)
    response = api("PUT", f"{BASE}/integrations/{integration_id}/credentials", {"http": {"url": "https://e.com"}})
    assert response.status == 400
    assert response.json()["error"] == "malformed request body: type: cannot be blank."
    response = api(
        "PUT",
        f"{BASE}/integrations/{integration_id}/credentials",
        {"type": "http", "http": {"url": "http://10.0.0.1/"}},
    )
    assert response.json()["error"] == "malformed request body: http: (url: hostname resolves to reserved address.)."


def test_beyond_mender_several_webhooks_per_tenant_up_to_the_limit_then_409(api: Api) -> None:
    ids = [_create(api) for _ in range(3)]
    assert len(set(ids)) == 3
    response = api("POST", f"{BASE}/integrations", _webhook())
    assert response.status == 409
    assert response.json()["error"] == "integration limit reached: a tenant may have at most 3 integrations"
    assert api("DELETE", f"{BASE}/integrations/{ids[0]}").status == 204
    assert api("POST", f"{BASE}/integrations", _webhook()).status == 201
    assert api("POST", f"{BASE}/integrations", _webhook(), tenant="tenant-2").status == 201


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "malformed request body: credentials: cannot be blank; provider: cannot be blank."),
        (
            {"provider": "webhook", "credentials": {"type": "http", "http": {}}},
            "malformed request body: credentials: (http: (url: cannot be blank.).).",
        ),
        (
            _webhook(url="ftp://hooks.example.com/x"),
            "malformed request body: credentials: "
            "(http: (url: must be an absolute http:// or https:// URL with a host.).).",
        ),
        (
            _webhook(secret="abc"),
            "malformed request body: credentials: (http: (secret: must be a hexadecimal string of even length.).).",
        ),
        (
            {**_webhook(), "provider": "iot-hub"},
            "malformed request body: provider: 'iot-hub' is not supported: "
            "devicehooks manages 'webhook' integrations only.",
        ),
        (
            {**_webhook(), "description": "d" * 1025},
            "malformed request body: description: the length must be no more than 1024.",
        ),
        (
            _webhook(url="http://169.254.169.254/latest/meta-data"),
            "malformed request body: credentials: (http: (url: hostname resolves to reserved address.).).",
        ),
        (
            _webhook(url="https://nosuch.invalid/x"),
            "malformed request body: credentials: (http: (url: lookup nosuch.invalid: no such host.).).",
        ),
        ([], "malformed request body: json: cannot unmarshal array into Go value of type model.Integration"),
    ],
)
def test_invalid_bodies_get_400_with_menders_message_format(api: Api, body: Any, message: str) -> None:
    response = api("POST", f"{BASE}/integrations", body)
    assert response.status == 400
    assert response.json()["error"] == message
    assert api("GET", f"{BASE}/integrations").json() == []


def test_invalid_json_is_a_400_not_a_500(api: Api) -> None:
    response = api("POST", f"{BASE}/integrations", raw_body='{"provider": "webhook",')
    assert response.status == 400
    assert response.json()["error"].startswith("malformed request body: invalid JSON")


def test_a_missing_body_is_a_400(api: Api) -> None:
    response = api("POST", f"{BASE}/integrations")
    assert response.status == 400
    assert response.json()["error"].startswith("malformed request body")


def test_loopback_is_reachable_only_through_the_allowlist(api: Api) -> None:
    assert api("POST", f"{BASE}/integrations", _webhook(url="http://127.0.0.1:9000/hook")).status == 201
    assert api("POST", f"{BASE}/integrations", _webhook(url="http://[::1]:9000/hook")).status == 400


# ------------------------------------------------------------------ cross-cutting


def test_the_request_id_is_echoed_and_goes_into_error_bodies(api: Api) -> None:
    response = api("GET", f"{BASE}/integrations/nope", headers={"X-MEN-RequestID": "req-123"})
    assert response.headers["x-men-requestid"] == "req-123"
    assert response.json() == {
        "error": "integration ID must be a valid UUID: invalid UUID length: 4",
        "request_id": "req-123",
    }


def test_a_request_id_is_generated_on_every_response_when_absent(api: Api) -> None:
    ok = api("GET", f"{BASE}/integrations")
    created = api("POST", f"{BASE}/integrations", _webhook())
    for response in (ok, created):
        assert uuid.UUID(response.headers["x-men-requestid"]).version == 4
    assert ok.headers["x-men-requestid"] != created.headers["x-men-requestid"]


def test_unknown_routes_get_a_json_404(api: Api) -> None:
    response = api("GET", f"{BASE}/nothing-here", headers={"X-MEN-RequestID": "r1"})
    assert response.status == 404
    assert response.json() == {"error": "not found", "request_id": "r1"}
    assert response.headers["x-men-requestid"] == "r1"


def test_known_paths_with_the_wrong_method_get_405(api: Api) -> None:
    for method, path in (
        ("PATCH", "/integrations"),
        ("POST", f"/integrations/{uuid.uuid4()}"),
        ("DELETE", "/events"),
    ):
        response = api(method, BASE + path)
        assert response.status == 405
        assert response.json()["error"] == "method not allowed"


def test_bodies_over_1_mib_get_413(api: Api) -> None:
    big = json.dumps({**_webhook(), "description": "x" * (1024 * 1024)})
    response = api("POST", f"{BASE}/integrations", raw_body=big)
    assert response.status == 413
    assert response.json()["error"] == "http: request body too large"
    assert api("GET", f"{BASE}/integrations").json() == []


def test_base64_bodies_are_measured_decoded(api: Api) -> None:
    body = base64.b64encode(json.dumps(_webhook()).encode()).decode()
    event = copy.deepcopy(load_event("management-create-integration.json"))
    event["body"], event["isBase64Encoded"] = body, True
    raw = management_handler.handle(event, FakeContext())  # type: ignore[arg-type]
    assert raw["statusCode"] == 201


def test_without_a_verified_identity_every_route_is_401_with_www_authenticate(api: Api) -> None:
    routes = [
        ("GET", "/integrations"),
        ("POST", "/integrations"),
        ("GET", f"/integrations/{uuid.uuid4()}"),
        ("DELETE", f"/integrations/{uuid.uuid4()}"),
        ("PUT", f"/integrations/{uuid.uuid4()}/credentials"),
        ("GET", "/events"),
    ]
    for method, path in routes:
        response = api(method, BASE + path, {"garbage": True}, tenant=None)
        assert response.status == 401, (method, path)
        assert response.headers["www-authenticate"] == 'Bearer realm="ManagementJWT"'
        assert response.json()["error"] == "Authorization not present in header"


def test_the_authorizers_refusal_is_passed_on_verbatim(api: Api) -> None:
    refused = api(
        "GET",
        f"{BASE}/integrations",
        verdict={"verified": False, "status": 401, "error": "identity: token has expired"},
    )
    assert (refused.status, refused.json()["error"]) == (401, "identity: token has expired")
    forbidden = api(
        "GET",
        f"{BASE}/integrations",
        verdict={"verified": False, "status": 403, "error": "user identity missing from authorization token"},
    )
    assert forbidden.status == 403
    assert forbidden.json()["error"] == "user identity missing from authorization token"
    assert "www-authenticate" not in forbidden.headers


def test_the_openapi_document_is_public_and_lists_every_route(api: Api) -> None:
    response = api("GET", f"{BASE}/openapi.json", tenant=None)
    assert response.status == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert set(paths[f"{BASE}/integrations"]) == {"get", "post"}
    assert set(paths[f"{BASE}/integrations/{{integration_id}}"]) == {"get", "delete", "put"}
    assert set(paths[f"{BASE}/integrations/{{integration_id}}/test"]) == {"post"}
    assert set(paths[f"{BASE}/events/{{event_id}}"]) == {"get"}
    assert set(paths[f"{BASE}/events/{{event_id}}/redeliver"]) == {"post"}
    retry = paths[f"{BASE}/events/{{event_id}}/retry"]
    assert set(retry) == {"post"} and set(retry["post"]["responses"]) >= {"202", "400", "404", "409"}
    assert "not delivered" in retry["post"]["description"]
    queued = document["components"]["schemas"]["RedeliverOut"]["properties"]["integration_ids"]
    assert queued["type"] == "array" and "attempted now" in queued["description"]
    assert "integration_id" in document["components"]["schemas"]["RetryIn"]["properties"]
    recover = paths[f"{BASE}/integrations/{{integration_id}}/recover"]
    assert set(recover) == {"post"}
    assert set(recover["post"]["responses"]) >= {"202", "400", "404"}
    assert document["components"]["schemas"]["RecoverOut"]["properties"]["count"]["type"] == "integer"
    assert set(document["components"]["schemas"]["RecoverIn"]["required"]) == {"since"}
    assert set(paths[f"{BASE}/integrations/{{integration_id}}/credentials"]) == {"put"}
    assert "422" not in json.dumps(paths)
    secret = document["components"]["schemas"]["HttpCredentialsIn"]["properties"]["secret"]
    assert "writeOnly" in json.dumps(secret)


def test_swagger_ui_is_served_without_a_cdn(api: Api) -> None:
    response = api("GET", f"{BASE}/docs", tenant=None)
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "SwaggerUIBundle" in response.text
    assert "cdn" not in response.text.lower().split("<script>")[0]


# ------------------------------------------------------------------ events


def _store_events(api: Api, count: int, tenant: str = "tenant-1", integration: str | None = None) -> list[str]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for n in range(count):
        event = WebhookEvent(
            id=new_event_id(start + timedelta(seconds=n), "device-decommissioned"),
            tenant_id=tenant,
            type="device-decommissioned",
            data={"id": f"device-{n}"},
            time=start + timedelta(seconds=n),
        )
        stored = ActivityEvent.new(event, 0, [DeliveryStatus(integration)] if integration else [])
        api.activity.create(stored)
        if integration:
            api.activity.record(
                tenant,
                event.id,
                [(DeliveryStatus(integration_id=integration, state="delivered", status_code=200, attempts=1), None)],
            )
        ids.append(event.id)
    return ids


def test_events_is_an_empty_list_for_a_tenant_without_activity(api: Api) -> None:
    response = api("GET", f"{BASE}/events")
    assert (response.status, response.text) == (200, "[]")


def test_events_are_newest_first_and_paged(api: Api) -> None:
    ids = _store_events(api, 5)
    first = api("GET", f"{BASE}/events", query="page=1&per_page=2").json()
    second = api("GET", f"{BASE}/events", query="page=2&per_page=2").json()
    third = api("GET", f"{BASE}/events", query="page=3&per_page=2").json()
    assert [e["id"] for e in first + second + third] == list(reversed(ids))
    assert first[0] == {
        "id": ids[-1],
        "type": "device-decommissioned",
        "data": {"id": "device-4"},
        "time": "2026-01-01T00:00:04.000Z",
    }
    assert len(api("GET", f"{BASE}/events").json()) == 5  # default per_page 20


def test_events_filter_by_integration_and_show_delivery_status(api: Api) -> None:
    integration = str(uuid.uuid4())
    mine = _store_events(api, 2, integration=integration)
    _store_events(api, 3)
    events = api("GET", f"{BASE}/events", query=f"integration_id={integration}").json()
    assert [e["id"] for e in events] == list(reversed(mine))
    assert events[0]["delivery_statuses"] == [
        {
            "integration_id": integration,
            "success": True,
            "status_code": 200,
            "state": "delivered",
            "attempts": 1,
        }
    ]
    assert api("GET", f"{BASE}/events", query=f"integration_id={uuid.uuid4()}").json() == []


def test_events_of_other_tenants_are_not_listed(api: Api) -> None:
    _store_events(api, 2, tenant="tenant-2")
    assert api("GET", f"{BASE}/events").json() == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=abc", 'invalid page query: "abc"'),
        ("page=0", "invalid page query: value must be a non-zero positive integer"),
        ("page=-3", "invalid page query: value must be a non-zero positive integer"),
        ("per_page=x", 'invalid per_page query: "x"'),
        ("per_page=0", "invalid per_page query: value must be a non-zero positive integer"),
        ("per_page=501", 'parameter "per_page" above limit (max: 500)'),
        ("integration_id=nope", "integration ID is not a valid UUID"),
    ],
)
def test_events_paging_is_validated_with_menders_messages(api: Api, query: str, message: str) -> None:
    response = api("GET", f"{BASE}/events", query=query)
    assert response.status == 400
    assert response.json()["error"] == message


def test_per_page_500_and_an_empty_integration_filter_are_accepted(api: Api) -> None:
    assert api("GET", f"{BASE}/events", query="per_page=500&integration_id=").status == 200


# ------------------------------------------------------------------ beyond Mender: filters, changes, tests


def test_event_types_are_stored_in_canonical_order_and_returned(api: Api) -> None:
    integration_id = _create(
        api, _webhook(event_types=["device-status-changed", "device-provisioned", "device-provisioned"])
    )
    got = api("GET", f"{BASE}/integrations/{integration_id}").json()
    assert got["event_types"] == ["device-provisioned", "device-status-changed"]
    bad = api("POST", f"{BASE}/integrations", _webhook(event_types=["device-exploded"]))
    assert bad.status == 400 and bad.json()["error"].startswith("malformed request body: event_types: (0: must be")
    empty = api("POST", f"{BASE}/integrations", _webhook(event_types=[]))
    assert empty.status == 400 and "at least one event type" in empty.json()["error"]


def test_put_changes_only_the_fields_given(api: Api) -> None:
    integration_id = _create(api, _webhook(description="before", event_types=["device-provisioned"]))
    response = api("PUT", f"{BASE}/integrations/{integration_id}", {"description": "after"})
    assert response.status == 200
    assert response.json()["description"] == "after"
    assert response.json()["event_types"] == ["device-provisioned"]
    assert response.json()["credentials"]["http"]["secret"] == "<omitted>"
    cleared = api("PUT", f"{BASE}/integrations/{integration_id}", {"event_types": None}).json()
    assert "event_types" not in cleared
    moved = api("PUT", f"{BASE}/integrations/{integration_id}", {"url": "https://other.example.com/new"}).json()
    assert moved["credentials"]["http"]["url"] == "https://other.example.com/new"
    refused = api("PUT", f"{BASE}/integrations/{integration_id}", {"url": "http://10.1.1.1/"})
    assert refused.status == 400 and refused.json()["error"] == (
        "malformed request body: url: hostname resolves to reserved address."
    )


def test_put_disables_and_re_enables_a_webhook(api: Api) -> None:
    integration_id = _create(api)
    disabled = api("PUT", f"{BASE}/integrations/{integration_id}", {"enabled": False}).json()
    assert (disabled["enabled"], disabled["disabled_reason"]) == (False, "disabled by a user")
    enabled = api("PUT", f"{BASE}/integrations/{integration_id}", {"enabled": True}).json()
    assert enabled["enabled"] is True and "disabled_reason" not in enabled
    assert api("PUT", f"{BASE}/integrations/{uuid.uuid4()}", {"enabled": True}).status == 404


def test_replacing_the_secret_keeps_the_previous_one_for_the_overlap(api: Api) -> None:
    integration_id = _create(api, _webhook(secret="deadbeef"))
    body = {"type": "http", "http": {"url": "https://hooks.example.com/mender", "secret": "c0ffee"}}
    assert api("PUT", f"{BASE}/integrations/{integration_id}/credentials", body).status == 204
    stored = api.integrations.get("tenant-1", integration_id)
    assert stored is not None and stored.previous_secret is not None and stored.previous_secret_until is not None
    assert PlainTestCipher().open(stored.previous_secret, "tenant-1", integration_id) == bytes.fromhex("deadbeef")
    assert PlainTestCipher().open(stored.secret or b"", "tenant-1", integration_id) == bytes.fromhex("c0ffee")
    assert 23.9 * 3600 < (stored.previous_secret_until - stored.updated_at).total_seconds() <= 24 * 3600


def test_test_delivery_answers_with_the_outcome(api: Api, httpserver: Any) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("received", status=202)
    integration_id = _create(api, _webhook(url=httpserver.url_for("/hook")))
    response = api("POST", f"{BASE}/integrations/{integration_id}/test")
    assert response.status == 200
    outcome = response.json()
    assert (outcome["success"], outcome["status_code"], outcome["response_body"]) == (True, 202, "received")
    sent = json.loads(httpserver.log[0][0].get_data())
    assert sent["type"] == "webhook-test" and sent["id"] == outcome["event_id"]
    listed = api("GET", f"{BASE}/events").json()
    assert listed[0]["type"] == "webhook-test"


def test_event_detail_has_per_attempt_records(api: Api, httpserver: Any) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("teapot", status=418)
    integration_id = _create(api, _webhook(url=httpserver.url_for("/hook")))
    event_id = api("POST", f"{BASE}/integrations/{integration_id}/test").json()["event_id"]
    detail = api("GET", f"{BASE}/events/{event_id}")
    assert detail.status == 200
    (status,) = detail.json()["delivery_statuses"]
    assert (status["success"], status["status_code"], status["state"], status["attempts"]) == (False, 418, "failed", 1)
    (attempt,) = status["attempt_log"]
    assert (attempt["attempt"], attempt["status_code"], attempt["response_body"]) == (1, 418, "teapot")
    assert attempt["error"] == "unexpected status code from webhook: 418"
    assert api("GET", f"{BASE}/events/{uuid.uuid4()}").status == 404
    assert api("GET", f"{BASE}/events/not-a-uuid").json()["error"].startswith("event ID must be a valid UUID")
    assert api("GET", f"{BASE}/events/{event_id}", tenant="tenant-2").status == 404


def test_event_detail_has_the_exact_body_and_each_attempts_headers(api: Api, httpserver: Any) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    integration_id = _create(api, _webhook(url=httpserver.url_for("/hook"), secret="deadbeef"))
    event_id = api("POST", f"{BASE}/integrations/{integration_id}/test").json()["event_id"]
    detail = api("GET", f"{BASE}/events/{event_id}").json()
    request = httpserver.log[0][0]
    assert detail["body"].encode() == request.get_data()  # byte for byte, as sent
    ((attempt,),) = [s["attempt_log"] for s in detail["delivery_statuses"]]
    headers = attempt["headers"]
    assert headers["X-Men-Signature"] == request.headers["X-Men-Signature"]
    assert headers["webhook-id"] == event_id and headers["Content-Type"] == "application/json"
    assert "deadbeef" not in json.dumps(detail)  # signatures, never the secret
    # an attempt kept without its headers (store/bounds.py) reads without them
    stored = api.activity.get("tenant-1", event_id)
    assert stored is not None
    bare = replace(stored.attempts[integration_id][0], headers=None)
    api.activity.record("tenant-1", event_id, [(stored.deliveries[integration_id], bare)])
    log = api("GET", f"{BASE}/events/{event_id}").json()["delivery_statuses"][0]["attempt_log"]
    assert "headers" in log[0] and "headers" not in log[1]


def test_redeliver_queues_the_event_for_its_webhooks(api: Api, httpserver: Any) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    integration_id = _create(api, _webhook(url=httpserver.url_for("/hook")))
    event_id = _store_events(api, 1, integration=integration_id)[0]
    response = api("POST", f"{BASE}/events/{event_id}/redeliver")
    assert response.status == 202
    assert response.json() == {"event_id": event_id, "integration_ids": [integration_id]}
    assert [t.integration_id for t, _ in api.queue.scheduled] == [integration_id]
    api.activity.claim("tenant-1", event_id, integration_id, datetime.now(UTC), 60, 1)  # an attempt in flight
    again = api("POST", f"{BASE}/events/{event_id}/redeliver", {"integration_id": integration_id})
    assert again.status == 409
    assert again.json()["error"] == "the delivery is being attempted now; try again once the attempt is over"
    assert api("POST", f"{BASE}/events/{uuid.uuid4()}/redeliver").status == 404
    missing = api("POST", f"{BASE}/events/{event_id}/redeliver", {"integration_id": str(uuid.uuid4())})
    assert (missing.status, missing.json()["error"]) == (404, "integration not found")


def _event_to(api: Api, statuses: list[DeliveryStatus], tenant: str = "tenant-1", test: bool = False) -> str:
    """An event recorded with these deliveries' statuses (no POST made)."""
    event = WebhookEvent(
        id=new_event_id(datetime.now(UTC), "device-decommissioned"),
        tenant_id=tenant,
        type="device-decommissioned",
        data={"id": "device-1"},
        time=datetime.now(UTC),
    )
    api.activity.create(ActivityEvent.new(event, 0, [DeliveryStatus(s.integration_id) for s in statuses], test=test))
    api.activity.record(tenant, event.id, [(s, None) for s in statuses])
    return event.id


def _retrying(integration_id: str, attempts: int = 1) -> DeliveryStatus:
    due = datetime.now(UTC) + timedelta(minutes=5)
    return DeliveryStatus(integration_id, "retrying", attempts, 503, "HTTP 503", datetime.now(UTC), due)


def _delivered(integration_id: str, attempts: int = 1) -> DeliveryStatus:
    return DeliveryStatus(integration_id, "delivered", attempts, 200, None, datetime.now(UTC))


def test_retry_queues_only_the_deliveries_that_were_not_delivered(api: Api) -> None:
    api.service.max_integrations = 4
    waiting, done, failed, skipped = (_create(api) for _ in range(4))
    event_id = _event_to(
        api,
        [
            _retrying(waiting),
            _delivered(done),
            DeliveryStatus(failed, "failed", 3, 500, "HTTP 500"),
            DeliveryStatus(skipped, "skipped", error="webhook is disabled"),
        ],
    )
    response = api("POST", f"{BASE}/events/{event_id}/retry")
    assert response.status == 202, response.text
    assert response.json() == {"event_id": event_id, "integration_ids": [waiting, failed, skipped]}
    tasks = [(t.integration_id, t.seen_attempts, t.reason) for t, delay in api.queue.scheduled if delay == 0]
    assert tasks == [(waiting, 1, "redeliver"), (failed, 3, "redeliver"), (skipped, 0, "redeliver")]
    stored = api.activity.get("tenant-1", event_id)
    assert stored is not None
    assert {i: s.state for i, s in stored.deliveries.items()} == {
        waiting: "pending",
        done: "delivered",
        failed: "pending",
        skipped: "pending",
    }
    # asked again (a second click): each is queued already, and nothing more goes on the queue
    again = api("POST", f"{BASE}/events/{event_id}/retry", {"integration_id": waiting})
    assert (again.status, again.json()["error"]) == (409, QUEUED_ALREADY)
    assert set(again.json()) == {"error", "request_id"}  # Mender's error format
    assert len(api.queue.scheduled) == 3


@pytest.mark.parametrize("webhooks", [1, 2])
def test_retry_of_an_event_delivered_everywhere_is_a_409_that_says_so_and_sends_nothing(
    api: Api, webhooks: int
) -> None:
    hooks = [_create(api) for _ in range(webhooks)]
    event_id = _event_to(api, [_delivered(h) for h in hooks])
    response = api("POST", f"{BASE}/events/{event_id}/retry")
    assert response.status == 409
    assert response.json()["error"] == (DELIVERED_ALREADY if webhooks == 1 else RETRY_ALL_DELIVERED)
    one = api("POST", f"{BASE}/events/{event_id}/retry", {"integration_id": hooks[0]})
    assert (one.status, one.json()["error"]) == (409, DELIVERED_ALREADY)
    assert api.queue.scheduled == []
    # redeliver still sends it again
    assert api("POST", f"{BASE}/events/{event_id}/redeliver", {"integration_id": hooks[0]}).status == 202


def test_retry_is_refused_with_the_reason_while_attempted_for_a_disabled_webhook_and_for_tests(api: Api) -> None:
    hook, other = _create(api), _create(api)
    event_id = _event_to(api, [_retrying(hook), _retrying(other)])
    api.activity.claim("tenant-1", event_id, hook, datetime.now(UTC), 60, 1)  # an attempt in flight
    in_flight = api("POST", f"{BASE}/events/{event_id}/retry", {"integration_id": hook})
    assert (in_flight.status, in_flight.json()["error"]) == (409, IN_FLIGHT)
    assert api("PUT", f"{BASE}/integrations/{other}", {"enabled": False}).status == 200
    disabled = api("POST", f"{BASE}/events/{event_id}/retry", {"integration_id": other})
    assert (disabled.status, disabled.json()["error"]) == (409, RETRY_DISABLED)
    both = api("POST", f"{BASE}/events/{event_id}/retry")
    assert (both.status, both.json()["error"]) == (409, f"{IN_FLIGHT}; {RETRY_DISABLED}")
    test_event = _event_to(api, [_retrying(hook)], test=True)
    refused = api("POST", f"{BASE}/events/{test_event}/retry")
    assert (refused.status, refused.json()["error"]) == (409, RETRY_TEST)
    elsewhere = _event_to(api, [_retrying(other)])
    not_sent = api("POST", f"{BASE}/events/{elsewhere}/retry", {"integration_id": hook})
    assert (not_sent.status, not_sent.json()["error"]) == (409, RETRY_NOT_SENT)
    assert api.queue.scheduled == []


def test_a_disabled_webhooks_retry_says_it_is_disabled_even_while_an_attempt_is_in_flight(api: Api) -> None:
    """The order of the checks: delivered first, then the webhook (removed, disabled), then the
    delivery's own state; a disabled webhook's refusal never reads as "being attempted"."""
    hook = _create(api)
    event_id = _event_to(api, [_retrying(hook)])
    api.activity.claim("tenant-1", event_id, hook, datetime.now(UTC), 60, 1)  # an attempt started before
    assert api("PUT", f"{BASE}/integrations/{hook}", {"enabled": False}).status == 200
    refused = api("POST", f"{BASE}/events/{event_id}/retry", {"integration_id": hook})
    assert (refused.status, refused.json()["error"]) == (409, RETRY_DISABLED)
    everywhere = api("POST", f"{BASE}/events/{event_id}/retry")
    assert (everywhere.status, everywhere.json()["error"]) == (409, RETRY_DISABLED)
    redeliver = api("POST", f"{BASE}/events/{event_id}/redeliver", {"integration_id": hook})
    assert (redeliver.status, redeliver.json()["error"]) == (
        409,
        "the webhook is disabled; enable it before redelivering",
    )
    # a delivered delivery still reads as delivered, disabled or not
    done = _event_to(api, [_delivered(hook)])
    delivered = api("POST", f"{BASE}/events/{done}/retry", {"integration_id": hook})
    assert (delivered.status, delivered.json()["error"]) == (409, DELIVERED_ALREADY)
    assert api.queue.scheduled == []


def test_retry_of_unknown_or_malformed_ids(api: Api) -> None:
    hook = _create(api)
    event_id = _event_to(api, [_retrying(hook)])
    unknown = api("POST", f"{BASE}/events/{uuid.uuid4()}/retry")
    assert (unknown.status, unknown.json()["error"]) == (404, "event not found")
    missing = api("POST", f"{BASE}/events/{event_id}/retry", {"integration_id": str(uuid.uuid4())})
    assert (missing.status, missing.json()["error"]) == (404, "integration not found")
    other_tenant = api("POST", f"{BASE}/events/{event_id}/retry", tenant="tenant-2")
    assert other_tenant.status == 404
    bad = api("POST", f"{BASE}/events/not-a-uuid/retry")
    assert bad.status == 400 and bad.json()["error"] == "event ID must be a valid UUID: invalid UUID length: 10"
    bad_hook = api("POST", f"{BASE}/events/{event_id}/retry", {"integration_id": "nope"})
    assert bad_hook.status == 400 and bad_hook.json()["error"].startswith("integration ID must be a valid UUID")
    malformed = api("POST", f"{BASE}/events/{event_id}/retry", raw_body="{")
    assert malformed.status == 400
    assert api.queue.scheduled == []


def test_retry_is_a_change_only_an_admin_may_make(api: Api) -> None:
    """Every POST is a change: the authorizer refuses a non-admin's (docs/architecture.md, "Who may
    change integrations"), and the management function answers its verdict with Mender's 403."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    config = AuthConfig(pem.decode(), admin_claim="roles")
    hook = _create(api)
    event_id = _event_to(api, [_retrying(hook)])
    path = f"{BASE}/events/{event_id}/retry"

    def verdict(roles: list[str]) -> dict[str, Any]:
        claims = {"sub": "user-1", "exp": int(datetime.now(UTC).timestamp()) + 600, "mender.user": True}
        token = jwt.encode({**claims, "mender.tenant": "tenant-1", "roles": roles}, key, algorithm="EdDSA")
        request = {
            "type": "REQUEST",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"authorization": f"Bearer {token}"},
            "requestContext": {"http": {"method": "POST", "path": path}},
        }
        return dict(authorize(request, config)["context"])

    refused = api("POST", path, verdict=verdict(["user"]))
    assert (refused.status, refused.json()["error"]) == (403, "unauthorized")
    assert api.queue.scheduled == []
    assert api("POST", path, verdict=verdict(["admin"])).status == 202
    assert len(api.queue.scheduled) == 1


def test_a_redelivery_its_event_record_has_no_room_for_is_a_409_and_sends_nothing(
    api: Api, httpserver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event item grown to DynamoDB's limit before the bounds (store/bounds.py): the reopen
    cannot be written, so nothing is queued or sent, and the caller is told why (never a 500)."""
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    integration_id = _create(api, _webhook(url=httpserver.url_for("/hook")))
    event_id = _store_events(api, 1, integration=integration_id)[0]

    def full(*args: Any, **kwargs: Any) -> bool:
        raise ItemTooLarge("no room")

    monkeypatch.setattr(api.activity, "reopen", full)
    response = api("POST", f"{BASE}/events/{event_id}/redeliver")
    assert response.status == 409
    assert response.json()["error"] == TOO_LARGE  # Mender's error format: {"error", "request_id"}
    assert api.queue.scheduled == [] and httpserver.log == []


def test_a_delivery_its_event_record_has_no_room_to_lease_goes_to_the_dlq_unsent(
    api: Api, httpserver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    integration_id = _create(api, _webhook(url=httpserver.url_for("/hook")))
    event_id = _store_events(api, 1, integration=integration_id)[0]
    assert api("POST", f"{BASE}/events/{event_id}/redeliver").status == 202
    ((task, _),) = api.queue.scheduled

    def full(*args: Any, **kwargs: Any) -> Any:
        raise ItemTooLarge("no room")

    monkeypatch.setattr(api.activity, "claim", full)
    batch = Batch(deadline=None)
    api.dispatcher.handle_task(task, batch)  # no error: the message is done with
    api.dispatcher.finish_batch(batch)
    assert httpserver.log == []  # never a POST that could not be recorded
    ((dead, reason),) = api.queue.dead
    assert dead.event_id == event_id and reason.startswith("not sent: the event's activity record is full")


def test_event_detail_says_how_many_attempts_its_log_left_out(api: Api) -> None:
    integration_id = _create(api)
    event = WebhookEvent(
        id=new_event_id(datetime.now(UTC), "device-decommissioned"),
        tenant_id="tenant-1",
        type="device-decommissioned",
        data={"id": "d"},
        time=datetime.now(UTC),
    )
    event_id = event.id
    api.activity.create(ActivityEvent.new(event, 0, [DeliveryStatus(integration_id)]))
    status = DeliveryStatus(integration_id)
    for number in range(1, 8):
        if number == 5:
            (whole,) = api("GET", f"{BASE}/events/{event_id}").json()["delivery_statuses"]
            assert "attempts_not_kept" not in whole  # absent while the log shows every attempt
        attempt = Attempt(number, datetime.now(UTC), 3, 503, "unexpected status code from webhook: 503", "\ufffd" * 256)
        status = status.after_attempt(attempt, "retrying", datetime.now(UTC), datetime.now(UTC))
        api.activity.record("tenant-1", event_id, [(status, attempt)], deliveries=1)
    (shown,) = api("GET", f"{BASE}/events/{event_id}").json()["delivery_statuses"]
    assert [a["attempt"] for a in shown["attempt_log"]] == [1, 5, 6, 7]
    assert (shown["attempts"], shown["attempts_not_kept"]) == (7, 3)
    assert all(len(a["response_body"].encode()) <= 256 for a in shown["attempt_log"])
    listed = api("GET", f"{BASE}/events").json()[0]["delivery_statuses"][0]
    assert "attempts_not_kept" not in listed and "attempt_log" not in listed  # Mender's list shape unchanged


Caller = Callable[..., Response]


def test_a_failing_webhook_shows_its_circuit_and_a_healthy_one_shows_none(api: Api) -> None:
    healthy, failing = _create(api), _create(api)
    now = datetime.now(UTC)
    for _ in range(5):
        seen = api.integrations.note_failure("tenant-1", failing, now)
    assert seen is not None
    opened_until = now + timedelta(seconds=30)
    api.integrations.open_circuit("tenant-1", failing, seen.circuit, Circuit(5, now, opened_until, 30))
    shown = api("GET", f"{BASE}/integrations/{failing}").json()
    assert shown["circuit"] == {
        "state": "open",
        "failures": 5,
        "since": rfc3339_millis(now),
        "next_attempt": rfc3339_millis(opened_until),
    }
    assert "circuit" not in api("GET", f"{BASE}/integrations/{healthy}").json()
    listed = {i["id"]: i for i in api("GET", f"{BASE}/integrations").json()}
    assert listed[failing]["circuit"]["state"] == "open" and "circuit" not in listed[healthy]


def test_a_rate_limit_is_set_shown_changed_and_removed(api: Api) -> None:
    created = _create(api, {**_webhook(), "rate_limit": 5})
    assert api("GET", f"{BASE}/integrations/{created}").json()["rate_limit"] == 5
    changed = api("PUT", f"{BASE}/integrations/{created}", {"rate_limit": 20})
    assert (changed.status, changed.json()["rate_limit"]) == (200, 20)
    kept = api("PUT", f"{BASE}/integrations/{created}", {"description": "other"})
    assert kept.json()["rate_limit"] == 20
    removed = api("PUT", f"{BASE}/integrations/{created}", {"rate_limit": None})
    assert removed.status == 200 and "rate_limit" not in removed.json()


@pytest.mark.parametrize("limit", [0, -1, 10_001, "fast", 1.5])
def test_an_impossible_rate_limit_is_menders_400(api: Api, limit: Any) -> None:
    created = _create(api)
    response = api("PUT", f"{BASE}/integrations/{created}", {"rate_limit": limit})
    assert response.status == 400
    assert response.json()["error"].startswith("malformed request body: rate_limit: ")


# ------------------------------------------------------------------ Mender's error order and wording


def test_put_credentials_checks_the_id_before_the_body_as_mender(api: Api) -> None:
    # mender-server api/http/management.go SetIntegrationCredentials: uuid.Parse, then ShouldBindJSON
    response = api("PUT", f"{BASE}/integrations/not-a-uuid/credentials")
    assert (response.status, response.json()["error"]) == (
        400,
        "integration ID must be a valid UUID: invalid UUID length: 10",
    )
    response = api("PUT", f"{BASE}/integrations/not-a-uuid/credentials", {"type": 1234})
    assert response.json()["error"] == "integration ID must be a valid UUID: invalid UUID length: 10"


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        (
            "POST",
            "/integrations",
            {"provider": "webhook", "credentials": 1234},
            "malformed request body: json: cannot unmarshal number into Go struct field Integration.credentials "
            "of type model.Credentials",
        ),
        (
            "POST",
            "/integrations",
            {"provider": 7, "credentials": {"type": "http", "http": {"url": "https://hooks.example.com/x"}}},
            "malformed request body: json: cannot unmarshal number into Go struct field Integration.provider "
            "of type model.Provider",
        ),
        (
            "POST",
            "/integrations",
            {"provider": "webhook", "credentials": {"type": ["http"]}},
            "malformed request body: json: cannot unmarshal array into Go struct field "
            "Credentials.credentials.type of type model.CredentialType",
        ),
        (
            "POST",
            "/integrations",
            {"provider": "webhook", "credentials": {"type": "http", "http": {"url": True}}},
            # HTTPCredentials decodes itself: Go names the field that holds it, with the inner type
            "malformed request body: json: cannot unmarshal bool into Go struct field "
            "Credentials.credentials.http of type string",
        ),
        (
            "POST",
            "/integrations",
            "webhook",
            "malformed request body: json: cannot unmarshal string into Go value of type model.Integration",
        ),
        (
            "PUT",
            "/integrations/{id}/credentials",
            {"type": 1234},
            "malformed request body: json: cannot unmarshal number into Go struct field Credentials.type "
            "of type model.CredentialType",
        ),
        (
            "PUT",
            "/integrations/{id}/credentials",
            [],
            "malformed request body: json: cannot unmarshal array into Go value of type model.Credentials",
        ),
    ],
)
def test_a_body_of_the_wrong_json_type_gets_gos_decoding_message(
    api: Api, method: str, path: str, body: Any, message: str
) -> None:
    integration_id = _create(api)
    response = api(method, BASE + path.format(id=integration_id), body)
    assert (response.status, response.json()["error"]) == (400, message)


@pytest.mark.parametrize(
    "body", [{}, {"http": {"url": "https://hooks.example.com/x"}}, {"type": "", "http": {"url": "https://e.x/"}}]
)
def test_put_credentials_without_a_type_says_only_that_the_type_is_blank(api: Api, body: dict[str, Any]) -> None:
    # Mender's Credentials.Validate: http is Required only When(type == http)
    integration_id = _create(api)
    response = api("PUT", f"{BASE}/integrations/{integration_id}/credentials", body)
    assert (response.status, response.json()["error"]) == (400, "malformed request body: type: cannot be blank.")
    response = api("PUT", f"{BASE}/integrations/{integration_id}/credentials", {"type": "http"})
    assert response.json()["error"] == "malformed request body: http: cannot be blank."


# ------------------------------------------------------------------ scopes


def test_scopes_round_trip_as_given(api: Api) -> None:
    both = _create(api, _webhook(scopes=["inventory", "deviceauth"]))
    empty = _create(api, _webhook(scopes=[]))
    absent = _create(api)
    by_id = {i["id"]: i for i in api("GET", f"{BASE}/integrations").json()}
    assert by_id[both]["scopes"] == ["deviceauth", "inventory"]
    assert by_id[empty]["scopes"] == []
    assert "scopes" not in by_id[absent]  # as before scopes: deviceauth only
    assert list(by_id[both])[:5] == ["id", "provider", "credentials", "scopes", "enabled"]
    stored = {i.id: i for i in api.integrations.list_tenant("tenant-1")}
    assert [stored[i].wants("device-inventory-changed") for i in (both, empty, absent)] == [True, False, False]


def test_scopes_change_with_put_and_the_event_type_filter_stays_inside_them(api: Api) -> None:
    integration_id = _create(api)
    path = f"{BASE}/integrations/{integration_id}"
    response = api("PUT", path, {"event_types": ["device-inventory-changed"]})
    assert (response.status, response.json()["error"]) == (
        400,
        "malformed request body: event_types: 'device-inventory-changed' is not in the integration's scopes "
        "(deviceauth).",
    )
    response = api("PUT", path, {"scopes": ["inventory"], "event_types": ["device-inventory-changed"]})
    assert response.status == 200
    assert (response.json()["scopes"], response.json()["event_types"]) == (
        ["inventory"],
        ["device-inventory-changed"],
    )
    assert api("PUT", path, {"scopes": ["deviceauth"]}).status == 400  # the filter would fall outside
    assert api("PUT", path, {"scopes": None, "event_types": None}).json().get("scopes") is None
    bad = api("POST", f"{BASE}/integrations", _webhook(event_types=["device-inventory-changed"]))
    assert bad.status == 400 and "is not in the integration's scopes (deviceauth)" in bad.json()["error"]


def _failed(api: Api, integration_id: str, minutes_ago: float, state: str = "failed", attempts: int = 3) -> str:
    event = WebhookEvent(
        id=new_event_id(datetime.now(UTC) - timedelta(minutes=minutes_ago), "device-decommissioned"),
        tenant_id="tenant-1",
        type="device-decommissioned",
        data={"id": "device-1"},
        time=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )
    api.activity.create(ActivityEvent.new(event, 0, [DeliveryStatus(integration_id)]))
    failed = DeliveryStatus(integration_id, state=state, status_code=500, attempts=attempts)  # type: ignore[arg-type]
    api.activity.record("tenant-1", event.id, [(failed, None)])
    return event.id


def test_recover_queues_the_failed_deliveries_of_the_window_once(api: Api) -> None:
    integration_id = _create(api)
    failed = [_failed(api, integration_id, m) for m in (30, 10)]
    _failed(api, integration_id, 120)  # before since
    since = rfc3339_millis(datetime.now(UTC) - timedelta(hours=1))
    response = api("POST", f"{BASE}/integrations/{integration_id}/recover", {"since": since})
    nothing = {"count": 0, "found": 0, "already_queued": 0, "skipped": []}
    assert (response.status, response.json()) == (202, {"count": 2, "found": 2, "already_queued": 0, "skipped": []})
    assert sorted(t.event_id for t, _ in api.queue.scheduled) == sorted(failed)
    again = api("POST", f"{BASE}/integrations/{integration_id}/recover", {"since": since})
    assert (again.status, again.json()) == (202, {**nothing, "found": 2, "already_queued": 2})
    assert len(api.queue.scheduled) == 2
    until = rfc3339_millis(datetime.now(UTC) - timedelta(minutes=40))
    windowed = api("POST", f"{BASE}/integrations/{integration_id}/recover", {"since": since, "until": until})
    assert (windowed.status, windowed.json()) == (202, nothing)
    assert all("test" not in e for e in api("GET", f"{BASE}/events").json())  # device events: no test flag


def test_recover_answers_what_it_queued_what_it_left_and_why_and_an_open_circuit(api: Api) -> None:
    integration_id = _create(api)
    queued = [_failed(api, integration_id, 30, "retrying", 1), _failed(api, integration_id, 20, "retrying", 0)]
    _failed(api, integration_id, 15, "skipped", 0)
    _failed(api, integration_id, 10, "pending", 0)
    now = datetime.now(UTC)
    seen = api.integrations.get("tenant-1", integration_id)
    assert seen is not None
    opened_until = now + timedelta(minutes=5)
    api.integrations.open_circuit("tenant-1", integration_id, seen.circuit, Circuit(5, now, opened_until, 300))
    since = rfc3339_millis(now - timedelta(hours=1))
    response = api("POST", f"{BASE}/integrations/{integration_id}/recover", {"since": since})
    assert response.status == 202, response.text
    assert response.json() == {
        "count": 2,
        "found": 4,
        "already_queued": 1,
        "skipped": [
            {
                "reason": "disabled",
                "count": 1,
                "message": "skipped while the webhook was disabled (retry each one to send it)",
            }
        ],
        "circuit": {
            "state": "open",
            "failures": 0,  # the failures counted by the store (none here), not the circuit's own
            "since": rfc3339_millis(now),
            "next_attempt": rfc3339_millis(opened_until),
        },
    }
    assert sorted(t.event_id for t, _ in api.queue.scheduled) == sorted(queued)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (None, 400, "malformed request body: request body is required"),
        ({}, 400, "malformed request body: since: cannot be blank."),
        ({"since": "yesterday"}, 400, "malformed request body: since: "),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 400, "malformed request body: until: "),
        # valid RFC 3339 whose instant is outside years 1-9999 in UTC
        ({"since": "0001-01-01T00:00:00+00:01"}, 400, "malformed request body: since: "),
        (
            {"since": "2026-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-00:01"},
            400,
            "malformed request body: until: ",
        ),
    ],
)
def test_recover_input_errors_are_menders_400(api: Api, body: Any, status: int, message: str) -> None:
    integration_id = _create(api)
    response = api("POST", f"{BASE}/integrations/{integration_id}/recover", body)
    assert response.status == status, response.text
    assert response.json()["error"].startswith(message)
    assert "request_id" in response.json()


def test_recover_of_an_unknown_or_malformed_integration(api: Api) -> None:
    body = {"since": "2026-01-01T00:00:00Z"}
    missing = api("POST", f"{BASE}/integrations/{uuid.uuid4()}/recover", body)
    assert (missing.status, missing.json()["error"]) == (404, "integration not found")
    bad = api("POST", f"{BASE}/integrations/not-a-uuid/recover", body)
    assert bad.status == 400 and bad.json()["error"].startswith("integration ID must be a valid UUID")


def test_a_typed_test_event_sends_a_sample_of_that_type(api: Api, httpserver: Any) -> None:
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    integration_id = _create(api, _webhook(url=httpserver.url_for("/hook")))
    response = api("POST", f"{BASE}/integrations/{integration_id}/test", {"type": "device-provisioned"})
    assert response.status == 200 and response.json()["success"] is True
    sent = json.loads(httpserver.log[0][0].get_data())
    assert (sent["id"], sent["type"]) == (response.json()["event_id"], "device-provisioned")
    assert sent["data"]["auth_sets"][0]["device_id"] == sent["data"]["id"]
    listed = api("GET", f"{BASE}/events").json()
    assert (listed[0]["type"], listed[0]["id"], listed[0]["test"]) == ("device-provisioned", sent["id"], True)
    assert api("GET", f"{BASE}/events/{sent['id']}").json()["test"] is True
    assert api.queue.scheduled == []
    plain = api("POST", f"{BASE}/integrations/{integration_id}/test", {})
    assert plain.status == 200 and json.loads(httpserver.log[1][0].get_data())["type"] == "webhook-test"
    wrong = api("POST", f"{BASE}/integrations/{integration_id}/test", {"type": "webhook-test"})
    assert wrong.status == 400 and wrong.json()["error"].startswith("malformed request body: type: ")


# ------------------------------------------------------------------ event filters and webhook health


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=done", 'invalid status query: "done" (one of pending, retrying, delivered, failed, skipped)'),
        (
            "status=DELIVERED",
            'invalid status query: "DELIVERED" (one of pending, retrying, delivered, failed, skipped)',
        ),
        (
            "type=device-exploded",
            'invalid type query: "device-exploded" (one of device-provisioned, device-decommissioned, '
            "device-status-changed, device-inventory-changed, webhook-test)",
        ),
        ("from=yesterday", 'invalid from query: "yesterday" is not an RFC 3339 time'),
        ("to=2026-01-01T00:00:00", 'invalid to query: "2026-01-01T00:00:00" is not an RFC 3339 time'),
        ("from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "invalid time range: to must be after from"),
        ("from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "invalid time range: to must be after from"),
        # valid RFC 3339 whose instant is outside years 1-9999 in UTC
        ("from=0001-01-01T00:00:00+00:01", 'invalid from query: "0001-01-01T00:00:00+00:01" is not an RFC 3339 time'),
        ("to=9999-12-31T23:59:59-00:01", 'invalid to query: "9999-12-31T23:59:59-00:01" is not an RFC 3339 time'),
        (f"device_id={'d' * 257}", "invalid device_id query: the length must be no more than 256"),
        ("device_id=d\ud800", "invalid device_id query: contains a lone surrogate (\\ud800), which is not Unicode"),
        ("status=failed&integration_id=nope", "integration ID is not a valid UUID"),
        (f"device_prefix={'d' * 257}", "invalid device_prefix query: the length must be no more than 256"),
        ("device_prefix=d&device_id=d1", "invalid device query: give device_id or device_prefix, not both"),
    ],
)
def test_event_filters_are_validated_with_menders_error_body(api: Api, query: str, message: str) -> None:
    response = api("GET", f"{BASE}/events", query=query)
    assert response.status == 400, response.text
    assert response.json()["error"] == message
    assert set(response.json()) == {"error", "request_id"}


def test_events_are_filtered_by_device_status_type_and_time(api: Api) -> None:
    integration = str(uuid.uuid4())
    ids = _store_events(api, 4, integration=integration)  # device-0..3, delivered, 1 s apart
    _store_events(api, 2)  # to no webhook
    query = "&".join
    assert [e["id"] for e in api("GET", f"{BASE}/events", query="device_id=device-2").json()] == [ids[2]]
    prefixed = [e["id"] for e in api("GET", f"{BASE}/events", query="device_prefix=device-").json()]
    assert len(prefixed) == 6 and set(ids) < set(prefixed)  # device-0..3 here, device-0..1 to no webhook
    narrowed = api("GET", f"{BASE}/events", query=f"device_prefix=device-&integration_id={integration}").json()
    assert [e["id"] for e in narrowed] == ids[::-1]
    assert api("GET", f"{BASE}/events", query="device_prefix=DEVICE").json() == []  # case as stored
    assert [e["id"] for e in api("GET", f"{BASE}/events", query="status=delivered").json()] == ids[::-1]
    assert api("GET", f"{BASE}/events", query=f"status=failed&integration_id={integration}").json() == []
    decommissioned = api("GET", f"{BASE}/events", query="type=device-decommissioned&per_page=2").json()
    assert [e["id"] for e in decommissioned] == [ids[3], ids[2]]
    assert api("GET", f"{BASE}/events", query="type=device-provisioned").json() == []
    assert [e["id"] for e in api("GET", f"{BASE}/events", query="status=pending").json()] == []  # none pending
    window = query(["from=2026-01-01T00:00:01Z", "to=2026-01-01T00:00:03.000Z", f"integration_id={integration}"])
    assert [e["id"] for e in api("GET", f"{BASE}/events", query=window).json()] == [ids[2], ids[1]]
    empty = query(["device_id=", "device_prefix=", "status=", "type=", "from=", "to="])  # empty: absent
    assert len(api("GET", f"{BASE}/events", query=empty).json()) == 6


def _bus_event(device: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "device-decommissioned",
        "source": "devicehooks.deviceauth",
        "time": "2026-01-01T10:00:00Z",
        "detail": {"tenant_id": "tenant-1", "data": {"id": device}},
    }


@pytest.fixture
def health_api(api: Api) -> Api:
    now = datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    management.app.dependency_overrides[management.health_service] = lambda: HealthService(
        api.integrations, api.activity, 5 * 24 * 3600, clock=lambda: now
    )
    return api


def test_health_counts_24_hours_of_attempts_oldest_first(health_api: Api) -> None:
    api = health_api
    integration_id = _create(api)
    hour = datetime(2026, 1, 2, 10, tzinfo=UTC)
    ok = Attempt(number=1, at=hour + timedelta(minutes=20), status_code=200)
    bad = Attempt(number=2, at=hour - timedelta(hours=2, minutes=-5), status_code=503, error="HTTP 503")
    api.activity.count_attempts("tenant-1", integration_id, HourCount(hour=hour).plus(ok, True).plus(ok, True), 0)
    api.activity.count_attempts("tenant-1", integration_id, HourCount(hour=bad.at).plus(bad, False).plus(bad, False), 0)
    old = replace(bad, at=hour - timedelta(hours=30))  # outside the window
    api.activity.count_attempts("tenant-1", integration_id, HourCount(hour=old.at).plus(old, False), 0)
    failing = datetime(2026, 1, 1, 9, tzinfo=UTC)
    api.integrations.note_failure("tenant-1", integration_id, failing)
    body = api("GET", f"{BASE}/integrations/{integration_id}/health").json()
    hourly = body.pop("hourly")
    assert body == {
        "last_delivery": {"at": "2026-01-02T10:20:00.000Z", "outcome": "delivered", "status_code": 200, "error": None},
        "window_hours": 24,
        "delivered": 2,
        "failed": 2,
        "success_rate": 0.5,
        "failing_since": "2026-01-01T09:00:00.000Z",
        "circuit": {"state": "closed", "failures": 1},
        "disable_at": "2026-01-06T09:00:00.000Z",
        "waiting": 0,
        "waiting_more": False,
        "oldest_waiting_at": None,
    }
    assert len(hourly) == 24
    assert hourly[0] == {"hour": "2026-01-01T11:00:00Z", "delivered": 0, "failed": 0}
    assert hourly[-3] == {"hour": "2026-01-02T08:00:00Z", "delivered": 0, "failed": 2}
    assert hourly[-1] == {"hour": "2026-01-02T10:00:00Z", "delivered": 2, "failed": 0}


def test_health_counts_the_deliveries_waiting_and_the_oldest_ones_time(health_api: Api) -> None:
    api = health_api
    integration_id, other = _create(api), _create(api)
    now = datetime(2026, 1, 2, 10, 30, tzinfo=UTC)
    held = DeliveryStatus(integration_id).held(now, "held: the webhook's rate limit is reached", now)
    first = _event_to(api, [held])
    _event_to(api, [_retrying(integration_id), _retrying(other)])
    _event_to(api, [DeliveryStatus(integration_id, state="failed", attempts=3, error="HTTP 503")])  # not waiting
    oldest = api.activity.get("tenant-1", first)
    assert oldest is not None
    body = api("GET", f"{BASE}/integrations/{integration_id}/health").json()
    assert (body["waiting"], body["waiting_more"]) == (2, False)
    assert body["oldest_waiting_at"] == rfc3339_millis(oldest.time)
    assert api("GET", f"{BASE}/integrations/{other}/health").json()["waiting"] == 1


def test_health_says_1000_and_more_past_the_count_cap(health_api: Api) -> None:
    api = health_api
    integration_id = _create(api)
    for _ in range(1001):
        _event_to(api, [_retrying(integration_id)])
    body = api("GET", f"{BASE}/integrations/{integration_id}/health").json()
    assert (body["waiting"], body["waiting_more"]) == (1000, True)
    assert body["oldest_waiting_at"] is not None


def test_health_of_a_webhook_without_attempts_and_of_unknown_ones(health_api: Api) -> None:
    api = health_api
    integration_id = _create(api)
    body = api("GET", f"{BASE}/integrations/{integration_id}/health").json()
    assert body["last_delivery"] is None and body["success_rate"] is None and body["disable_at"] is None
    assert body["circuit"] == {"state": "closed", "failures": 0} and body["failing_since"] is None
    assert sum(h["delivered"] + h["failed"] for h in body["hourly"]) == 0
    unknown = api("GET", f"{BASE}/integrations/{uuid.uuid4()}/health")
    assert (unknown.status, unknown.json()["error"]) == (404, "integration not found")
    other = api("GET", f"{BASE}/integrations/{integration_id}/health", tenant="tenant-2")
    assert other.status == 404
    assert api("GET", f"{BASE}/integrations/nope/health").status == 400
    assert api("GET", f"{BASE}/integrations/{integration_id}/health", tenant=None).status == 401


def test_the_dispatcher_writes_no_health_counts_the_stream_counter_does(api: Api, httpserver: Any) -> None:
    # the counts leave the delivery path (docs/architecture.md, "Webhook health"): a batch's
    # deliveries are recorded and the store's counts never called (tests/unit/test_health_counter.py
    # has the counter, tests/e2e/test_filters_health.py both together)
    httpserver.expect_request("/ok").respond_with_data("", status=204)
    ok = _create(api, _webhook(httpserver.url_for("/ok")))

    def broken(*_: Any) -> None:
        raise AssertionError("the dispatcher counted")

    api.activity.count_attempts = broken  # type: ignore[method-assign]
    batch = Batch(deadline=None)
    for n in range(3):
        api.dispatcher.handle_message(json.dumps(_bus_event(f"dev-{n}")), batch)
    api.dispatcher.finish_batch(batch)
    events = api.activity.list_events("tenant-1", 1, 10)
    assert [s.state for e in events for s in e.deliveries.values()] == ["delivered"] * 3
    assert api.activity.hour_counts("tenant-1", ok, datetime.now(UTC), 24) == []


def test_the_openapi_document_shows_the_health_shape_and_the_event_filters(api: Api) -> None:
    document = api("GET", f"{BASE}/openapi.json", tenant=None).json()
    health = document["paths"][f"{BASE}/integrations/{{integration_id}}/health"]
    assert set(health) == {"get"} and set(health["get"]["responses"]) >= {"200", "400", "401", "403", "404"}
    schemas = document["components"]["schemas"]
    assert set(schemas["HealthOut"]["required"]) == {
        "last_delivery",
        "window_hours",
        "delivered",
        "failed",
        "success_rate",
        "failing_since",
        "circuit",
        "disable_at",
        "hourly",
        "waiting",
        "waiting_more",
        "oldest_waiting_at",
    }
    assert set(schemas["HealthHourOut"]["properties"]) == {"hour", "delivered", "failed"}
    parameters = {p["name"] for p in document["paths"][f"{BASE}/events"]["get"]["parameters"]}
    assert parameters == {
        "page",
        "per_page",
        "integration_id",
        "device_id",
        "device_prefix",
        "status",
        "type",
        "from",
        "to",
    }


def test_egress_lists_the_static_addresses_webhook_requests_come_from(api: Api) -> None:
    # none configured (the template's StaticEgressIps false): an empty list
    management.app.dependency_overrides[management.egress_ips] = lambda: ()
    answer = api("GET", f"{BASE}/egress")
    assert (answer.status, answer.json()) == (200, {"addresses": []})
    management.app.dependency_overrides[management.egress_ips] = lambda: ("203.0.113.7", "198.51.100.9")
    assert api("GET", f"{BASE}/egress").json() == {"addresses": ["203.0.113.7", "198.51.100.9"]}
    assert api("GET", f"{BASE}/egress", tenant=None).status == 401
