"""Hostile callers over HTTP against a running local stack: forged tokens, other tenants, log leaks.

One stack for the module, run with ``POWERTOOLS_LOG_LEVEL=DEBUG``. Tenants A and B each own
webhooks with secrets, pointing at a local receiver, and A has a recorded (signed) delivery.

- JWT attacks: every forged, broken or insufficient token gets Mender's 401 (or 403) with
  ``{"error","request_id"}``, whichever route it is tried on, and never A's data.
- Another tenant's ids: B's token on A's integration and event ids gets 404, never the data,
  and changes nothing.
- Log scan (last): after driving the stack (secrets set and rotated, signed deliveries, failed
  authentications), the stack's whole output holds no secret, no bearer token (nor its
  signature), and no signature the receiver got.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from devicehooks_dev import devkeys
from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

BASE = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"
JSON = "application/json; charset=utf-8"
WWW_AUTHENTICATE = 'Bearer realm="ManagementJWT"'
DEADLINE = 30.0

# Everything that must never reach the logs, gathered as the tests use it.
SENSITIVE: set[str] = set()


@dataclass
class Tenant:
    name: str
    secret: str  # mixed case, as a client may send it
    marker: str
    urls: list[str] = field(default_factory=list)
    integration_ids: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


@dataclass
class World:
    stack: RunningStack
    receiver: HTTPServer
    key: Ed25519PrivateKey
    public_pem: str
    a: Tenant
    b: Tenant

    def token(self, tenant: Tenant, **overrides: Any) -> str:
        """A token signed with the stack's own key (valid unless ``overrides`` spoil it)."""
        token = jwt.encode(claims(tenant.name, **overrides), self.key, algorithm="EdDSA")
        SENSITIVE.add(token)
        return token

    def private(self) -> list[str]:
        """What no answer to another tenant or to a refused token may contain."""
        texts: list[str] = []
        for tenant in (self.a, self.b):
            texts += [tenant.marker, *tenant.urls, *secret_forms(tenant.secret)]
        return texts


def secret_forms(secret: str) -> list[str]:
    raw = bytes.fromhex(secret)
    return [secret, raw.hex(), base64.b64encode(raw).decode()]


def claims(tenant: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "iss": devkeys.ISSUER,
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"hostile:{tenant}")),
        "iat": now,
        "exp": now + 600,
        "mender.tenant": tenant,
        "mender.user": True,
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _echo_signature(request: Request) -> Response:
    """A hostile receiver: fails, and puts the signature it got in its error body."""
    return Response(f"bad signature {request.headers.get('X-Men-Signature', '')}", status=500)


@pytest.fixture(scope="module")
def receiver() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.expect_request(re.compile("^/echo/.*")).respond_with_handler(_echo_signature)
    server.expect_request(re.compile(".*")).respond_with_data("ok", status=200)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


def _headers(token: str) -> dict[str, str]:
    SENSITIVE.add(token)
    return {"Authorization": f"Bearer {token}"}


def _create(world_stack: RunningStack, token: str, tenant: Tenant, url: str, n: int) -> str:
    body = {
        "provider": "webhook",
        "credentials": {"type": "http", "http": {"url": url, "secret": tenant.secret}},
        "description": f"{tenant.marker} #{n}",
    }
    created = requests.post(f"{world_stack.url}{BASE}/integrations", json=body, headers=_headers(token), timeout=10)
    assert created.status_code == 201, created.text
    tenant.urls.append(url)
    return str(created.headers["Location"].rsplit("/", 1)[1])


