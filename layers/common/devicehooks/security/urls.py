"""A webhook URL as the sender dials it: one parse, shared by the sender, the SSRF guard and validation.

Two URL parsers disagree on hostile URLs: ``urllib.parse.urlsplit`` reads
``http://10.0.0.1\\@93.184.216.34/`` as host 93.184.216.34, urllib3's ``parse_url`` (which the
sender uses) as host 10.0.0.1 with a path of ``/%5C@93.184.216.34/``. A guard that checks what one
parser sees while the sender dials what the other sees checks nothing. So every component that
needs a URL's destination reads it here, with urllib3's parser, the way urllib3 then dials it.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from urllib3.util import parse_url

# Reasons, as the sender reports them ("invalid url: <reason>"); they never quote the URL,
# whose user info may hold a password.
CANNOT_BE_PARSED = "cannot be parsed"
BAD_SCHEME = "the scheme must be http or https"
NO_HOST = "no host"
BAD_PORT = "the port must be between 1 and 65535"


class InvalidURL(ValueError):
    """A URL the sender cannot send to; ``reason`` is one of this module's reasons."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """What a URL means for the wire, worked out once per URL."""

    scheme: str
    host: str  # as parse_url normalised it (IDNA, lower case, a trailing dot kept): the pool's key
    port: int
    request_uri: str  # path and query, percent-encoded by parse_url
    authorization: str | None  # Basic credentials from the user info

    @property
    def dial_host(self) -> str:
        """The name or address the sender's connection to this URL resolves and dials: the host
        its urllib3 pool makes connections for (``host`` without IPv6 brackets, which the pool strips)."""
        if self.host.startswith("[") and self.host.endswith("]"):
            return self.host[1:-1]
        return self.host


@functools.lru_cache(maxsize=4096)
def parse_target(url: str) -> Target:
    """Parse ``url`` with urllib3's parser; :class:`InvalidURL` if the sender cannot send to it.

    Refused: what ``parse_url`` refuses (a host IDNA refuses, a bad port, a character urllib3
    rejects in the authority), a scheme other than http and https, no host, and port 0 (urllib3
    would dial the scheme's default port instead).
    """
    try:
        parsed = parse_url(url)
    except ValueError:  # LocationParseError: a bad host (IDNA refused it), port or character
        raise InvalidURL(CANNOT_BE_PARSED) from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidURL(BAD_SCHEME)
    if not parsed.host:
        raise InvalidURL(NO_HOST)
    if parsed.port == 0:
        raise InvalidURL(BAD_PORT)
    authorization = None
    if parsed.auth:  # user info: Basic credentials of its decoded bytes, as Go's net/http sends them
        user, _, password = parsed.auth.partition(":")
        credentials = unquote_to_bytes(user) + b":" + unquote_to_bytes(password)
        authorization = "Basic " + base64.b64encode(credentials).decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return Target(parsed.scheme, parsed.host, port, parsed.request_uri, authorization)
