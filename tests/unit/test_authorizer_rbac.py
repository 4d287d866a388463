"""Who may change integrations: the authorizer alongside Mender (useradm decides) and standalone (a claim)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from pytest_httpserver import HTTPServer

from devicehooks.errors import ConfigError, ServiceUnavailable
from devicehooks.handlers import authorizer as authorizer_handler
from devicehooks.security.auth import AuthConfig, authorize
from devicehooks.security.identity import identity_from_request
from devicehooks.security.useradm import UNAVAILABLE, UseradmVerifier
from tests.useradm import VERIFY_PATH, FakeUseradm

BASE = "/api/management/v1/iot-manager"
WRITES = ["POST", "PUT", "PATCH", "DELETE"]
READS = ["GET", "HEAD", "OPTIONS"]
ALLOWED = {"verified": True, "tenant_id": "tenant-1", "subject": "user-1"}
NOT_ADMIN = {"verified": False, "status": 403, "error": "unauthorized"}
DOWN = {"verified": False, "status": 503, "error": UNAVAILABLE}


@pytest.fixture(scope="module")
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def public_pem(key: ed25519.Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _token(key: ed25519.Ed25519PrivateKey, **claims: Any) -> str:
    base = {
        "jti": str(uuid.uuid4()),
        "sub": "user-1",
        "exp": int(time.time()) + 600,
        "mender.user": True,
        "mender.tenant": "tenant-1",
    }
    return jwt.encode({**base, **claims}, key, algorithm="EdDSA")


def _event(token: str, method: str, path: str = f"{BASE}/integrations", query: str = "") -> dict[str, Any]:
    return {
        "type": "REQUEST",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"authorization": f"Bearer {token}", "host": "hooks.example.com", "x-men-requestid": "req-1"},
        "requestContext": {"http": {"method": method, "path": path}},
    }


def _context(answer: dict[str, Any]) -> dict[str, Any]:
    assert answer["isAuthorized"] is True  # the verdict travels in the context (see auth.py)
    return dict(answer["context"])


# ------------------------------------------------------------------ standalone: a claim decides


@pytest.mark.parametrize("method", WRITES + READS)
def test_without_an_admin_claim_every_user_may_write_as_in_mender_open_source(
    method: str, key: ed25519.Ed25519PrivateKey, public_pem: str
) -> None:
    config = AuthConfig(public_pem)
    assert _context(authorize(_event(_token(key), method), config)) == ALLOWED


@pytest.mark.parametrize("method", WRITES)
@pytest.mark.parametrize("roles", [None, ["user"], "user", [], ["Admin"], [1, {"admin": True}], 1])
def test_standalone_non_admins_are_refused_every_write_with_menders_403(
    method: str, roles: Any, key: ed25519.Ed25519PrivateKey, public_pem: str
) -> None:
    config = AuthConfig(public_pem, admin_claim="roles", admin_claim_values=("admin", "owner"))
    token = _token(key) if roles is None else _token(key, roles=roles)
    assert _context(authorize(_event(token, method), config)) == NOT_ADMIN


@pytest.mark.parametrize("method", READS)
def test_standalone_non_admins_may_read(method: str, key: ed25519.Ed25519PrivateKey, public_pem: str) -> None:
    config = AuthConfig(public_pem, admin_claim="roles")
    assert _context(authorize(_event(_token(key, roles=["user"]), method), config)) == ALLOWED


@pytest.mark.parametrize("roles", [["user", "owner"], "admin", ["admin"]])
@pytest.mark.parametrize("method", WRITES)
def test_standalone_admins_may_write_whether_the_claim_is_a_string_or_a_list(
    method: str, roles: Any, key: ed25519.Ed25519PrivateKey, public_pem: str
) -> None:
    config = AuthConfig(public_pem, admin_claim="roles", admin_claim_values=("admin", "owner"))
    assert _context(authorize(_event(_token(key, roles=roles), method), config)) == ALLOWED


def test_an_unknown_method_counts_as_a_write(key: ed25519.Ed25519PrivateKey, public_pem: str) -> None:
    config = AuthConfig(public_pem, admin_claim="roles")
    event = _event(_token(key, roles=["user"]), "PROPFIND")
    assert _context(authorize(event, config)) == NOT_ADMIN
    event["requestContext"] = {}
    assert _context(authorize(event, config)) == NOT_ADMIN


def test_a_bad_token_is_still_a_401_before_any_role_is_read(public_pem: str) -> None:
    config = AuthConfig(public_pem, admin_claim="roles")
    verdict = _context(authorize(_event("a.b.c", "POST"), config))
    assert (verdict["status"], verdict["error"]) == (401, "identity: incorrect token format")


# ------------------------------------------------------------------ settings


def _env(monkeypatch: pytest.MonkeyPatch, public_pem: str, **values: str) -> None:
    monkeypatch.setenv("DEVICEHOOKS_JWT_PUBLIC_KEYS", public_pem)
    for name in ("USERADM_VERIFY_URL", "ADMIN_CLAIM", "ADMIN_CLAIM_VALUES"):
        monkeypatch.delenv(f"DEVICEHOOKS_{name}", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(f"DEVICEHOOKS_{name.upper()}", value)


def test_settings_default_to_every_user_an_admin(monkeypatch: pytest.MonkeyPatch, public_pem: str) -> None:
    _env(monkeypatch, public_pem)
    config = AuthConfig.from_env()
    assert (config.useradm_verify_url, config.admin_claim, config.admin_claim_values) == ("", "", ("admin",))


def test_settings_read_the_claim_and_its_values(monkeypatch: pytest.MonkeyPatch, public_pem: str) -> None:
    _env(monkeypatch, public_pem, admin_claim="roles", admin_claim_values=" admin, owner ,")
    config = AuthConfig.from_env()
    assert (config.admin_claim, config.admin_claim_values) == ("roles", ("admin", "owner"))


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"useradm_verify_url": "useradm:8080/verify"}, r"must be an http\(s\) URL"),
        ({"useradm_verify_url": "http://useradm:8080" + VERIFY_PATH, "admin_claim": "roles"}, "set one"),
        ({"admin_claim": "roles", "admin_claim_values": " , "}, "ADMIN_CLAIM_VALUES is empty"),
    ],
)
def test_contradictory_or_broken_admin_settings_fail_the_cold_start(
    values: dict[str, str], problem: str, monkeypatch: pytest.MonkeyPatch, public_pem: str
) -> None:
    _env(monkeypatch, public_pem, **values)
    authorizer_handler.config.cache_clear()
    try:
        with pytest.raises(ConfigError, match=problem):
            authorizer_handler.config()
    finally:
        authorizer_handler.config.cache_clear()


# ------------------------------------------------------------------ alongside Mender: useradm decides


@pytest.fixture
def useradm(httpserver: HTTPServer, public_pem: str) -> FakeUseradm:
    fake = FakeUseradm(public_pem)
    httpserver.expect_request(VERIFY_PATH).respond_with_handler(fake)
    return fake


@pytest.fixture
def mender(httpserver: HTTPServer, public_pem: str) -> AuthConfig:
    return AuthConfig(public_pem, useradm_verify_url=httpserver.url_for(VERIFY_PATH))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_useradm_is_asked_as_menders_gateway_asks_it(
    httpserver: HTTPServer, useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    token = _token(key, roles=["admin"])
    event = _event(token, "PUT", f"{BASE}/integrations/abc/credentials", query="x=1&y=2")
    assert _context(authorize(event, mender, UseradmVerifier(mender.useradm_verify_url))) == ALLOWED
    (asked,) = useradm.calls
    assert asked["authorization"] == f"Bearer {token}"
    assert asked["x-forwarded-method"] == "PUT"
    assert asked["x-forwarded-uri"] == f"{BASE}/integrations/abc/credentials?x=1&y=2"
    assert asked["x-forwarded-host"] == "hooks.example.com"
    assert asked["x-forwarded-proto"] == "https"
    assert asked["x-men-requestid"] == "req-1"
    assert httpserver.log[0][0].method == "GET"  # as Traefik's forwardAuth; useradm routes GET and POST


def test_a_uri_that_is_not_plain_ascii_is_forwarded_percent_encoded(
    useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    event = _event(_token(key, roles=["admin"]), "DELETE", f"{BASE}/integrations/é x", query="a=%20b")
    event["headers"]["host"] = "bad\nhost"
    assert _context(authorize(event, mender, UseradmVerifier(mender.useradm_verify_url))) == ALLOWED
    assert useradm.forwarded() == [("DELETE", f"{BASE}/integrations/%C3%A9%20x?a=%20b")]
    assert "x-forwarded-host" not in useradm.calls[0]


def test_a_cookie_token_is_forwarded_as_a_bearer_token(
    useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    token = _token(key, roles=["admin"])
    event = _event(token, "POST")
    event["headers"].pop("authorization")
    event["cookies"] = [f"JWT={token}"]
    assert _context(authorize(event, mender, UseradmVerifier(mender.useradm_verify_url))) == ALLOWED
    assert useradm.calls[0]["authorization"] == f"Bearer {token}"


@pytest.mark.parametrize("method", WRITES)
def test_useradm_refusing_a_write_is_menders_403(
    method: str, useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    event = _event(_token(key, roles=["readonly"]), method)
    assert _context(authorize(event, mender, UseradmVerifier(mender.useradm_verify_url))) == NOT_ADMIN
    assert useradm.forwarded() == [(method, f"{BASE}/integrations")]


def test_useradm_allowing_a_read_lets_a_read_only_user_list(
    useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    event = _event(_token(key, roles=["readonly"]), "GET", f"{BASE}/events", query="page=2")
    assert _context(authorize(event, mender, UseradmVerifier(mender.useradm_verify_url))) == ALLOWED
    assert useradm.forwarded() == [("GET", f"{BASE}/events?page=2")]


def test_a_token_useradm_revoked_is_a_401_even_for_reads(
    useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    jti = str(uuid.uuid4())
    useradm.revoked.add(jti)
    event = _event(_token(key, jti=jti, roles=["admin"]), "GET")
    verdict = _context(authorize(event, mender, UseradmVerifier(mender.useradm_verify_url)))
    assert verdict == {"verified": False, "status": 401, "error": "unauthorized"}


def test_a_token_the_authorizer_refuses_never_reaches_useradm(
    useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    expired = _token(key, exp=int(time.time()) - 3600, roles=["admin"])
    verdict = _context(authorize(_event(expired, "POST"), mender, UseradmVerifier(mender.useradm_verify_url)))
    assert (verdict["status"], verdict["error"]) == (401, "identity: token has expired")
    assert useradm.calls == []


@pytest.mark.parametrize("status", [500, 502, 429, 400, 404])
def test_useradm_failing_means_503_for_writes_and_reads_on_the_token_alone(
    status: int, useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    useradm.failing = status
    judge = UseradmVerifier(mender.useradm_verify_url)
    token = _token(key, roles=["admin"])
    for method in WRITES:
        assert _context(authorize(_event(token, method), mender, judge)) == DOWN
    for method in READS:
        assert _context(authorize(_event(token, method), mender, judge)) == ALLOWED


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_useradm_unreachable_means_503_for_writes_and_is_never_an_open_door(
    public_pem: str, key: ed25519.Ed25519PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}{VERIFY_PATH}"
    config = AuthConfig(public_pem, useradm_verify_url=url)
    judge = UseradmVerifier(url)
    token = _token(key, roles=["admin"])
    assert _context(authorize(_event(token, "POST"), config, judge)) == DOWN
    assert _context(authorize(_event(token, "GET"), config, judge)) == ALLOWED
    logged = [(r.getMessage(), str(r.__dict__)) for r in caplog.records]
    assert logged and all(message == "useradm could not be asked" for message, _ in logged)
    assert not any(token in fields for _, fields in logged)  # the warnings name no token


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}{VERIFY_PATH}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_useradm_that_hangs_is_given_up_on_at_the_timeout(
    hanging_server: str, public_pem: str, key: ed25519.Ed25519PrivateKey
) -> None:
    config = AuthConfig(public_pem, useradm_verify_url=hanging_server)
    started = time.monotonic()
    answer = authorize(_event(_token(key), "DELETE"), config, UseradmVerifier(hanging_server, timeout=0.3))
    assert _context(answer) == DOWN
    assert time.monotonic() - started < 2


def test_verdicts_are_kept_per_token_method_and_uri_for_a_short_while(
    useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    clock = Clock()
    judge = UseradmVerifier(mender.useradm_verify_url, cache_seconds=30, clock=clock)
    reader = _token(key, roles=["readonly"])
    for _ in range(3):
        assert _context(authorize(_event(reader, "POST"), mender, judge)) == NOT_ADMIN
        assert _context(authorize(_event(reader, "GET"), mender, judge)) == ALLOWED
    assert len(useradm.calls) == 2  # one question per (token, method, URI)
    authorize(_event(reader, "GET", f"{BASE}/events"), mender, judge)
    authorize(_event(_token(key, roles=["readonly"]), "GET"), mender, judge)
    assert len(useradm.calls) == 4
    clock.now += 31
    assert _context(authorize(_event(reader, "POST"), mender, judge)) == NOT_ADMIN
    assert len(useradm.calls) == 5  # expired: asked again


def test_an_outage_is_not_remembered(useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey) -> None:
    judge = UseradmVerifier(mender.useradm_verify_url, clock=Clock())
    token = _token(key, roles=["admin"])
    useradm.failing = 500
    assert _context(authorize(_event(token, "POST"), mender, judge)) == DOWN
    useradm.failing = None
    assert _context(authorize(_event(token, "POST"), mender, judge)) == ALLOWED


def test_the_cache_is_bounded_and_holds_no_token(
    useradm: FakeUseradm, mender: AuthConfig, key: ed25519.Ed25519PrivateKey
) -> None:
    judge = UseradmVerifier(mender.useradm_verify_url, clock=Clock(), max_entries=3)
    tokens = [_token(key, roles=["admin"]) for _ in range(5)]
    for token in tokens:
        authorize(_event(token, "GET"), mender, judge)
    kept = judge._cache  # noqa: SLF001 - what the memory of a warm authorizer holds
    assert len(kept) == 3
    assert not any(token in str(kept) for token in tokens)


# ------------------------------------------------------------------ the management function's answer


def test_the_function_answers_503_when_the_authorizer_could_not_ask_useradm() -> None:
    with pytest.raises(ServiceUnavailable) as raised:
        identity_from_request({"authorizer": {"lambda": {"verified": False, "status": 503, "error": UNAVAILABLE}}})
    assert raised.value.message == UNAVAILABLE