def _poll(what: str, probe: Any) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {DEADLINE} s")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, receiver: HTTPServer) -> Iterator[World]:
    stack = start_stack(tmp_path_factory.mktemp("hostile"), {"POWERTOOLS_LOG_LEVEL": "DEBUG"})
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DEVICEHOOKS_DEV_KEY_FILE", stack.env["DEVICEHOOKS_DEV_KEY_FILE"])
            key, public_pem = devkeys.load_or_create(), devkeys.public_pem()
        a = Tenant(f"hostile-a-{uuid.uuid4().hex[:8]}", "C0FFEE" + uuid.uuid4().hex.upper(), f"a-{uuid.uuid4().hex}")
        b = Tenant(f"hostile-b-{uuid.uuid4().hex[:8]}", "BadF00d" + uuid.uuid4().hex + "0", f"b-{uuid.uuid4().hex}")
        world = World(stack, receiver, key, public_pem, a, b)
        for tenant in (a, b):
            SENSITIVE.update(secret_forms(tenant.secret))
            token = stack.token(tenant.name)
            tenant.integration_ids = [
                _create(stack, token, tenant, receiver.url_for(f"/hook/{tenant.marker}/{n}"), n) for n in range(2)
            ]
        provisioned = requests.post(f"{stack.url}{INTERNAL}/tenants/{a.name}/devices", json={"id": "d-1"}, timeout=10)
        assert provisioned.status_code == 202, provisioned.text

        def events() -> list[str]:
            listed = requests.get(f"{stack.url}{BASE}/events", headers=_headers(stack.token(a.name)), timeout=10)
            return [e["id"] for e in listed.json()]

        a.event_ids = _poll("A's provisioning event", events)
        yield world
    finally:
        stop_stack(stack)


def assert_refused(response: requests.Response, status: int, world: World, error: str | None = None) -> None:
    """Mender's error answer, and nothing of anyone's data in it."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == JSON
    body = response.json()
    assert set(body) == {"error", "request_id"}, body
    assert body["request_id"] == response.headers["X-MEN-RequestID"]
    if status == 401:
        assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    if error is not None:
        assert body["error"] == error
    for text in world.private():
        assert text not in response.text and text.lower() not in response.text.lower()


# ---------------------------------------------------------------- forged and broken tokens


def _none_token(world: World, signature: str = "") -> str:
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims(world.a.name))}.{signature}"


def _hmac_token(secret: bytes, tenant: str) -> str:
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT'})}.{segment(claims(tenant))}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def _foreign_key_token(world: World, embed_jwk: bool = False) -> str:
    attacker = Ed25519PrivateKey.generate()
    headers: dict[str, Any] = {"kid": devkeys.KEY_ID}
    if embed_jwk:  # "trust the key I brought": must be ignored
        raw = attacker.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        headers["jwk"] = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    return jwt.encode(claims(world.a.name), attacker, algorithm="EdDSA", headers=headers)


def _tampered_token(world: World) -> str:
    """A genuine token of B's whose claims were edited to say tenant A."""
    header, _, signature = world.token(world.b).split(".")
    return f"{header}.{segment(claims(world.a.name))}.{signature}"


UNAUTHORIZED = "identity: invalid token"
FORGED: dict[str, tuple[Any, str]] = {
    "alg none, no signature": (lambda w: _none_token(w), "identity: incorrect token format"),
    "alg none, with a signature": (
        lambda w: _none_token(w, b64url(b"x" * 64)),
        "identity: token signature algorithm not accepted",
    ),
    "alg NONE": (
        lambda w: _none_token(w, "x").replace(segment({"alg": "none", "typ": "JWT"}), segment({"alg": "NONE"})),
        "identity: token signature algorithm not accepted",
    ),
    "HS256 keyed with the dev public key PEM": (
        lambda w: _hmac_token(w.public_pem.encode(), w.a.name),
        "identity: token signature algorithm not accepted",
    ),
    "HS256 keyed with the raw public key": (
        lambda w: _hmac_token(
            w.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw), w.a.name
        ),
        "identity: token signature algorithm not accepted",
    ),
    "signed by another Ed25519 key": (lambda w: _foreign_key_token(w), "identity: invalid token signature"),
    "another key, embedded as jwk": (
        lambda w: _foreign_key_token(w, embed_jwk=True),
        "identity: invalid token signature",
    ),
    "claims edited after signing": (lambda w: _tampered_token(w), "identity: invalid token signature"),
    "expired": (lambda w: w.token(w.a, exp=int(time.time()) - 120), "identity: token has expired"),
    "not valid yet": (lambda w: w.token(w.a, nbf=int(time.time()) + 3600), UNAUTHORIZED),
    "exp not a number": (lambda w: w.token(w.a, exp="tomorrow"), UNAUTHORIZED),
    "missing sub": (lambda w: w.token(w.a, sub=None), 'identity: claim "sub" is required'),
    "empty sub": (lambda w: w.token(w.a, sub=""), 'identity: claim "sub" is required'),
    "missing exp": (lambda w: w.token(w.a, exp=None), 'identity: claim "exp" is required'),
    "tenant not a string": (
        lambda w: w.token(w.a, **{"mender.tenant": [w.a.name]}),
        'identity: claim "mender.tenant" must be a string',
    ),
}
NOT_A_USER: dict[str, Any] = {
    "mender.user false": lambda w: w.token(w.a, **{"mender.user": False}),
    "mender.user absent": lambda w: w.token(w.a, **{"mender.user": None}),
    "mender.user the string true": lambda w: w.token(w.a, **{"mender.user": "true"}),
    "a device token": lambda w: w.token(w.a, **{"mender.user": None, "mender.device": True}),
}


