"""What the runtime relies on in its libraries, checked against the installed versions.

The HTTP APIs use only Powertools' public API; these tests pin the documented behaviour they read
(``app.request``, dynamic path matching) so that an upgrade that changes it fails here, by name,
rather than as a 404 that should have been a 405.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response

from devicehooks.api import http
from tests.conftest import ROOT, FakeContext, load_event

RUNTIME = ROOT / "layers" / "common" / "devicehooks"


def _get(path: str) -> dict[str, Any]:
    event = copy.deepcopy(load_event("internal-provision-device.json"))
    event.pop("body", None)
    event["rawPath"] = path
    event["requestContext"]["http"].update(method="GET", path=path)
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
    routed = api.app.resolve(_get(path), FakeContext())  # type: ignore[arg-type]
    assert api.serves(path) == (routed["statusCode"] == 204), (
        f"the route table (api/http.py _PATH_PARAMETER) and Powertools disagree on {path!r}: "
        "has Powertools changed what a <parameter> matches?"
    )
    if seen:  # what body_model and the path checks read: the route as OpenAPI names it, its parameters
        assert seen == {"route": "/things/{thing_id}/parts", "parameters": {"thing_id": f"a{value}b"}}


def test_the_route_table_names_a_route_as_powertools_request_does() -> None:
    api = http.HttpApi()

    @api.get("/a/<first>/b/<second>")
    def both(first: str, second: str) -> Response[str]:
        return http.json_response(200, {"route": api.app.request.route, "method": api.app.request.method})

    answer = api.app.resolve(_get("/a/1/b/2"), FakeContext())  # type: ignore[arg-type]
    assert answer["body"] == '{"route":"/a/{first}/b/{second}","method":"GET"}'
