"""A local stand-in for API Gateway's IAM authorization (``AWS_IAM`` on the internal routes).

It checks each request's SigV4 signature as API Gateway does: the ``Authorization`` header names
the key, the scope (date, region, ``execute-api``) and the signed headers; the signature is
computed again with botocore from the request *as received* (method, raw path, query, the signed
headers' values, the body's SHA-256) and the key's secret, and compared in constant time. A request
without a signature, with an unknown key, a stale date, another scope or a different signature is
answered ``403 {"message": "Forbidden"}`` (API Gateway's words). A verified request is forwarded
byte for byte (its raw request-target, body, ``Content-Type`` and ``X-MEN-RequestID``) to the
upstream (the local stack), whose answer is passed back.
"""

from __future__ import annotations

import datetime as dt
import hmac
import http.client
import http.server
import re
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FORBIDDEN = b'{"message":"Forbidden"}'
MISMATCH = (
    b'{"message":"The request signature we calculated does not match the signature you provided. '
    b'Check your AWS Secret Access Key and signing method."}'
)
SKEW = dt.timedelta(minutes=5)
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9\-;]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
FORWARDED = ("content-type", "x-men-requestid")


@dataclass(frozen=True)
class Seen:
    """A request the stand-in received, and whether its signature held."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    verified: bool


class SigV4Gateway:
    """``SigV4Gateway(credentials, region, upstream_url)``; ``url``; ``seen``; ``close()``."""

    def __init__(self, credentials: Credentials, region: str, upstream: str) -> None:
        self.credentials = credentials
        self.region = region
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.seen: list[Seen] = []
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                refusal = gateway.refusal(self.command, self.path, headers, body)
                gateway.seen.append(Seen(self.command, self.path, headers, body, refusal is None))
                if refusal is not None:
                    self._answer(403, {"Content-Type": "application/json"}, refusal)
                    return
                self._answer(*gateway.forward(self.command, self.path, headers, body))

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, val in headers.items():
                    self.send_header(key, val)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def refusal(self, method: str, target: str, headers: dict[str, str], body: bytes) -> bytes | None:
        """None when the signature holds, else the 403's body."""
        found = _AUTHORIZATION.match(headers.get("authorization", ""))
        amz_date = headers.get("x-amz-date", "")
        if found is None or not amz_date:
            return FORBIDDEN
        try:
            when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return FORBIDDEN
        signed = found["signed"].split(";")
        if (
            found["key"] != self.credentials.access_key
            or found["region"] != self.region
            or found["service"] != "execute-api"
            or found["date"] != amz_date[:8]
            or abs(dt.datetime.now(dt.UTC) - when) > SKEW
            or "host" not in signed
            or any(name not in headers for name in signed)
        ):
            return FORBIDDEN
        # the request as received, with exactly the headers it says it signed
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{target}",
            data=body,
            headers={name: headers[name] for name in signed},
        )
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(self.credentials, "execute-api", self.region)
        if signer.signed_headers(signer.headers_to_sign(request)) != found["signed"]:
            return FORBIDDEN
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return None if hmac.compare_digest(expected, found["signature"]) else MISMATCH

    def forward(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """The verified request to the upstream, its raw target untouched."""
        connection = http.client.HTTPConnection(*self._upstream, timeout=90)
        try:
            sent = {name: headers[name] for name in FORWARDED if name in headers}
            connection.request(method, target, body=body or None, headers=sent)
            response = connection.getresponse()
            kept = {k: v for k, v in response.getheaders() if k.lower() in FORWARDED}
            return response.status, kept, response.read()
        except OSError:
            return 503, {"Content-Type": "application/json"}, b'{"message":"Service Unavailable"}'
        finally:
            connection.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