def _routes(world: World) -> list[tuple[str, str, Any]]:
    """Routes a forged token for tenant A is tried on: reads and writes of A's data."""
    one = world.a.integration_ids[0]
    webhook = {"type": "http", "http": {"url": "http://127.0.0.1:9/stolen"}}
    return [
        ("GET", f"{BASE}/integrations", None),
        ("GET", f"{BASE}/integrations/{one}", None),
        ("PUT", f"{BASE}/integrations/{one}/credentials", webhook),
        ("DELETE", f"{BASE}/integrations/{one}", None),
        ("GET", f"{BASE}/events", None),
    ]


def _call(world: World, method: str, path: str, body: Any, headers: dict[str, str]) -> requests.Response:
    return requests.request(method, f"{world.stack.url}{path}", json=body, headers=headers, timeout=10)


def _assert_a_is_intact(world: World) -> None:
    a = _headers(world.stack.token(world.a.name))
    listed = requests.get(f"{world.stack.url}{BASE}/integrations", headers=a, timeout=10)
    assert sorted(i["id"] for i in listed.json()) == sorted(world.a.integration_ids)
    assert all(i["credentials"]["http"]["url"] in world.a.urls for i in listed.json())


@pytest.mark.parametrize("attack", list(FORGED))
def test_forged_and_broken_tokens_get_menders_401_on_every_route(world: World, attack: str) -> None:
    make, error = FORGED[attack]
    token = make(world)
    SENSITIVE.add(token)
    for method, path, body in _routes(world):
        assert_refused(_call(world, method, path, body, {"Authorization": f"Bearer {token}"}), 401, world, error)
    # the JWT cookie is checked the same way
    cookie = requests.get(f"{world.stack.url}{BASE}/integrations", cookies={"JWT": token}, timeout=10)
    assert_refused(cookie, 401, world, error)
    _assert_a_is_intact(world)


@pytest.mark.parametrize("attack", list(NOT_A_USER))
def test_tokens_that_are_not_a_users_get_menders_403(world: World, attack: str) -> None:
    token = NOT_A_USER[attack](world)
    for method, path, body in _routes(world):
        response = _call(world, method, path, body, {"Authorization": f"Bearer {token}"})
        assert_refused(response, 403, world, "user identity missing from authorization token")
    _assert_a_is_intact(world)


