"""What the runtime relies on in its libraries, checked against the installed versions.

The HTTP APIs use only Powertools' public API; these tests pin the documented behaviour they read
(``app.request``, dynamic path matching) so that an upgrade that changes it fails here, by name,
rather than as a 404 that should have been a 405. The sender needs two private hooks, of urllib3
and http.client: these tests fail, naming the hook, when one moves or changes shape.
"""

from __future__ import annotations

import copy
import gzip
import inspect
import io
import re
import tomllib
import zlib
from http.client import HTTPResponse
from typing import Annotated, Any, ClassVar

import pytest
import urllib3
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from packaging.requirements import Requirement
from pydantic import BaseModel
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import DeflateDecoder, GzipDecoder

from devicehooks.api import http
from devicehooks.delivery import sender
from tests.conftest import ROOT, FakeContext, load_event

RUNTIME = ROOT / "layers" / "common" / "devicehooks"


def _request(path: str, method: str = "GET", body: str | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("internal-provision-device.json"))
    event.pop("body", None)
    if body is not None:
        event["body"] = body
    event["rawPath"] = path
    event["requestContext"]["http"].update(method=method, path=path)
    return event


# ---------------------------------------------------------------------------- Powertools
def test_the_runtime_reads_no_private_attribute_of_the_powertools_resolver() -> None:
    private = re.compile(r'_static_routes|_dynamic_routes|"_route(_args)?"|_json_body_deserializer')
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted(RUNTIME.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if private.search(line)
    ]
    assert found == []


# Powertools documents these characters (and word characters) for a dynamic path parameter; the
# others are some a client may send that it does not match
PARAMETER_VALUES = [*"-._~()'!*:@,;=+&$%<> []{}|^", "é", "x" * 300, '"', "\\", "`", "a/b", "?", "#"]


@pytest.mark.parametrize("value", PARAMETER_VALUES)
def test_the_route_table_matches_a_path_exactly_when_powertools_routes_it(value: str) -> None:
    api = http.HttpApi()
    seen: dict[str, Any] = {}

    @api.get("/things/<thing_id>/parts")
    def part(thing_id: str) -> Response[str]:
        seen.update(route=api.app.request.route, parameters=api.app.request.path_parameters)
        return http.empty_response(204)

    path = f"/things/a{value}b/parts"
    routed = api.app.resolve(_request(path), FakeContext())  # type: ignore[arg-type]
    assert api.serves(path) == (routed["statusCode"] == 204), (
        f"the route table (api/http.py _PATH_PARAMETER) and Powertools disagree on {path!r}: "
        "has Powertools changed what a <parameter> matches?"
    )
    if seen:  # what body_model and the path checks read: the route as OpenAPI names it, its parameters
        assert seen == {"route": "/things/{thing_id}/parts", "parameters": {"thing_id": f"a{value}b"}}


class Thing(BaseModel):
    go_fields: ClassVar[dict[str, str]] = {"name": "string"}
    name: str


def test_the_route_being_served_is_found_in_the_route_table_under_the_name_app_request_gives() -> None:
    api = http.HttpApi(enable_validation=True)

    @api.put("/a/<first>/b/<second>")
    def both(first: str, second: str, thing: Annotated[Thing | None, Body()] = None) -> Response[str]:
        model = api.body_model()
        request = api.app.request
        return http.json_response(200, [request.route, request.method, model.__name__ if model else None])

    answer = api.app.resolve(_request("/a/1/b/2", "PUT", '{"name": "x"}'), FakeContext())  # type: ignore[arg-type]
    assert answer["body"] == '["/a/{first}/b/{second}","PUT","Thing"]'


# ---------------------------------------------------------------------------- urllib3 and http.client
# The sender (delivery/sender.py) overrides two private hooks, urllib3's HTTPConnection._new_conn and
# http.client's HTTPResponse._read_status, and replaces a PoolManager's pool_classes_by_scheme, which
# urllib3's API reference does not list. urllib3 is pinned exactly; before moving the pin, these
# tests say whether those names still mean what the sender takes them to mean.
def _dependency(name: str) -> Requirement:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return next(r for r in map(Requirement, project["dependencies"]) if r.name == name)


