"""SSRF: hostile webhook destinations are refused when stored or when sent (issue: ≥ 30 cases).

Create-time refusals go through the management service with the same guard the API uses;
send-time refusals through the dispatcher's guarded sender against a real local receiver.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from datetime import UTC, datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from devicehooks.delivery.sender import HttpSender
from devicehooks.dispatch import Batch, DispatchContext, Dispatcher
from devicehooks.domain.decisions import DispatchPolicy
from devicehooks.domain.inputs import IntegrationIn
from devicehooks.domain.models import Integration
from devicehooks.errors import InvalidRequest
from devicehooks.security.ssrf import DestinationGuard, system_resolver
from devicehooks.services.integrations import IntegrationService
from devicehooks_dev.doubles import MemoryActivityStore, MemoryIntegrationStore, MemoryTaskQueue, PlainTestCipher
from tests.ids import webhook_id

# names that resolve to private places (what a hostile DNS zone would publish)
HOSTILE_NAMES = {
    "internal.attacker.example": ["10.0.0.5"],
    "metadata.attacker.example": ["169.254.169.254"],
    "ecs-metadata.attacker.example": ["169.254.170.2"],
    "loopback.attacker.example": ["127.0.0.1"],
    "v6-loopback.attacker.example": ["::1"],
    "mapped.attacker.example": ["::ffff:10.0.0.1"],
    "mixed.attacker.example": ["93.184.216.34", "192.168.0.10"],
    "cgnat.attacker.example": ["100.64.1.1"],
}


def _resolver(host: str, port: int) -> list[tuple[Any, ...]]:
    if host in HOSTILE_NAMES:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in HOSTILE_NAMES[host]
        ]
    return list(system_resolver(host, port))


CREATE_TIME = [
    # loopback, v4 and v6, in several spellings
    "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook",
    "http://[::1]/hook",
    "http://localhost/hook",
    "http://2130706433/hook",  # decimal 127.0.0.1
    "http://0x7f000001/hook",  # hex
    "http://0177.0.0.1/hook",  # octal
    "http://127.1/hook",  # short form
    # RFC 1918 and unique local
    "http://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://172.31.255.254/hook",
    "http://192.168.1.1/hook",
    "http://[fd00::1]/hook",
    "http://0x0a000001/hook",
    "http://167772161/hook",
    "http://012.0.0.1/hook",
    # link-local and the metadata services
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://[fe80::1]/hook",
    "http://[fd00:ec2::254]/latest/meta-data/",
    # CGNAT, multicast, broadcast, unspecified, reserved
    "http://100.64.0.1/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://255.255.255.255/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://240.0.0.1/hook",
    # IPv4-mapped and translated IPv6
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:169.254.169.254]/hook",
    "http://[::ffff:a00:1]/hook",
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://[64:ff9b:1::808:808]/hook",  # local-use NAT64: wherever it really leads
    # IPv6 ranges Python's ipaddress takes for global
    "http://[fec0::1]/hook",  # site-local, deprecated
    "http://[3fff::1]/hook",  # documentation (RFC 9637)
    # what urllib3 dials, not what urllib.parse.urlsplit reads
    "http://10.0.0.1\\@93.184.216.34/hook",  # urlsplit: host 93.184.216.34; urllib3 dials 10.0.0.1
    "http://169.254.169.254\\@hooks.example/latest/meta-data/",
    "http://%31%32%37.0.0.1/hook",  # urllib3 decodes the host to 127.0.0.1
    # names that resolve privately
    *[f"https://{name}/hook" for name in HOSTILE_NAMES],
]


@pytest.fixture
def service() -> IntegrationService:
    return IntegrationService(
        MemoryIntegrationStore(), PlainTestCipher(), DestinationGuard(resolver=_resolver), max_integrations=99
    )


@pytest.mark.parametrize("url", CREATE_TIME)
def test_hostile_destinations_are_refused_when_stored(service: IntegrationService, url: str) -> None:
    spec = IntegrationIn.model_validate({"provider": "webhook", "credentials": {"type": "http", "http": {"url": url}}})
    with pytest.raises(InvalidRequest) as caught:
        service.create("tenant-1", spec)
    assert (
        caught.value.message
        == "malformed request body: credentials: (http: (url: hostname resolves to reserved address.).)."
    )
    assert service.list_integrations("tenant-1") == []


def test_the_create_time_list_has_at_least_30_destinations() -> None:
    assert len(CREATE_TIME) >= 30


def _dispatcher(
    server: HTTPServer, resolver: Any, allow_loopback: bool = False, guard: DestinationGuard | None = None
) -> tuple[Dispatcher, MemoryIntegrationStore, MemoryActivityStore]:
    """A dispatcher whose sender is guarded by ``guard`` (by default one of ``resolver``, which
    allows loopback with ``allow_loopback``)."""
    integrations, activity = MemoryIntegrationStore(), MemoryActivityStore()
    if guard is None:
        allowed = (ipaddress.ip_network("127.0.0.0/8"),) if allow_loopback else ()
        guard = DestinationGuard(allowed_cidrs=allowed, resolver=resolver)
    sender = HttpSender(guard, timeout=2)
    dispatcher = Dispatcher(
        DispatchContext(integrations, activity, PlainTestCipher(), sender, MemoryTaskQueue(), DispatchPolicy())
    )
    return dispatcher, integrations, activity


def _send(dispatcher: Dispatcher, integrations: MemoryIntegrationStore, url: str) -> str:
    now = datetime.now(UTC)
    integrations.add(Integration(id="i-1", tenant_id="t", url=url, created_at=now, updated_at=now), 99)
    event = {
        "id": "e-1",
        "detail-type": "device-decommissioned",
        "source": "devicehooks.deviceauth",
        "time": "2026-01-01T00:00:00Z",
        "detail": {"tenant_id": "t", "data": {"id": "d"}},
    }
    batch = Batch(deadline=None)
    dispatcher.handle_message(json.dumps(event), batch)
    dispatcher.finish_batch(batch)
    return webhook_id(event)


def test_a_name_public_when_stored_and_private_when_sent_is_refused_at_send(httpserver: HTTPServer) -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in next(answers)]

    guard = DestinationGuard(resolver=rebinding)
    guard.check_url(f"http://rebind.attacker.example:{httpserver.port}/hook")  # stored: it looked public
    dispatcher, integrations, activity = _dispatcher(httpserver, rebinding, guard=guard)
    httpserver.expect_request("/hook").respond_with_data("should never be reached")
    event_id = _send(dispatcher, integrations, f"http://rebind.attacker.example:{httpserver.port}/hook")
    record = activity.get("t", event_id)
    assert record is not None and record.deliveries["i-1"].error == "destination address is in reserved address range"
    assert httpserver.log == []


def test_a_redirect_to_a_private_address_is_never_followed(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/hook").respond_with_data("", status=302, headers={"Location": "http://10.0.0.1/steal"})
    dispatcher, integrations, activity = _dispatcher(httpserver, system_resolver, allow_loopback=True)
    event_id = _send(dispatcher, integrations, httpserver.url_for("/hook"))
    record = activity.get("t", event_id)
    assert record is not None
    assert (record.deliveries["i-1"].status_code, record.deliveries["i-1"].state) == (302, "retrying")
    assert len(httpserver.log) == 1


def test_a_stored_private_destination_is_still_refused_at_send(httpserver: HTTPServer) -> None:
    """Defence in depth: a row that bypassed the create check (an old import, a bug) is refused too."""
    dispatcher, integrations, activity = _dispatcher(httpserver, system_resolver)
    httpserver.expect_request("/hook").respond_with_data("should never be reached")
    event_id = _send(dispatcher, integrations, httpserver.url_for("/hook"))
    record = activity.get("t", event_id)
    assert record is not None and record.deliveries["i-1"].error == "destination address is in reserved address range"
    assert httpserver.log == []


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1\\@93.184.216.34/hook",
        "http://[fec0::1]/hook",
        "http://%31%32%37.0.0.1/hook",
    ],
)
def test_a_url_refused_when_stored_is_refused_at_send_for_the_same_address(url: str) -> None:
    """The create-time check and the sender judge the same host: what one refuses, so does the other."""
    integrations, activity = MemoryIntegrationStore(), MemoryActivityStore()
    sender = HttpSender(DestinationGuard(resolver=_resolver), timeout=2)
    dispatcher = Dispatcher(
        DispatchContext(integrations, activity, PlainTestCipher(), sender, MemoryTaskQueue(), DispatchPolicy())
    )
    event_id = _send(dispatcher, integrations, url)
    record = activity.get("t", event_id)
    assert record is not None and record.deliveries["i-1"].error == "destination address is in reserved address range"