GARBAGE: dict[str, tuple[dict[str, Any], str]] = {
    "no Authorization": ({}, "Authorization not present in header"),
    "Bearer and nothing": ({"Authorization": "Bearer"}, "malformed Authorization header"),
    "Basic credentials": ({"Authorization": "Basic dXNlcjpwYXNz"}, "unknown Authorization method Basic"),
    "an unknown method, very long": (
        {"Authorization": "X" * 5000 + " token"},
        "unknown Authorization method " + "X" * 32,
    ),
    "one word": ({"Authorization": "Bearer not-a-jwt"}, "identity: incorrect token format"),
    "four segments": ({"Authorization": "Bearer a.b.c.d"}, "identity: incorrect token format"),
    "empty segments": ({"Authorization": "Bearer .."}, "identity: incorrect token format"),
    "segments not base64": ({"Authorization": "Bearer @@@.###.$$$"}, "identity: incorrect token format"),
    "header a JSON list": (
        {"Authorization": f"Bearer {segment(['EdDSA'])}.{segment({})}.c2ln"},
        "identity: incorrect token format",
    ),
    "header without alg": (
        {"Authorization": f"Bearer {segment({'typ': 'JWT'})}.{segment({})}.c2ln"},
        "identity: token signature algorithm not accepted",
    ),
    "claims not JSON": (
        {"Authorization": f"Bearer {segment({'alg': 'EdDSA'})}.{b64url(b'{not json')}.{b64url(b'x' * 64)}"},
        "identity: invalid token signature",
    ),
    "bytes that are not UTF-8": ({"Authorization": b"Bearer \xff\xfe.\xfd.\xfc"}, "identity: incorrect token format"),
    "oversized token (9 KB)": (
        {"Authorization": "Bearer " + ".".join(["a" * 3000] * 3)},
        "identity: incorrect token format",
    ),
    "oversized header (60 KB)": ({"Authorization": "Bearer " + "a" * 60_000}, "identity: incorrect token format"),
    "garbage JWT cookie": ({"Cookie": "JWT=garbage"}, "identity: incorrect token format"),
}


@pytest.mark.parametrize("attack", list(GARBAGE))
def test_garbage_authorization_headers_get_menders_401(world: World, attack: str) -> None:
    headers, error = GARBAGE[attack]
    for method, path, body in _routes(world):
        assert_refused(_call(world, method, path, body, headers), 401, world, error)


# ---------------------------------------------------------------- another tenant's ids


def test_tenant_b_gets_404_on_tenant_as_ids_and_changes_nothing(world: World) -> None:
    b = _headers(world.stack.token(world.b.name))
    a_integration, a_event = world.a.integration_ids[0], world.a.event_ids[0]
    webhook = {"type": "http", "http": {"url": "http://127.0.0.1:9/stolen", "secret": "00"}}
    attempts = [
        ("GET", f"{BASE}/integrations/{a_integration}", None),
        ("DELETE", f"{BASE}/integrations/{a_integration}", None),
        ("PUT", f"{BASE}/integrations/{a_integration}/credentials", webhook),
        ("PUT", f"{BASE}/integrations/{a_integration}", {"description": "taken over", "enabled": False}),
        ("POST", f"{BASE}/integrations/{a_integration}/test", None),
        ("POST", f"{BASE}/integrations/{a_integration}/recover", {"since": "2026-01-01T00:00:00Z"}),
        ("GET", f"{BASE}/events/{a_event}", None),
        ("POST", f"{BASE}/events/{a_event}/redeliver", None),
        ("POST", f"{BASE}/events/{a_event}/redeliver", {"integration_id": a_integration}),
        ("POST", f"{BASE}/events/{a_event}/retry", None),
        ("POST", f"{BASE}/events/{a_event}/retry", {"integration_id": a_integration}),
    ]
    for method, path, body in attempts:
        assert_refused(_call(world, method, path, body, b), 404, world)

    # B's own reads show B's data only
    for path in ("/integrations", "/events", f"/events?integration_id={a_integration}"):
        response = requests.get(f"{world.stack.url}{BASE}{path}", headers=b, timeout=10)
        assert response.status_code == 200, response.text
        assert world.a.marker not in response.text and a_event not in response.text
        assert world.a.urls[0] not in response.text
    assert requests.get(f"{world.stack.url}{BASE}/events", headers=b, timeout=10).json() == []

    # and A's webhook is as A left it
    a = _headers(world.stack.token(world.a.name))
    own = requests.get(f"{world.stack.url}{BASE}/integrations/{a_integration}", headers=a, timeout=10)
    assert own.status_code == 200, own.text
    assert own.json()["credentials"]["http"]["url"] == world.a.urls[0]
    assert own.json()["description"] == f"{world.a.marker} #0"
    assert own.json()["enabled"] is True
    assert requests.get(f"{world.stack.url}{BASE}/events/{a_event}", headers=a, timeout=10).status_code == 200


