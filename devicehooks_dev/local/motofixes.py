"""Fixes to moto, the local stack's emulator, each for a behaviour of moto that a test shows.

``devicehooks local`` applies them all (:func:`apply`) when it starts moto's server, unless
``DEVICEHOOKS_LOCAL_MOTO_FIXES=0`` or moto is not the version they were written for
(:data:`FIXED_VERSION`, pinned in constraints.txt): :func:`enabled`. Each keeps moto's answers.
Every Lambda execution environment of the stack calls moto's one threaded server, so requests
arrive at once. By name (each fix's docstring names the moto function and what it does):

* ``dynamodb-lock``, ``sqs-lock``: moto's DynamoDB and SQS are not safe for requests at once
  (conditional writes, cancelled transactions; receives, deletes); their requests are taken one
  at a time, but for a long poll's wait.
* ``sqs-long-poll-check``: a long poll sees a delay or a visibility timeout end within
  :data:`LONG_POLL_CHECK` (moto: up to a second later).
* Costs that grow with the data or the requests (speed-ups; each names the figure it moves):
  ``dynamodb-item-size`` (an item's size summed at every attribute); ``dynamodbstreams-records``
  (a stream's records serialized value by value); ``sqs-send-attributes``,
  ``sqs-retention``, ``sqs-visible-messages``, ``sqs-delete-message`` (sends, receives and
  deletes that scan the whole queue); ``sqs-receipt-handle`` (a random call per letter of a
  receipt handle); ``eventbridge-jsonpath`` (a parser built per event);
  ``server-module-list``, ``server-method-names``, ``server-keep-alive`` (moto's server lists its
  package directory and a handler's methods per request, and closes every connection).

tests/integration/test_moto_*.py show each behaviour on moto as it is (:func:`using` runs moto
with some fixes only) and fail, saying so, once moto no longer shows it.
"""

from __future__ import annotations

import io
import os
import re
import socket
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import Any

FIXED_VERSION = "5.2.5"
ITEM_SIZE_LIMIT = 405000  # moto's limit for an item's size (DynamoDB's 400 KB, as moto measured it)
LONG_POLL_CHECK = 0.05  # how often a waiting long poll looks for a message whose delay has ended

Patch = tuple[Any, str, Any]  # (class or module, attribute, value moto is given)

_FIXES: dict[str, Callable[[], list[Patch]]] = {}  # by name, in the order they are applied
_ABSENT = object()  # an attribute a class inherits (nothing of its own to put back)
_moto: dict[tuple[Any, str], Any] = {}  # moto's own value of every attribute a fix replaced
_state = threading.local()  # per server thread: the SQS lock it holds, whether it is sending
_applied = False


def _fix(name: str) -> Callable[[Callable[[], list[Patch]]], Callable[[], list[Patch]]]:
    def register(patches: Callable[[], list[Patch]]) -> Callable[[], list[Patch]]:
        _FIXES[name] = patches
        return patches

    return register


def enabled() -> bool:
    """Whether to apply the fixes: asked for (the default), and moto is the version they fit."""
    from moto import __version__

    return os.environ.get("DEVICEHOOKS_LOCAL_MOTO_FIXES", "1") != "0" and __version__ == FIXED_VERSION


def apply() -> None:
    """Patch moto in this process with every fix (once)."""
    global _applied
    if not _applied:
        _applied = True
        _patch(tuple(_FIXES))


@contextmanager
def using(*fixes: str) -> Iterator[None]:
    """moto as it is but for ``fixes`` (none: moto as it is) inside the block, then as before it
    (for tests: a fix is shown against moto as it is, whatever this process applied)."""
    unknown = set(fixes) - set(_FIXES)
    if unknown:
        raise ValueError(f"no such moto fix: {sorted(unknown)}")
    before = {key: vars(key[0]).get(key[1], _ABSENT) for key in _moto}
    for (owner, attribute), value in _moto.items():
        _put(owner, attribute, value)
    try:
        _patch(fixes)
        yield
    finally:
        for (owner, attribute), value in _moto.items():
            _put(owner, attribute, before.get((owner, attribute), value))


