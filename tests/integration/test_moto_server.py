"""moto's server and the local stack's fixes to it (devicehooks_dev.local.motofixes): per request,
moto lists its package directory (``server-module-list``) and its handler class's methods
(``server-method-names``), and werkzeug closes the connection after the response
(``server-keep-alive``). Counted on moto's server in this process.
"""

from __future__ import annotations

import http.client
import inspect
import json
import os
import types
from typing import Any
from urllib.parse import urlsplit

from devicehooks_dev.local import motofixes
from tests.conftest import moto_client
from tests.integration.mototools import counting, moto_in_process, pinned, replaced, still_needed

REQUESTS = (2, 4)


def module(original: types.ModuleType) -> types.ModuleType:
    """A copy of ``original`` whose functions a test can count without counting anyone else's calls."""
    copy = types.ModuleType(original.__name__)
    vars(copy).update(vars(original))
    return copy


# --- server-module-list ---------------------------------------------------------------------


def listings(requests: int) -> int:
    """How many times moto's server lists its package directory to answer ``requests`` requests."""
    from moto import backends

    listing_os = module(os)
    with replaced(backends, "os", listing_os), counting(listing_os, "listdir") as listdir, moto_in_process() as url:
        client = moto_client("dynamodb", url)
        for _ in range(requests):
            client.list_tables()
    return listdir.calls


def test_moto_lists_its_package_directory_for_every_request() -> None:
    with motofixes.using():
        counts = [listings(n) for n in REQUESTS]
    still_needed("server-module-list", counts == list(REQUESTS), f"listings for {REQUESTS} requests: {counts}")


@pinned
def test_with_the_fix_moto_lists_its_package_directory_once() -> None:
    from moto import backends

    with motofixes.using():
        as_moto = list(backends.list_of_moto_modules())
    with motofixes.using("server-module-list"):
        assert list(backends.list_of_moto_modules()) == as_moto
        assert [listings(n) for n in REQUESTS] == [0, 0]  # listed when the fix was applied


# --- server-method-names --------------------------------------------------------------------


def member_listings(requests: int) -> int:
    """How many times moto's server lists a class's members to answer ``requests`` requests."""
    from moto.core import utils

    listing_inspect = module(inspect)
    with (
        replaced(utils, "inspect", listing_inspect),
        counting(listing_inspect, "getmembers") as getmembers,
        moto_in_process() as url,
    ):
        client = moto_client("dynamodb", url)
        for _ in range(requests):
            client.list_tables()
    return getmembers.calls


def test_moto_lists_the_handlers_methods_for_every_request() -> None:
    with motofixes.using():
        counts = [member_listings(n) for n in REQUESTS]
    still_needed("server-method-names", counts == list(REQUESTS), f"listings for {REQUESTS} requests: {counts}")


@pinned
def test_with_the_fix_a_handlers_methods_are_listed_once() -> None:
    from moto.core import responses
    from moto.dynamodb.responses import DynamoHandler
    from moto.events.responses import EventsHandler
    from moto.sqs.responses import SQSResponse

    handlers = (DynamoHandler, SQSResponse, EventsHandler)
    with motofixes.using():
        as_moto = [responses.method_names_from_class(handler) for handler in handlers]
    with motofixes.using("server-method-names"):
        assert [responses.method_names_from_class(handler) for handler in handlers] == as_moto
    for requests in REQUESTS:
        with motofixes.using("server-method-names"):
            assert member_listings(requests) == 1


# --- server-keep-alive ----------------------------------------------------------------------

SIGNED = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"


def dynamodb(
    connection: http.client.HTTPConnection, action: str, body: dict[str, Any], chunked: bool = False
) -> tuple[int, dict[str, Any], bool]:
    """A DynamoDB call on ``connection``: the status, the body, and whether the server closes it."""
    headers = {
        "X-Amz-Target": f"DynamoDB_20120810.{action}",
        "Content-Type": "application/x-amz-json-1.0",
        "Authorization": SIGNED,
    }
    data = json.dumps(body).encode()
    if chunked:
        connection.request("POST", "/", body=iter([data]), headers=headers, encode_chunked=True)
    else:
        connection.request("POST", "/", body=data, headers=headers)
    response = connection.getresponse()
    answer: dict[str, Any] = json.loads(response.read())
    return response.status, answer, response.will_close


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    assert parts.hostname is not None
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def closed_connections(requests: int) -> int:
    """How many connections moto's server closes to answer ``requests`` requests (on one, kept
    open by the client)."""
    with moto_in_process() as url:
        connection = connect(url)
        closes = sum(dynamodb(connection, "ListTables", {})[2] for _ in range(requests))
        connection.close()
    return closes


def test_moto_closes_the_connection_after_every_response() -> None:
    with motofixes.using():
        counts = [closed_connections(n) for n in REQUESTS]
    still_needed("server-keep-alive", counts == list(REQUESTS), f"connections closed for {REQUESTS} requests: {counts}")


@pinned
def test_with_the_fix_one_connection_carries_every_call_and_its_answer() -> None:
    with motofixes.using("server-keep-alive"):
        assert [closed_connections(n) for n in REQUESTS] == [0, 0]
        with moto_in_process() as url:
            connection = connect(url)
            table = {
                "TableName": "t",
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "BillingMode": "PAY_PER_REQUEST",
            }
            item = {"pk": {"S": "k"}, "body": {"S": "x" * 100_000}}
            key = {"TableName": "t", "Key": {"pk": {"S": "k"}}, "ConsistentRead": True}
            assert dynamodb(connection, "CreateTable", table)[0] == 200
            assert dynamodb(connection, "PutItem", {"TableName": "t", "Item": item}) == (200, {}, False)
            assert dynamodb(connection, "GetItem", key) == (200, {"Item": item}, False)
            # a chunked request is served as werkzeug serves it, which then closes the connection
            assert dynamodb(
                connection, "PutItem", {"TableName": "t", "Item": item | {"n": {"N": "1"}}}, chunked=True
            ) == (
                200,
                {},
                True,
            )
            assert dynamodb(connection, "GetItem", key) == (200, {"Item": item | {"n": {"N": "1"}}}, False)
            connection.close()