def test_urllib3_is_pinned_to_the_version_installed_and_constrained() -> None:
    pin = f"=={urllib3.__version__}"
    assert str(_dependency("urllib3").specifier) == pin, (
        f"pyproject.toml must pin urllib3{pin} exactly (the version these guards ran against)"
    )
    assert f"urllib3{pin}" in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("connection", [HTTPConnection, HTTPSConnection])
def test_urllib3_connections_open_their_socket_in_new_conn(connection: type[HTTPConnection]) -> None:
    hook = getattr(connection, "_new_conn", None)
    assert callable(hook), (
        f"urllib3 {urllib3.__version__}: {connection.__name__}._new_conn is gone; the sender's "
        "connections override it to dial only the addresses DestinationGuard checked"
    )
    assert list(inspect.signature(hook).parameters) == ["self"], f"{connection.__name__}._new_conn changed shape"
    assert list(inspect.signature(connection.__init__).parameters)[:3] == ["self", "host", "port"], (
        f"{connection.__name__}(host, port, ...) changed: the sender's connections keep the host they get"
    )


@pytest.mark.parametrize("connection", [sender._GuardedHTTPConnection, sender._GuardedHTTPSConnection])
def test_connecting_goes_through_the_guarded_new_conn(connection: type[HTTPConnection]) -> None:
    conn = connection("192.0.2.1", 9, timeout=0.5)  # TEST-NET: never dialled while the hook holds
    try:
        conn.connect()
    except RuntimeError as exc:  # the guarded dial, refusing to connect outside HttpSender.send
        assert "only opened within send()" in str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever urllib3 raised instead is the finding
        pytest.fail(f"urllib3 {urllib3.__version__}: connect() no longer calls _new_conn ({exc!r})")
    else:
        pytest.fail(f"urllib3 {urllib3.__version__}: connect() connected without the guard")
    finally:
        conn.close()


class _Wire:
    """A socket as http.client reads a response from it: through ``makefile``."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.data))  # type: ignore[arg-type]


def test_http_client_responses_read_each_status_line_in_read_status() -> None:
    hook = getattr(HTTPResponse, "_read_status", None)
    assert callable(hook), (
        "http.client.HTTPResponse._read_status is gone: the sender's responses override it to skip interim 1xx"
    )
    assert list(inspect.signature(hook).parameters) == ["self"], "HTTPResponse._read_status changed shape"
    wire = _Wire(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\nX-Final: 1\r\n\r\n")
    response = sender._FinalResponse(wire)  # type: ignore[arg-type]
    response.begin()
    assert (response.status, response.reason, response.getheader("X-Final")) == (204, "No Content", "1")


def test_a_pool_manager_makes_its_pools_from_its_pool_classes_by_scheme() -> None:
    class Marked(HTTPSConnectionPool):
        pass

    manager = PoolManager()
    assert set(getattr(manager, "pool_classes_by_scheme", {})) == {"http", "https"}, (
        f"urllib3 {urllib3.__version__}: PoolManager.pool_classes_by_scheme is gone or changed"
    )
    manager.pool_classes_by_scheme = {"http": HTTPConnectionPool, "https": Marked}
    assert isinstance(manager.connection_from_host("hooks.example", 443, "https"), Marked), (
        "PoolManager no longer makes its pools from pool_classes_by_scheme: the sender's pools would be urllib3's"
    )


@pytest.mark.parametrize(("decoder", "compress"), [(GzipDecoder, gzip.compress), (DeflateDecoder, zlib.compress)])
def test_urllib3_decoders_bound_their_output(decoder: Any, compress: Any) -> None:
    assert "max_length" in inspect.signature(decoder.decompress).parameters, (
        f"urllib3 {urllib3.__version__}: {decoder.__name__}.decompress takes no max_length: a compressed body "
        "could no longer be decoded within the sender's bound"
    )
    assert len(decoder().decompress(compress(b"\0" * 1_000_000), max_length=1000)) <= 1000