def _patch(fixes: tuple[str, ...]) -> None:
    for name, patches in _FIXES.items():  # in their order: a later fix may wrap an earlier one
        if name in fixes:
            for owner, attribute, value in patches():
                _moto.setdefault((owner, attribute), vars(owner).get(attribute, _ABSENT))
                setattr(owner, attribute, value)


def _put(owner: Any, attribute: str, value: Any) -> None:
    if value is not _ABSENT:
        setattr(owner, attribute, value)
    elif attribute in vars(owner):
        delattr(owner, attribute)


# --- DynamoDB -------------------------------------------------------------------------------


class PartitionTurns:
    """A lock held by one request at a time, whose waiting requests take it in turns by
    partition: the partitions waiting are served round-robin, each partition's requests in the
    order they came. DynamoDB serves each partition on its own, so a partition with hundreds of
    writes queued (a tenant's backlog being recorded) delays a request to another by one
    request's time here, not by the whole queue's (as a plain lock would, in the order the threads
    happen to wake)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = False
        self._waiting: dict[Hashable, deque[threading.Event]] = {}
        self._turns: deque[Hashable] = deque()  # the partitions waiting, in the order they are served

    def acquire(self, partition: Hashable) -> None:
        with self._lock:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            if partition not in self._waiting:
                self._waiting[partition] = deque()
                self._turns.append(partition)
            self._waiting[partition].append(turn)
        turn.wait()  # handed over by the request before: held from here

    def release(self) -> None:
        with self._lock:
            if not self._turns:
                self._held = False
                return
            served = self._turns.popleft()
            queue = self._waiting[served]
            queue.popleft().set()
            if queue:
                self._turns.append(served)
            else:
                del self._waiting[served]

    @contextmanager
    def hold(self, partition: Hashable) -> Iterator[None]:
        self.acquire(partition)
        try:
            yield
        finally:
            self.release()


def partition_of(handler: Any) -> Hashable:
    """The table and partition a DynamoDB request of moto's handler is about (as near as its
    parameters tell: the key's or the item's partition value, a query's key condition value)."""
    params = getattr(handler, "params", None)
    if not isinstance(params, dict) or not isinstance(params.get("TableName"), str):
        return ()
    table = params["TableName"]
    key = params.get("Key") or params.get("Item")
    if isinstance(key, dict):
        try:
            hash_attribute = handler.dynamodb_backend.get_table(table).hash_key_attr
        except Exception:  # noqa: BLE001 - no such table: moto answers that, in its turn
            return (table,)
        return (table, repr(key.get(hash_attribute)))
    found = re.search(r"=\s*(:\w+)", str(params.get("KeyConditionExpression") or ""))
    values = params.get("ExpressionAttributeValues") or {}
    return (table, params.get("IndexName"), repr(values.get(found.group(1))) if found else None)


@_fix("dynamodb-lock")
def _dynamodb_lock() -> list[Patch]:
    """moto's DynamoDB answers requests on several threads with no lock: ``Table.put_item`` reads
    the item, then checks the condition and stores, so two puts of one item on condition that it
    does not exist (the activity log's event put) both succeed; ``transact_write_items`` copies
    each table it writes to and, cancelled, puts the copy back, losing what other requests wrote
    meanwhile. Fix: DynamoDB requests one at a time (DynamoDB is linearisable per item), waiting
    ones taken in turns by partition (:class:`PartitionTurns`). Moves P8: a tenant's backlog kept
    ~200 writes waiting, and another tenant's each waited behind all of them."""
    from moto.dynamodb.responses import DynamoHandler

    turns = PartitionTurns()
    call_action = DynamoHandler.call_action

    def locked_call_action(self: Any) -> Any:
        with turns.hold(partition_of(self)):
            return call_action(self)

    return [(DynamoHandler, "call_action", locked_call_action)]


