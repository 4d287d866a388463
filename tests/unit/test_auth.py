"""Token verification in the authorizer, and the verdict the management function reads."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from devicehooks.errors import Forbidden, Unauthorized
from devicehooks.security.auth import AuthConfig, TokenVerifier, authorize, bearer_token, load_public_keys
from devicehooks.security.identity import Identity, identity_from_request


def _pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture(scope="module")
def config(keys: dict[str, Any]) -> AuthConfig:
    return AuthConfig("".join(_pem(k) for k in keys.values()))


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = {
        "sub": "user-1",
        "exp": int(time.time()) + 600,
        "mender.user": True,
        "mender.tenant": "tenant-1",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _event(token: str | None, cookie: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"headers": {}}
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    if cookie is not None:
        event["cookies"] = [f"JWT={cookie}", "other=1"]
    return event


def _verdict(config: AuthConfig, token: str | None, cookie: str | None = None) -> dict[str, Any]:
    answer = authorize(_event(token, cookie), config)
    assert answer["isAuthorized"] is True  # the verdict travels in the context (see auth.py)
    return dict(answer["context"])


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_tokens_signed_by_a_configured_key_are_accepted(alg: str, keys: dict[str, Any], config: AuthConfig) -> None:
    token = jwt.encode(_claims(), keys[alg], algorithm=alg)
    assert _verdict(config, token) == {"verified": True, "tenant_id": "tenant-1", "subject": "user-1"}


def test_the_jwt_cookie_is_read_when_there_is_no_authorization_header(keys: dict[str, Any], config: AuthConfig) -> None:
    token = jwt.encode(_claims(), keys["EdDSA"], algorithm="EdDSA")
    assert _verdict(config, None, cookie=token)["verified"] is True


def test_open_source_tokens_without_tenant_map_to_the_empty_tenant(keys: dict[str, Any], config: AuthConfig) -> None:
    token = jwt.encode(_claims(**{"mender.tenant": None}), keys["RS256"], algorithm="RS256")
    assert _verdict(config, token)["tenant_id"] == ""


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


def test_alg_none_is_refused(config: AuthConfig) -> None:
    verdict = _verdict(config, _unsigned({"alg": "none", "typ": "JWT"}, _claims(), b"x"))
    assert verdict == {
        "verified": False,
        "status": 401,
        "error": "identity: token signature algorithm not accepted",
    }


def test_hs256_signed_with_the_public_key_is_refused(keys: dict[str, Any], config: AuthConfig) -> None:
    public_pem = _pem(keys["RS256"]).encode()
    import hashlib
    import hmac

    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(_claims()).encode()).rstrip(b"=")
    signature = hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()
    token = _unsigned({"alg": "HS256", "typ": "JWT"}, _claims(), signature)
    assert _verdict(config, token)["verified"] is False
    assert _verdict(config, token)["status"] == 401


def test_mender_acceptance_style_hs256_tokens_are_refused(config: AuthConfig) -> None:
    token = jwt.encode(_claims(), "secretJWTkey-used-by-menders-acceptance-tests", algorithm="HS256")
    assert _verdict(config, token)["status"] == 401


def test_a_token_signed_by_another_key_is_refused(config: AuthConfig) -> None:
    stranger = ed25519.Ed25519PrivateKey.generate()
    verdict = _verdict(config, jwt.encode(_claims(), stranger, algorithm="EdDSA"))
    assert verdict == {"verified": False, "status": 401, "error": "identity: invalid token signature"}


def test_expired_tokens_are_refused(keys: dict[str, Any], config: AuthConfig) -> None:
    token = jwt.encode(_claims(exp=int(time.time()) - 3600), keys["ES256"], algorithm="ES256")
    assert _verdict(config, token) == {
        "verified": False,
        "status": 401,
        "error": "identity: token has expired",
    }


def test_tokens_without_exp_are_refused(keys: dict[str, Any], config: AuthConfig) -> None:
    token = jwt.encode(_claims(exp=None), keys["ES256"], algorithm="ES256")
    assert _verdict(config, token)["error"] == 'identity: claim "exp" is required'


def test_tokens_without_sub_are_refused_with_menders_message(keys: dict[str, Any], config: AuthConfig) -> None:
    token = jwt.encode(_claims(sub=None), keys["ES256"], algorithm="ES256")
    assert _verdict(config, token) == {
        "verified": False,
        "status": 401,
        "error": 'identity: claim "sub" is required',
    }


@pytest.mark.parametrize("user", [None, False, "true", 1])
def test_tokens_that_are_not_user_tokens_get_403(user: Any, keys: dict[str, Any], config: AuthConfig) -> None:
    token = jwt.encode(_claims(**{"mender.user": user}), keys["EdDSA"], algorithm="EdDSA")
    assert _verdict(config, token) == {
        "verified": False,
        "status": 403,
        "error": "user identity missing from authorization token",
    }


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "Authorization not present in header"),
        ("Bearer", "malformed Authorization header"),
        ("Basic dXNlcjpwYXNz", "unknown Authorization method Basic"),
        ("Bearer not-a-jwt", "identity: incorrect token format"),
        ("Bearer a.b.c", "identity: incorrect token format"),
    ],
)
def test_malformed_authorization_gets_menders_messages(header: str | None, message: str, config: AuthConfig) -> None:
    event: dict[str, Any] = {"headers": {} if header is None else {"Authorization": header}}
    assert authorize(event, config)["context"] == {"verified": False, "status": 401, "error": message}


def test_bearer_token_is_taken_from_the_header_before_the_cookie() -> None:
    assert bearer_token({"Authorization": "Bearer abc"}, ["JWT=def"]) == "abc"
    assert bearer_token({}, ["JWT=def"]) == "def"


def test_issuer_and_audience_are_checked_when_configured(keys: dict[str, Any]) -> None:
    verifier = TokenVerifier(load_public_keys(_pem(keys["EdDSA"])), issuer="Mender Users", audience="mender")
    good = jwt.encode(_claims(iss="Mender Users", aud="mender"), keys["EdDSA"], algorithm="EdDSA")
    assert verifier.verify(good) == Identity("tenant-1", "user-1")
    with pytest.raises(Unauthorized):
        verifier.verify(jwt.encode(_claims(iss="someone else", aud="mender"), keys["EdDSA"], algorithm="EdDSA"))


def test_the_function_trusts_only_a_verified_verdict() -> None:
    assert identity_from_request(
        {"authorizer": {"lambda": {"verified": True, "tenant_id": "t", "subject": "u"}}}
    ) == Identity("t", "u")
    with pytest.raises(Unauthorized):
        identity_from_request({})
    with pytest.raises(Unauthorized):
        identity_from_request({"authorizer": {"lambda": {"tenant_id": "t", "subject": "u"}}})
    with pytest.raises(Forbidden):
        identity_from_request({"authorizer": {"lambda": {"verified": False, "status": 403, "error": "x"}}})


def test_public_key_configuration_accepts_escaped_newlines_and_rejects_garbage(keys: dict[str, Any]) -> None:
    escaped = _pem(keys["RS256"]).replace("\n", "\\n")
    assert len(load_public_keys(escaped)) == 1
    with pytest.raises(ValueError):
        load_public_keys("not a key")


# ------------------------------------------------------------------ tokens built to crash a JSON parser


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(claims: bytes, key: Any) -> str:
    """A correctly signed EdDSA token whose claims segment is exactly ``claims``."""
    return jwt.PyJWS().encode(claims, key, algorithm="EdDSA")


INCORRECT = {"verified": False, "status": 401, "error": "identity: incorrect token format"}
INVALID = {"verified": False, "status": 401, "error": "identity: invalid token"}
_HEADER = b'{"alg":"EdDSA","typ":"JWT"}'
_CLAIMS = b'{"sub":"user-1","exp":9999999999,"mender.user":true'


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"[" * 2900 + b"]" * 2900, id="nested-2900-deep"),
        pytest.param(b'{"alg":"EdDSA","x":' + b"[" * 2000 + b"]" * 2000 + b"}", id="object-with-deep-member"),
        pytest.param(b'{"alg":"EdDSA","x":' + b"9" * 5000 + b"}", id="5000-digit-integer"),
        pytest.param(b'{"alg":"EdDSA","x":NaN}', id="nan"),
        pytest.param(b'{"alg":"EdDSA","x":"\\ud800"}', id="lone-surrogate"),
        pytest.param(b'{"alg":"EdDSA"}\xff', id="not-utf8"),
    ],
)
def test_hostile_header_segments_get_the_malformed_token_verdict(
    header: bytes, keys: dict[str, Any], config: AuthConfig
) -> None:
    _, claims, signature = jwt.encode(_claims(), keys["EdDSA"], algorithm="EdDSA").split(".")
    token = ".".join([_b64(header), claims, signature])
    assert len(token) <= 8192  # reaches the parser: not refused for its length
    assert _verdict(config, token) == INCORRECT


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(_CLAIMS + b',"x":' + b"[" * 2000 + b"]" * 2000 + b"}", id="nested-2000-deep"),
        pytest.param(_CLAIMS + b',"x":' + b"1" * 5000 + b"}", id="5000-digit-integer"),
        pytest.param(b'{"sub":"user-1","exp":1e400,"mender.user":true}', id="exp-overflows"),
        pytest.param(b'{"sub":"user-1","exp":Infinity,"mender.user":true}', id="exp-infinity"),
        pytest.param(b'{"sub":"user-1","exp":NaN,"mender.user":true}', id="exp-nan"),
        pytest.param(b'{"sub":"\\udc00","exp":9999999999,"mender.user":true}', id="lone-surrogate"),
    ],
)
def test_hostile_claims_get_the_invalid_token_verdict_even_when_signed(
    claims: bytes, keys: dict[str, Any], config: AuthConfig
) -> None:
    assert _verdict(config, _signed(claims, keys["EdDSA"])) == INVALID
    forged = ".".join([_b64(_HEADER), _b64(claims), _b64(b"x" * 64)])  # the signature is checked first
    assert _verdict(config, forged) == {"verified": False, "status": 401, "error": "identity: invalid token signature"}


def test_the_strict_reader_still_accepts_ordinary_signed_claims(keys: dict[str, Any], config: AuthConfig) -> None:
    verdict = _verdict(config, _signed(_CLAIMS + b',"mender.tenant":"caf\\u00e9","n":1.5}', keys["EdDSA"]))
    assert verdict == {"verified": True, "tenant_id": "caf\u00e9", "subject": "user-1"}


@pytest.mark.parametrize(
    ("signature", "error"),
    [
        ("\ud800abc", "identity: invalid token"),  # cannot even be encoded (it crashed PyJWT)
        ("\u00e9t\u00e9", "identity: invalid token"),  # PyJWT's own refusal: not base64url
    ],
    ids=["lone-surrogate", "not-ascii"],
)
def test_a_signature_segment_that_is_not_ascii_is_refused(
    signature: str, error: str, keys: dict[str, Any], config: AuthConfig
) -> None:
    header, claims, _ = jwt.encode(_claims(), keys["EdDSA"], algorithm="EdDSA").split(".")
    assert _verdict(config, f"{header}.{claims}.{signature}") == {"verified": False, "status": 401, "error": error}


def test_a_tenant_no_device_event_could_carry_is_refused(keys: dict[str, Any], config: AuthConfig) -> None:
    assert _verdict(config, jwt.encode(_claims(**{"mender.tenant": "t" * 256}), keys["EdDSA"], algorithm="EdDSA"))[
        "verified"
    ]
    token = jwt.encode(_claims(**{"mender.tenant": "t" * 257}), keys["EdDSA"], algorithm="EdDSA")
    assert _verdict(config, token) == {
        "verified": False,
        "status": 401,
        "error": 'identity: claim "mender.tenant" must be at most 256 characters',
    }
