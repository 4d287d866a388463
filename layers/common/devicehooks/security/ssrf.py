"""Server-side request forgery guard: which addresses a webhook may reach.

The rule is Mender's "global unicast" predicate, made stricter: loopback, private, link-local
(the instance metadata service included), CGNAT, multicast, broadcast, unspecified, reserved,
documentation and benchmarking ranges are refused, as is every other block that IANA's
special-purpose registries mark not globally reachable, and IPv6 outside 2000::/3 (the only
global unicast space: it leaves out the deprecated site-local fec0::/10, for one). IPv6 forms
that embed an IPv4 address (IPv4-mapped, NAT64, 6to4, Teredo) are judged by that address.
Addresses inside ``allowed_cidrs`` are let through, which is how the local stack reaches
receivers on 127.0.0.1.

The same guard runs when a URL is stored and again on every connection, against the address
actually dialled, so a name that later resolves elsewhere (DNS rebinding) is still refused. Both
read the URL with the sender's parser (``security/urls.py``), so they judge the host it dials.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from devicehooks.errors import BlockedDestination
from devicehooks.security.urls import InvalidURL, parse_target

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AddrInfo = tuple[Any, ...]
Resolver = Callable[[str, int], Sequence[AddrInfo]]

RESERVED_MESSAGE = "hostname resolves to reserved address"
CONNECT_MESSAGE = "destination address is in reserved address range"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
# Every block of IANA's IPv4 and IPv6 special-purpose address registries that is not globally
# reachable (checked against the registries of 2025), whatever the running Python's ipaddress
# knows: its is_global has changed between patch releases, and lags behind new assignments.
# A few blocks are refused whole although the registry marks an address or two in them global
# (anycast services in 192.0.0.0/24 and 2001::/23): never a webhook receiver.
_ALWAYS_BLOCKED = (
    ipaddress.IPv4Network("0.0.0.0/8"),  # "this network"
    ipaddress.IPv4Network("10.0.0.0/8"),  # private use
    ipaddress.IPv4Network("100.64.0.0/10"),  # shared address space (CGNAT)
    ipaddress.IPv4Network("127.0.0.0/8"),  # loopback
    ipaddress.IPv4Network("169.254.0.0/16"),  # link-local, the instance metadata service
    ipaddress.IPv4Network("172.16.0.0/12"),  # private use
    ipaddress.IPv4Network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.IPv4Network("192.0.2.0/24"),  # documentation (TEST-NET-1)
    ipaddress.IPv4Network("192.88.99.0/24"),  # deprecated 6to4 relay anycast (RFC 7526)
    ipaddress.IPv4Network("192.168.0.0/16"),  # private use
    ipaddress.IPv4Network("198.18.0.0/15"),  # benchmarking
    ipaddress.IPv4Network("198.51.100.0/24"),  # documentation (TEST-NET-2)
    ipaddress.IPv4Network("203.0.113.0/24"),  # documentation (TEST-NET-3)
    ipaddress.IPv4Network("240.0.0.0/4"),  # reserved
    ipaddress.IPv4Network("255.255.255.255/32"),  # limited broadcast
    ipaddress.IPv6Network("::1/128"),  # loopback
    ipaddress.IPv6Network("::/128"),  # unspecified
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use IPv4/IPv6 translation (RFC 8215)
    ipaddress.IPv6Network("100::/64"),  # discard-only
    ipaddress.IPv6Network("100:0:0:1::/64"),  # dummy IPv6 prefix (registered in 2025)
    ipaddress.IPv6Network("2001::/23"),  # IETF protocol assignments (benchmarking, ORCHID, ...)
    ipaddress.IPv6Network("2001:db8::/32"),  # documentation
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.IPv6Network("5f00::/16"),  # SRv6 segment identifiers (RFC 9602)
    ipaddress.IPv6Network("fc00::/7"),  # unique local
    ipaddress.IPv6Network("fe80::/10"),  # link-local
    ipaddress.IPv6Network("fec0::/10"),  # site-local, deprecated (RFC 3879); not in Python's lists
)


def system_resolver(host: str, port: int) -> Sequence[AddrInfo]:
    """``getaddrinfo`` for TCP: every address a connection to ``host`` could use."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def parse_numeric_host(host: str) -> IPAddress | None:
    """An IP literal in any spelling ``inet_aton`` takes (``0x0a000001``, ``012.1``, ``[::1]``)."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or any(p == "" for p in parts):
        return None
    numbers = []
    for part in parts:
        lower = part.lower()
        try:
            if lower.startswith("0x"):
                numbers.append(int(lower[2:] or "0", 16))
            elif len(lower) > 1 and lower.startswith("0"):
                numbers.append(int(lower, 8))
            else:
                numbers.append(int(lower, 10))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    # Not 64:ff9b:1::/48: its prefixes may be as short as /48, which put the IPv4 address
    # elsewhere than the last 32 bits (RFC 6052); it is refused whole instead.
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    return None


def is_public(addr: IPAddress) -> bool:
    """Whether ``addr`` is global unicast and nothing else (see the module docstring)."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:
            return False
        embedded = _embedded_ipv4(addr)
        if embedded is not None:
            return is_public(embedded)
    if any(addr in net for net in _ALWAYS_BLOCKED if net.version == addr.version):
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr not in _GLOBAL_UNICAST_V6:
        return False
    return not (
        addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_unspecified
        or addr.is_reserved
        or not addr.is_global
    )


@dataclass(frozen=True)
class DestinationGuard:
    """Checks webhook destinations against the address rules and the allowlist."""

    allowed_cidrs: tuple[IPNetwork, ...] = ()
    resolver: Resolver = system_resolver

    def is_allowed(self, addr: IPAddress) -> bool:
        """Public addresses, and any address inside an allowed CIDR."""
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            mapped = addr.ipv4_mapped
            if any(mapped in net for net in self.allowed_cidrs if net.version == 4):
                return True
        return any(addr in net for net in self.allowed_cidrs if net.version == addr.version) or is_public(addr)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to; raises :class:`BlockedDestination` when none."""
        literal = parse_numeric_host(host)
        if literal is not None:
            return [literal]
        try:
            infos = self.resolver(host, port)
        except (OSError, UnicodeError):
            raise BlockedDestination(f"lookup {host}: no such host") from None
        addresses: list[IPAddress] = []
        for info in infos:
            text = str(info[4][0]).split("%", 1)[0]
            addr = ipaddress.ip_address(text)
            if addr not in addresses:
                addresses.append(addr)
        if not addresses:
            raise BlockedDestination(f"lookup {host}: no such host")
        return addresses

    def check_addresses(self, addresses: Iterable[IPAddress], message: str = RESERVED_MESSAGE) -> None:
        """Raise :class:`BlockedDestination` unless every address is allowed."""
        if not all(self.is_allowed(a) for a in addresses):
            raise BlockedDestination(message)

    def check_url(self, url: str) -> list[IPAddress]:
        """The create-time check: resolve the host the sender would dial for ``url`` (read by
        :func:`parse_target`, the sender's parse) on its port; all its addresses must be allowed."""
        try:
            target = parse_target(url)
        except InvalidURL as exc:
            raise BlockedDestination(f"invalid url: {exc.reason}") from None
        addresses = self.resolve(target.dial_host, target.port)
        self.check_addresses(addresses)
        return addresses
