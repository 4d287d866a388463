"""Management API authentication: verify the JWT (the authorizer) and read its verdict (the API).

The authorizer verifies the signature with the configured public keys (RS256/PS256 for RSA,
ES256/384/512 for EC, EdDSA for Ed25519/Ed448), never ``none`` and never an HMAC algorithm.
It answers API Gateway with ``isAuthorized: true`` and its verdict in the context, so that the
management function can answer exactly as Mender does (401 with ``WWW-Authenticate``, 403,
Mender's error body), which an HTTP API cannot do for a refused authorizer. The function trusts
only that context; the tenant comes from the verified token and nowhere else.

Who may change integrations (every method but GET, HEAD and OPTIONS) is decided in one of two ways:

* alongside Mender (``DEVICEHOOKS_USERADM_VERIFY_URL``): useradm decides, as for Mender's own
  services (Enterprise RBAC), for reads and writes; when useradm cannot answer, writes get 503
  and reads go on with the verified token alone;
* standalone: a claim (``DEVICEHOOKS_ADMIN_CLAIM``) holding one of ``DEVICEHOOKS_ADMIN_CLAIM_VALUES``
  makes a user an admin; without a claim configured, every user of a tenant is one (Mender open
  source). A refused write is Mender's ``403 {"error": "unauthorized"}``.
"""

from __future__ import annotations

import base64
import binascii
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from devicehooks.errors import ConfigError, DevicehooksError, Forbidden, ServiceUnavailable, Unauthorized
from devicehooks.jsonenc import JSONInputError, check, loads
from devicehooks.security.identity import Identity

if TYPE_CHECKING:
    from devicehooks.security.useradm import UseradmVerifier

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey

_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
LEEWAY_SECONDS = 30
MAX_TOKEN_LENGTH = 8192
_MALFORMED = "identity: incorrect token format"
_INVALID = "identity: invalid token"
MAX_TENANT_LENGTH = 256  # what device events can carry (services/ingest.py): a longer tenant could get none
_ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # any other method changes something: admins only
NOT_ADMIN = "unauthorized"  # what Mender answers (403) when RBAC refuses an action (useradm authz)


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
        return self.verify_claims(token)[0]

    def verify_claims(self, token: str) -> tuple[Identity, dict[str, Any]]:
        """The caller's identity and the token's verified claims (or :class:`Unauthorized` /
        :class:`Forbidden`)."""
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
        return Identity(tenant_id=tenant, subject=subject), claims


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
    """The authorizer's settings. Plain environment reads: the authorizer imports no pydantic.

    ``useradm_verify_url`` set: useradm decides who is an admin (Mender Enterprise RBAC).
    Otherwise ``admin_claim`` set: a token whose claim holds one of ``admin_claim_values`` (a
    string, or a list holding one) is an admin's. Neither: every user is an admin.
    """

    public_keys: str
    issuer: str = ""
    audience: str = ""
    useradm_verify_url: str = ""
    admin_claim: str = ""
    admin_claim_values: tuple[str, ...] = ("admin",)

    @classmethod
    def from_env(cls) -> AuthConfig:
        keys = os.environ.get("DEVICEHOOKS_JWT_PUBLIC_KEYS", "")
        if not keys.strip():
            raise ConfigError("invalid configuration: DEVICEHOOKS_JWT_PUBLIC_KEYS is not set")
        url = os.environ.get("DEVICEHOOKS_USERADM_VERIFY_URL", "").strip()
        claim = os.environ.get("DEVICEHOOKS_ADMIN_CLAIM", "").strip()
        raw_values = os.environ.get("DEVICEHOOKS_ADMIN_CLAIM_VALUES", "admin")
        values = tuple(v.strip() for v in raw_values.split(",") if v.strip())
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError("invalid configuration: DEVICEHOOKS_USERADM_VERIFY_URL must be an http(s) URL")
        if url and claim:
            raise ConfigError(
                "invalid configuration: DEVICEHOOKS_USERADM_VERIFY_URL and DEVICEHOOKS_ADMIN_CLAIM "
                "are two ways to decide who is an admin: set one"
            )
        if claim and not values:
            raise ConfigError("invalid configuration: DEVICEHOOKS_ADMIN_CLAIM_VALUES is empty")
        return cls(
            keys,
            os.environ.get("DEVICEHOOKS_JWT_ISSUER", ""),
            os.environ.get("DEVICEHOOKS_JWT_AUDIENCE", ""),
            useradm_verify_url=url,
            admin_claim=claim,
            admin_claim_values=values,
        )

    def is_admin(self, claims: Mapping[str, Any]) -> bool:
        """Standalone mode: whether verified ``claims`` make their user an admin."""
        if not self.admin_claim:
            return True  # Mender open source: every user of a tenant manages its integrations
        value = claims.get(self.admin_claim)
        if isinstance(value, str):
            return value in self.admin_claim_values
        if isinstance(value, list):
            return any(isinstance(v, str) and v in self.admin_claim_values for v in value)
        return False


