"""The destination guard: which addresses a webhook may reach (BEHAVIOUR.md §3.6, stricter)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from devicehooks.errors import BlockedDestination
from devicehooks.security.ssrf import RESERVED_MESSAGE, DestinationGuard, is_public, parse_numeric_host


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
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
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
