"""The destination guard: which addresses a webhook may reach (BEHAVIOUR.md §3.6, stricter)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from devicehooks.delivery import sender
from devicehooks.errors import BlockedDestination
from devicehooks.security.ssrf import RESERVED_MESSAGE, DestinationGuard, is_public, parse_numeric_host
from devicehooks.security.urls import InvalidURL, Target, parse_target


def _resolver(mapping: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int):  # type: ignore[no-untyped-def]
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in mapping[host]
        ]

    return resolve


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "fc00::1",
        "fd12:3456::1",
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "100.64.0.1",
        "100.127.255.254",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        "0.0.0.0",
        "::",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a00:1",
        "2002:a00:1::",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.5",
        "198.18.0.1",
        "240.0.0.1",
        "192.0.0.8",
        # IANA special-purpose blocks that are not globally reachable, whatever Python's ipaddress says
        "fec0::1",  # site-local (RFC 3879), deprecated: Python's is_global lets it through
        "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",  # the end of fec0::/10
        "3fff::1",  # documentation (RFC 9637)
        "3fff:fff:ffff::1",  # the end of 3fff::/20
        "64:ff9b:1::808:808",  # local-use NAT64 (RFC 8215): refused whatever it seems to embed
        "64:ff9b:1:ffff::1",
        "100:0:0:1::1",  # dummy IPv6 prefix
        "5f00::1",  # SRv6 SIDs (RFC 9602)
        "192.88.99.1",  # deprecated 6to4 relay anycast (RFC 7526)
        "2001:2::1",  # benchmarking
        "2001:20::1",  # ORCHIDv2
        "4000::1",  # IPv6 outside 2000::/3, the global unicast space
        "fe00::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # well-known NAT64 of a public address
        "2002:808:808::1",  # 6to4 of a public address
        "192.31.196.1",  # AS112: special-purpose, but globally reachable
        "2620:4f:8000::1",  # AS112 direct delegation, the same
        "3fff:1000::1",  # just past 3fff::/20
        "2001:200::1",  # just past 2001::/23
    ],
)
def test_global_unicast_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("0x0a000001", "10.0.0.1"),
        ("167772161", "10.0.0.1"),
        ("012.0.0.1", "10.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("0177.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("2130706433", "127.0.0.1"),
    ],
)
def test_numeric_host_spellings_are_read_as_the_address_they_denote(spelling: str, address: str) -> None:
    assert parse_numeric_host(spelling) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "http://0x0a000001/hook",
        "http://167772161/hook",
        "http://012.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::1]:8080/hook",
        "https://169.254.169.254/latest/meta-data/",
        "http://localhost/hook",
    ],
)
def test_create_time_check_refuses_hostile_urls(url: str) -> None:
    guard = DestinationGuard(resolver=_resolver({"localhost": ["127.0.0.1", "::1"]}))
    with pytest.raises(BlockedDestination) as caught:
        guard.check_url(url)
    assert caught.value.message == RESERVED_MESSAGE


def test_a_name_with_one_private_address_among_public_ones_is_refused() -> None:
    guard = DestinationGuard(resolver=_resolver({"mixed.example": ["93.184.216.34", "10.1.2.3"]}))
    with pytest.raises(BlockedDestination):
        guard.check_url("https://mixed.example/hook")


def test_a_name_that_does_not_resolve_is_refused_with_the_lookup_error() -> None:
    guard = DestinationGuard(resolver=_resolver({}))
    with pytest.raises(BlockedDestination) as caught:
        guard.check_url("https://nosuch.invalid/hook")
    assert caught.value.message == "lookup nosuch.invalid: no such host"


def test_public_names_pass() -> None:
    guard = DestinationGuard(resolver=_resolver({"hooks.example": ["93.184.216.34", "2606:4700:4700::1111"]}))
    assert len(guard.check_url("https://hooks.example/x")) == 2


def test_allowed_cidrs_let_listed_private_ranges_through_and_nothing_else() -> None:
    guard = DestinationGuard(
        allowed_cidrs=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        resolver=_resolver({"localhost": ["127.0.0.1", "::1"]}),
    )
    guard.check_url("http://localhost:8080/hook")
    guard.check_url("http://[::ffff:127.0.0.1]/hook")
    with pytest.raises(BlockedDestination):
        guard.check_url("http://10.0.0.1/hook")
    with pytest.raises(BlockedDestination):
        guard.check_url("http://169.254.169.254/")


# ------------------------------------------------------------------ the host checked is the host dialled


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # urlsplit reads host 93.184.216.34 (public) here; urllib3 dials 10.0.0.1
        ("http://10.0.0.1\\@93.184.216.34/", RESERVED_MESSAGE),
        ("http://127.0.0.1\\@hooks.example/hook", RESERVED_MESSAGE),
        # urlsplit reads the name "%31%30.0.0.1" (no such host); urllib3 decodes it to 10.0.0.1
        ("http://%31%30.0.0.1/", RESERVED_MESSAGE),
        ("http://[fe80::1%25eth0]/", RESERVED_MESSAGE),
        ("http://example.test:0/", "invalid url: the port must be between 1 and 65535"),
        ("http://example.test:99999/", "invalid url: cannot be parsed"),
        ("ftp://hooks.example/", "invalid url: the scheme must be http or https"),
        ("http:///hook", "invalid url: no host"),
    ],
)
def test_create_time_check_judges_the_host_the_sender_dials(url: str, message: str) -> None:
    guard = DestinationGuard(resolver=_resolver({"hooks.example": ["93.184.216.34"]}))
    with pytest.raises(BlockedDestination) as caught:
        guard.check_url(url)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("url", "asked"),
    [
        ("http://93.184.216.34\\@10.0.0.1/", None),  # the other way round: 93.184.216.34 is dialled, and allowed
        ("http://%E2%82%AC:pw@hooks.example/", "hooks.example"),  # user info is not the host
        ("http://user@evil@hooks.example/", "hooks.example"),
        ("HTTPS://B\u00fccher.TEST./x", "xn--bcher-kva.test."),  # IDNA, lower case, the trailing dot kept
        ("http://[2606:4700:4700::1111]:8443/", None),
    ],
)
def test_create_time_check_resolves_exactly_what_the_sender_resolves(url: str, asked: str | None) -> None:
    seen: list[tuple[str, int]] = []

    def resolver(host: str, port: int):  # type: ignore[no-untyped-def]
        seen.append((host, port))
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    DestinationGuard(resolver=resolver).check_url(url)
    target = parse_target(url)
    assert seen == ([] if asked is None else [(asked, target.port)])
    assert asked is None or target.dial_host == asked


def test_the_sender_dials_what_the_shared_parse_gives() -> None:
    # one parse for the guard, the API's validation and the sender: what is checked is what is dialled
    assert sender.parse_target is parse_target


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://10.0.0.1\\@93.184.216.34/", Target("http", "10.0.0.1", 80, "/%5C@93.184.216.34/", None)),
        ("https://[::1]/x?y", Target("https", "[::1]", 443, "/x?y", None)),
        ("http://u:p@h.example:81", Target("http", "h.example", 81, "/", "Basic dTpw")),
    ],
)
def test_a_target_is_what_urllib3_makes_of_the_url(url: str, target: Target) -> None:
    assert parse_target(url) == target


def test_the_dialled_host_is_an_ipv6_literal_without_its_brackets_as_urllib3s_pool_dials_it() -> None:
    assert parse_target("https://[::1]/").dial_host == "::1"
    assert parse_target("https://hooks.example./").dial_host == "hooks.example."


@pytest.mark.parametrize("url", ["", "example.com/x", "http://\u2488.test/", "http://a:b:c/", "http://h.example:0"])
def test_urls_the_sender_cannot_send_to_are_refused(url: str) -> None:
    with pytest.raises(InvalidURL):
        parse_target(url)