# ---------------------------------------------------------------- the logs keep no secrets


def _received_signatures(receiver: HTTPServer) -> set[str]:
    found = set()
    for request, _ in receiver.log:
        for name in ("X-Men-Signature", "webhook-signature"):
            value = request.headers.get(name)
            if value:
                found.add(value)
                found.update(part.split(",", 1)[-1] for part in value.split(" "))
    return found


def test_the_stack_output_holds_no_secret_token_or_signature(world: World) -> None:
    stack, a = world.stack, world.a
    token = stack.token(a.name)
    headers = _headers(token)

    # a webhook whose receiver fails and echoes the signature it got (retried, logged as failures)
    echo_secret = "E" * 63 + "e"
    SENSITIVE.update(secret_forms(echo_secret))
    echo = {
        "provider": "webhook",
        "credentials": {"type": "http", "http": {"url": world.receiver.url_for("/echo/1"), "secret": echo_secret}},
    }
    created = requests.post(f"{stack.url}{BASE}/integrations", json=echo, headers=headers, timeout=10)
    assert created.status_code == 201, created.text

    # rotate a secret: the old one keeps signing webhook-signature for a while
    rotated = "0123456789ABCDEFabcdef" + uuid.uuid4().hex
    SENSITIVE.update(secret_forms(rotated))
    one = a.integration_ids[0]
    credentials = {"type": "http", "http": {"url": a.urls[0], "secret": rotated}}
    put = requests.put(
        f"{stack.url}{BASE}/integrations/{one}/credentials", json=credentials, headers=headers, timeout=10
    )
    assert put.status_code == 204, put.text

    # signed deliveries: a test event, and a device event to every webhook of A
    tested = requests.post(f"{stack.url}{BASE}/integrations/{one}/test", headers=headers, timeout=30)
    assert tested.status_code == 200 and tested.json()["success"] is True, tested.text
    device = requests.post(f"{stack.url}{INTERNAL}/tenants/{a.name}/devices", json={"id": "d-2"}, timeout=10)
    assert device.status_code == 202, device.text
    _poll("a signed delivery to the echoing receiver", lambda: any(r.path == "/echo/1" for r, _ in world.receiver.log))

    # failed authentications, with tokens
    for bad in (world.token(a, exp=int(time.time()) - 300), _foreign_key_token(world), _tampered_token(world)):
        SENSITIVE.add(bad)
        refused = requests.get(
            f"{stack.url}{BASE}/integrations", headers={"Authorization": f"Bearer {bad}"}, timeout=10
        )
        assert refused.status_code == 401

    signatures = _received_signatures(world.receiver)
    assert signatures, "the receiver got no signed request"
    # the device event went through the dispatcher, whose (DEBUG) log line comes after the delivery
    _poll("the dispatcher's log of the delivery", lambda: "webhook delivered" in "".join(stack.output))

    output = "".join(stack.output)
    json_lines = [line for line in output.splitlines() if line.startswith("{") and '"level"' in line]
    assert len(json_lines) >= 3, output[-2000:]
    assert any('"level":"DEBUG"' in line for line in json_lines), "POWERTOOLS_LOG_LEVEL=DEBUG had no effect"

    sensitive = set(SENSITIVE) | signatures
    sensitive |= {t.rsplit(".", 1)[1] for t in SENSITIVE if t.count(".") == 2 and t.rsplit(".", 1)[1]}
    sensitive = {s for s in sensitive if len(s) >= 8}
    lowered = output.lower()
    leaked = sorted(s for s in sensitive if s in output or s.lower() in lowered)
    assert not leaked, f"{len(leaked)} secret values in the stack output, e.g. {leaked[0][:12]}…"