@lru_cache(maxsize=4)
def _verifier(pem_text: str, issuer: str, audience: str) -> TokenVerifier:
    return TokenVerifier(load_public_keys(pem_text), issuer, audience)


@lru_cache(maxsize=4)
def useradm_verifier(url: str) -> UseradmVerifier:
    """One client (connection pool and verdict cache) per useradm URL, kept across invocations."""
    from devicehooks.security.useradm import UseradmVerifier  # urllib3 only in this mode

    return UseradmVerifier(url)


def _refused(exc: DevicehooksError) -> dict[str, Any]:
    return {"isAuthorized": True, "context": {"verified": False, "status": exc.status_code, "error": exc.message}}


def _request_uri(event: Mapping[str, Any]) -> str:
    """The URI as the client sent it (what Mender's gateway forwards as ``X-Forwarded-Uri``)."""
    path = str(event.get("rawPath") or "/")
    query = str(event.get("rawQueryString") or "")
    return f"{path}?{query}" if query else path


def _header(headers: Mapping[str, str], name: str) -> str:
    return next((str(v) for k, v in headers.items() if k.lower() == name), "")


def authorize(event: Mapping[str, Any], config: AuthConfig, useradm: UseradmVerifier | None = None) -> dict[str, Any]:
    """The authorizer's answer (simple response) for an HTTP API REQUEST event.

    ``useradm`` replaces the client made from ``config.useradm_verify_url`` (tests)."""
    headers: Mapping[str, str] = event.get("headers") or {}
    try:
        token = bearer_token(headers, event.get("cookies"))
        identity, claims = _verifier(config.public_keys, config.issuer, config.audience).verify_claims(token)
    except (Unauthorized, Forbidden) as exc:
        return _refused(exc)
    method = str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "").upper()
    write = method not in READ_METHODS
    if config.useradm_verify_url or useradm is not None:
        judge = useradm or useradm_verifier(config.useradm_verify_url)
        verdict = judge.verdict(
            token,
            method,
            _request_uri(event),
            host=_header(headers, "host"),
            request_id=_request_id(headers),
        )
        # useradm down: no write without its yes; a read needs only the verified token
        if verdict is not None and (write or not isinstance(verdict, ServiceUnavailable)):
            return _refused(verdict)
    elif write and not config.is_admin(claims):
        return _refused(Forbidden(NOT_ADMIN))
    return {
        "isAuthorized": True,
        "context": {"verified": True, "tenant_id": identity.tenant_id, "subject": identity.subject},
    }


def _request_id(headers: Mapping[str, str]) -> str:
    """The client's ``X-MEN-RequestID``, passed on to useradm when it is a plain id."""
    value = _header(headers, "x-men-requestid")
    return value if 0 < len(value) <= 64 and all(c in _ID_CHARACTERS for c in value) else ""