@_fix("dynamodb-item-size")
def _dynamodb_item_size() -> list[Patch]:
    """moto's ``Item.__init__`` stores attributes one by one in a ``LimitedSizeDict``, whose
    ``__setitem__`` sums the size of every attribute already set (to refuse an item over
    400 KB): O(attributes x item size) per item written. Fix: the size is summed once, with the
    same limit and error. Moves P5's 20-webhook variant: an event item of 20 webhooks with its
    markers took 8.5 ms of moto's time, 7.4 ms with the fix, while other tenants' writes waited."""
    from moto.dynamodb.models.dynamo_type import Item

    def item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
        from moto.dynamodb.exceptions import ItemSizeTooLarge
        from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
        from moto.dynamodb.models.utilities import bytesize

        self.hash_key, self.range_key = hash_key, range_key
        values = {key: DynamoType(value) for key, value in attrs.items()}
        if sum(bytesize(key) + value.size() for key, value in values.items()) > ITEM_SIZE_LIMIT:
            raise ItemSizeTooLarge
        self.attrs = LimitedSizeDict()
        dict.update(self.attrs, values)  # as LimitedSizeDict's own update: no check per attribute

    return [(Item, "__init__", item_init)]


@_fix("dynamodbstreams-records")
def _dynamodbstreams_records() -> list[Patch]:
    """moto's ``DynamoDBStreamsHandler.get_records`` answers through its model-driven response
    serializer, which walks the records' shapes value by value (each attribute of both images, at
    every level of its map): it was 40 % of the DynamoDB server's time in P4, where the local stack
    reads the activity table's stream (AWS reads a stream apart from the table's writes). Fix: the
    records moto keeps are already the wire's JSON (``StreamRecord.record``) but for their
    timestamp and binary values; they are answered with ``json.dumps``, those as the serializer
    writes them (epoch seconds truncated to the millisecond; base64). Moves P4, P8 and R1."""
    import base64
    import calendar
    import json
    from datetime import datetime

    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    def on_the_wire(value: object) -> float | str:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if not isinstance(value, datetime):
            raise TypeError(f"{type(value).__name__} in a stream record")
        seconds = calendar.timegm(value.timetuple())
        return seconds + (value.microsecond // 1000) / 1000.0 if value.microsecond else seconds

    def get_records(self: Any) -> str:
        limit = self._get_param("Limit")
        result = self.backend.get_records(self._get_param("ShardIterator"), 1000 if limit is None else limit)
        return json.dumps(result, default=on_the_wire)

    return [(DynamoDBStreamsHandler, "get_records", get_records)]


# --- SQS ------------------------------------------------------------------------------------


@_fix("sqs-long-poll-check")
def _sqs_long_poll_check() -> list[Patch]:
    """moto's long poll (``SQSBackend.receive_message``) waits on ``Queue.wait_for_messages(1)``,
    woken by a message sent, not by a delay or visibility timeout ending: it hands such a message
    out up to a second after it is visible (SQS, at once). Fix: it looks every
    :data:`LONG_POLL_CHECK` seconds. Lets the local poller long-poll rather than short-poll every
    50 ms while messages are delayed or in flight (that was a fifth of moto's requests in P5)."""
    from moto.sqs.models import Queue

    def wait_for_messages(self: Any, timeout: int) -> None:
        with self._messages_lock:
            self._messages_lock.wait_for(lambda: self.messages, timeout=min(timeout, LONG_POLL_CHECK))

    return [(Queue, "wait_for_messages", wait_for_messages)]


@_fix("sqs-lock")
def _sqs_lock() -> list[Patch]:
    """moto's SQS answers requests on several threads with no lock: ``receive_message`` reads a
    message as visible, then marks it received, so two receives hand one message out; and it
    iterates the queue's in-flight set (``Queue.pending_message_groups``) that ``delete_message``
    changes: "Set changed size during iteration", a 500 (1-4 per R1 run, none with the fix).
    Fix: SQS requests one at a time, but for a long poll's wait (the lock is let go for it),
    waiting ones taken in turns by queue (:class:`PartitionTurns`: SQS queues are served
    independently, and the intake queue's requests do not wait behind the dispatch queue's).
    Applied after ``sqs-long-poll-check``, whose wait it wraps."""
    from moto.sqs.models import Queue
    from moto.sqs.responses import SQSResponse

    turns = PartitionTurns()
    call_action = SQSResponse.call_action
    wait_for_messages = Queue.wait_for_messages

    def locked_call_action(self: Any) -> Any:
        try:
            queue = f"{self._get_param('QueueUrl') or ''} {self._get_action()}"
        except Exception:  # noqa: BLE001 - a request without a queue: a turn of its own
            queue = ""
        with turns.hold(queue):
            _state.sqs_lock = (turns, queue)
            try:
                return call_action(self)
            finally:
                _state.sqs_lock = None

    def unlocked_wait(self: Any, timeout: int) -> None:
        held: tuple[PartitionTurns, str] | None = getattr(_state, "sqs_lock", None)
        if held is None:
            wait_for_messages(self, timeout)
            return
        held[0].release()
        try:
            wait_for_messages(self, timeout)
        finally:
            held[0].acquire(held[1])

    return [(SQSResponse, "call_action", locked_call_action), (Queue, "wait_for_messages", unlocked_wait)]


# The next four: moto's SQS does work per message of the queue for each message sent, received or
# deleted. Measured on moto's backend with 2,000 messages queued, half of them in flight: a send
# 23 ms, a receive of 10 0.72 s, 10 deletes 4 ms, a count of the visible ones 9.6 ms; 0.07 ms,
# 1 ms, 0.13 ms and 0.06 ms with the four. They weigh on R1 (10,000 events), P5 (300) and P6
# (1,000 events held), whose queues hold hundreds to thousands of messages.


@_fix("sqs-send-attributes")
def _sqs_send_attributes() -> list[Patch]:
    """moto's ``SQSBackend.send_message`` reads ``queue.attributes["ContentBasedDeduplication"]``:
    the ``Queue.attributes`` property computes every attribute, counting the visible, delayed and
    in-flight messages (four clock reads per message). Fix: while sending, the property holds
    only that attribute (nothing else is read from it)."""
    from moto.sqs.models import Queue, SQSBackend

    attributes = Queue.attributes.fget
    send_message = SQSBackend.send_message

    def sending_attributes(self: Any) -> Any:
        if not getattr(_state, "sending", False):
            return attributes(self)
        if not self.fifo_queue:
            return {}  # moto lists ContentBasedDeduplication for FIFO queues only
        return {"ContentBasedDeduplication": str(self.content_based_deduplication).lower()}

    def sending(self: Any, *args: Any, **kwargs: Any) -> Any:
        was, _state.sending = getattr(_state, "sending", False), True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _state.sending = was

    return [(Queue, "attributes", property(sending_attributes)), (SQSBackend, "send_message", sending)]


@_fix("sqs-retention")
def _sqs_retention() -> list[Patch]:
    """moto's ``SQSBackend.is_message_valid_based_on_retention_period``, run by a receive for each
    message it hands out, reads the retention period through ``get_queue_attributes``, which
    computes ``Queue.attributes`` three times (12 clock reads per message of the queue). Fix: the
    queue's retention period is read directly."""
    from moto.sqs import models

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retain_until = self.get_queue(queue_name).message_retention_period + message.sent_timestamp / 1000
        return not retain_until <= models.unix_time()

    return [
        (models.SQSBackend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period)
    ]


@_fix("sqs-visible-messages")
def _sqs_visible_messages() -> list[Patch]:
    """moto's ``Queue.messages`` (the visible messages: read by every receive, and at each check
    of a waiting long poll) reads the clock twice per message of the queue (``Message.visible``,
    ``Message.delayed``). Fix: the clock is read once."""
    from moto.sqs import models

    def messages(self: Any) -> list[Any]:
        now = models.unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    return [(models.Queue, "messages", property(messages))]


@_fix("sqs-delete-message")
def _sqs_delete_message() -> list[Patch]:
    """moto's ``Queue.delete_message`` scans the queue twice for the receipt handle, building a
    list of each message's handles (``Message.had_receipt_handle``) at every step. Fix: one scan,
    to the message, comparing handles in place."""
    from moto.sqs import models

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return
        for index, message in enumerate(self._messages):  # noqa: B007 - index is used after the loop
            if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                break
        else:
            raise models.ReceiptHandleIsInvalid()
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        del self._messages[index]

    return [(models.Queue, "delete_message", delete_message)]


@_fix("sqs-receipt-handle")
def _sqs_receipt_handle() -> list[Patch]:
    """moto's ``generate_receipt_handle`` draws a receipt handle's 185 letters one
    ``random.choice`` call each, for every message a receive hands out: 185 calls per message,
    half of a receive's time in moto (2.8 of ~5 ms for 10 messages). Fix: the same 185 letters
    from the same generator in one ``choices`` call. Moves P8 (every hop of a device event is a
    receive) and R1."""
    import string

    from moto.moto_api._internal import mock_random
    from moto.sqs import models

    def generate_receipt_handle() -> str:
        return "".join(mock_random.choices(string.ascii_lowercase, k=185))

    return [(models, "generate_receipt_handle", generate_receipt_handle)]


# --- EventBridge and moto's server ----------------------------------------------------------


@_fix("eventbridge-jsonpath")
def _eventbridge_jsonpath() -> list[Patch]:
    """moto's ``EventTemplateParser.parse``, run for each target of each event a rule matches,
    builds a jsonpath parser (``jsonpath_ng.ext.parse``) for each input path: 8 for the default
    input, 5.3 ms per event and target; 0.03 ms with the fix, which keeps a path's parser.
    Weighs on every figure whose events go through the bus (P4, P5, P6, R1)."""
    from jsonpath_ng import ext

    return [(ext, "parse", lru_cache(maxsize=256)(ext.parse))]


@_fix("server-module-list")
def _server_module_list() -> list[Patch]:
    """moto's server (``DomainDispatcherApplication.get_backend_for_host``) lists moto's package
    directory, a stat call per entry, for each request, under the lock every request takes to
    find its service. Fix: the list is made once. Moves moto's requests/s (P1_fanout_moto_per_s,
    R1): measured in moto's server process, a PutItem took 1.37 ms of its CPU, 1.05 ms with the
    fix (a listing: 0.2 ms to reach ``dynamodb``, 0.5 ms whole)."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    return [(backends, "list_of_moto_modules", list_of_moto_modules)]


@_fix("server-method-names")
def _server_method_names() -> list[Patch]:
    """moto's ``BaseResponse.call_action`` lists the handler class's methods
    (``method_names_from_class``: ``inspect.getmembers``) for each request to find its action.
    Fix: a class's list is made once. Moves moto's requests/s (P1_fanout_moto_per_s, R1) a
    little: a listing is 0.04 ms, ~4 % of the 1.05 ms of CPU a PutItem takes in moto's server."""
    from moto.core import responses

    return [(responses, "method_names_from_class", cache(responses.method_names_from_class))]


@cache
def _drained() -> socket.socket:
    """A socket that reads as at its end at once."""
    left, right = socket.socketpair()
    right.close()
    return left


@_fix("server-keep-alive")
def _server_keep_alive() -> list[Patch]:
    """moto's server (werkzeug's ``WSGIRequestHandler``) closes every connection after its
    response (``Connection: close``): a TCP connection and a server thread per AWS call. werkzeug
    does so because after a response it drains what the client may still send, which would eat
    the next request. Fix: the request's body is read whole first and werkzeug is given it from
    memory, its drain a socket at its end; chunked requests are served as werkzeug serves them
    (then closed). Moves ``P1_cpu_us_per_delivery_*`` (a connection per call cost the client
    ~5 % more CPU than on AWS) and moto's requests/s: a PutItem took 1.56 ms of CPU in moto's
    server, 1.05 ms with the fix."""
    from moto.moto_server import threaded_moto_server

    base: Any = threaded_moto_server.MotoRequestHandler

    class KeepAliveHandler(base):  # type: ignore[misc]
        keep_alive = False
        disable_nagle_algorithm = True  # werkzeug writes the headers, then the body

        def run_wsgi(self) -> None:
            length = self.headers.get("Content-Length") or "0"
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower() or not length.isdigit():
                base.run_wsgi(self)
                return
            stream: Any = self.rfile  # type: ignore[has-type]
            connection: Any = self.connection  # type: ignore[has-type]
            body = stream.read(int(length))
            self.rfile, self.connection, self.keep_alive = io.BytesIO(body), _drained(), True
            try:
                base.run_wsgi(self)
            finally:
                self.rfile, self.connection, self.keep_alive = stream, connection, False

        def send_header(self, keyword: str, value: str) -> None:
            if self.keep_alive and keyword.lower() == "connection" and value.lower() == "close":
                return
            base.send_header(self, keyword, value)

    return [(threaded_moto_server, "MotoRequestHandler", KeepAliveHandler)]
