"""Management API authentication: verify the JWT (the authorizer) and read its verdict (the API).

The authorizer verifies the signature with the configured public keys (RS256/PS256 for RSA,
ES256/384/512 for EC, EdDSA for Ed25519/Ed448), never ``none`` and never an HMAC algorithm.
It answers API Gateway with ``isAuthorized: true`` and its verdict in the context, so that the
management function can answer exactly as Mender does (401 with ``WWW-Authenticate``, 403,
Mender's error body), which an HTTP API cannot do for a refused authorizer. The function trusts
only that context; the tenant comes from the verified token and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from devicehooks.errors import ConfigError, Forbidden, Unauthorized
from devicehooks.jsonenc import JSONInputError, check, loads
from devicehooks.security.identity import Identity

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 8192
_MALFORMED = "identity: incorrect token format"
_INVALID = "identity: invalid token"
MAX_TENANT_LENGTH = 256  # what device events can carry (services/ingest.py): a longer tenant could get none


def algorithms_for(key: PublicKey) -> tuple[str, ...]:
    """The JWS algorithms a public key may verify (an allow-list per key type)."""
    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        return (alg,) if alg else ()
    return ("EdDSA",)


def load_public_keys(pem_text: str) -> list[PublicKey]:
    """Every PEM public key in ``pem_text`` (several may be concatenated, for key rotation)."""
    keys: list[PublicKey] = []
    marker = "-----END PUBLIC KEY-----"
    for block in pem_text.replace("\\n", "\n").split(marker):
        if "-----BEGIN PUBLIC KEY-----" not in block:
            continue
        pem = block[block.index("-----BEGIN PUBLIC KEY-----") :] + marker + "\n"
        key = load_pem_public_key(pem.encode())
        if not isinstance(
            key,
            rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey,
        ):
            raise ValueError(f"unsupported public key type {type(key).__name__}")
        keys.append(key)
    if not keys:
        raise ValueError("no PEM public key found")
    return keys


def _segment(data: str) -> dict[str, Any]:
    """A token's header, read strictly (jsonenc.loads): deep nesting, huge numbers, NaN and lone
    surrogates are a malformed token, never an exception out of the authorizer."""
    try:
        decoded = loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text, and every JSON refusal
        raise Unauthorized(_MALFORMED) from None
    if not isinstance(decoded, dict):
        raise Unauthorized(_MALFORMED)
    return decoded


class TokenVerifier:
    """Verifies management JWTs against a set of public keys."""

    def __init__(self, keys: list[PublicKey], issuer: str = "", audience: str = "") -> None:
        self._keys = keys
        self._issuer = issuer or None
        self._audience = audience or None

    def verify(self, token: str) -> Identity:
        """Return the caller's identity, or raise :class:`Unauthorized` / :class:`Forbidden`."""
        parts = token.split(".")
        if len(token) > MAX_TOKEN_LENGTH or len(parts) != 3 or not all(parts):
            raise Unauthorized(_MALFORMED)
        header = _segment(parts[0])
        alg = header.get("alg")
        candidates = [k for k in self._keys if isinstance(alg, str) and alg in algorithms_for(k)]
        if not candidates:
            raise Unauthorized("identity: token signature algorithm not accepted")
        claims: dict[str, Any] | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=[str(alg)],
                    issuer=self._issuer,
                    audience=self._audience,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp"], "verify_aud": self._audience is not None},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise Unauthorized("identity: token has expired") from None
            except jwt.MissingRequiredClaimError as exc:
                raise Unauthorized(f'identity: claim "{exc.claim}" is required') from None
            except jwt.InvalidIssuerError:
                raise Unauthorized("identity: token issuer not accepted") from None
            except jwt.InvalidAudienceError:
                raise Unauthorized("identity: token audience not accepted") from None
            except jwt.InvalidTokenError:
                raise Unauthorized(_INVALID) from None
            except (ValueError, TypeError, OverflowError, RecursionError):
                # What PyJWT lets through from its own reading, as the same verdict as its refusals:
                # signed claims nested too deep for json.loads (RecursionError), an infinite "exp"
                # (OverflowError from int()), a token that cannot be encoded (UnicodeEncodeError)
                raise Unauthorized(_INVALID) from None
        if claims is None:
            raise Unauthorized("identity: invalid token signature")
        try:
            check(claims)  # signed, yet NaN, a lone surrogate, too deep: nothing downstream could keep it
        except JSONInputError:
            raise Unauthorized(_INVALID) from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized('identity: claim "sub" is required')
        if claims.get("mender.user") is not True:
            raise Forbidden("user identity missing from authorization token")
        tenant = claims.get("mender.tenant", "")
        if tenant is None:
            tenant = ""
        if not isinstance(tenant, str):
            raise Unauthorized('identity: claim "mender.tenant" must be a string')
        if len(tenant) > MAX_TENANT_LENGTH:
            raise Unauthorized(f'identity: claim "mender.tenant" must be at most {MAX_TENANT_LENGTH} characters')
        return Identity(tenant_id=tenant, subject=subject)


def bearer_token(headers: Mapping[str, str], cookies: list[str] | None) -> str:
    """The token from ``Authorization: Bearer`` or, as Mender, from the ``JWT`` cookie."""
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if authorization is None:
        for cookie in cookies or []:
            name, _, val = cookie.strip().partition("=")
            if name == "JWT" and val:
                return val
        raise Unauthorized("Authorization not present in header")
    method, _, token = authorization.strip().partition(" ")
    if not token.strip():
        raise Unauthorized("malformed Authorization header")
    if method.lower() != "bearer":
        raise Unauthorized(f"unknown Authorization method {method[:32]}")
    return token.strip()


@dataclass(frozen=True)
class AuthConfig:
    """The authorizer's settings. Plain environment reads: the authorizer imports no pydantic."""

    public_keys: str
    issuer: str = ""
    audience: str = ""

    @classmethod
    def from_env(cls) -> AuthConfig:
        keys = os.environ.get("DEVICEHOOKS_JWT_PUBLIC_KEYS", "")
        if not keys.strip():
            raise ConfigError("invalid configuration: DEVICEHOOKS_JWT_PUBLIC_KEYS is not set")
        return cls(keys, os.environ.get("DEVICEHOOKS_JWT_ISSUER", ""), os.environ.get("DEVICEHOOKS_JWT_AUDIENCE", ""))


@lru_cache(maxsize=4)
def _verifier(pem_text: str, issuer: str, audience: str) -> TokenVerifier:
    return TokenVerifier(load_public_keys(pem_text), issuer, audience)


def authorize(event: Mapping[str, Any], config: AuthConfig) -> dict[str, Any]:
    """The authorizer's answer (simple response) for an HTTP API REQUEST event."""
    try:
        token = bearer_token(event.get("headers") or {}, event.get("cookies"))
        identity = _verifier(config.public_keys, config.issuer, config.audience).verify(token)
    except (Unauthorized, Forbidden) as exc:
        return {
            "isAuthorized": True,
            "context": {"verified": False, "status": exc.status_code, "error": exc.message},
        }
    return {
        "isAuthorized": True,
        "context": {"verified": True, "tenant_id": identity.tenant_id, "subject": identity.subject},
    }
