"""Fixes to moto, the local stack's emulator: races that lose writes, and costs that grow with data.

``devicehooks local`` applies them when it starts moto (``DEVICEHOOKS_LOCAL_MOTO_FIXES=0`` runs
moto as it is). Each fix keeps moto's answers; they were written against, and are applied only
to, the moto version pinned in constraints.txt. Measured on moto 5.2.5:

* moto's DynamoDB answers requests on several threads with no lock: ``transact_write_items``
  deep-copies each table it writes to without a lock while moto's threaded server writes the same
  table for other requests (``RuntimeError: dictionary changed size during iteration``, an HTTP
  500), and its rollback puts back a copy taken before those writes, losing them.
  Fix: moto's DynamoDB requests are serialised (DynamoDB is linearisable per item).
* SQS ``send_message`` and ``receive_message`` compute every attribute of the queue (counting its
  messages) to read one; ``delete_message`` scans every message twice, building a list per
  message; the visible-message list reads the clock twice per message. O(queue depth) in Python
  per message: with thousands of events queued, deletes alone took ~300 ms per batch of 10.
  Fix: read the one attribute, scan once, read the clock once.
* SQS long polls wake at once for a message sent meanwhile, but notice a message whose delay or
  visibility timeout ends only at their next check, a second later (SQS answers as soon as one is
  visible). The local poller had to short-poll every 50 ms while any message was delayed or in
  flight, two requests each time (P5: a fifth of what moto served). Fix: a long poll checks
  every :data:`LONG_POLL_CHECK` seconds (in moto's server, no request).
* SQS queues are not safe for concurrent requests: ReceiveMessage iterates the set of in-flight
  messages while DeleteMessage changes it (``RuntimeError: Set changed size during iteration``,
  a 500 the poller retries: 1-4 per R1 run once moto switched threads every 0.5 ms), and two
  receives can take the same message. Fix: SQS requests are serialised like DynamoDB's, except
  while a long poll waits (the lock is let go for the wait).
* EventBridge builds a jsonpath parser (PLY lexer and grammar) for each input path of each
  target of each event (~17 ms per event). Fix: the parser of a path is remembered.
* Every request lists its handler class's methods (``inspect.getmembers``) to look its action
  up: ~18 % of a PutItem's time in moto's server. Fix: the list of a class is remembered.
* DynamoDB builds an item attribute by attribute, summing the size of every attribute already
  set at each step (to refuse items over 400 KB): O(attributes x item size) per PutItem. The
  activity log's event items (a map of every webhook's status) took 8 ms each with 20 webhooks,
  and other tenants' writes waited behind them (P5 with 20 hanging webhooks). Fix: the item's
  size is summed once, with the same limit.
* The server lists moto's package directory (a stat call per entry) for every request, under
  its global lock, and werkzeug closes every connection after its response (a TCP connection
  and a server thread per AWS call). Fix: the list is remembered; connections are kept open.

"""

from __future__ import annotations

import io
import os
import socket
import threading
from functools import lru_cache
from typing import Any

_state = threading.local()


FIXED_VERSION = "5.2.5"
ITEM_SIZE_LIMIT = 405000  # moto's limit for an item's size (DynamoDB's 400 KB, as moto measured it)
LONG_POLL_CHECK = 0.05  # how often a waiting long poll looks for a message whose delay has ended


def enabled() -> bool:
    """Whether to apply the fixes: asked for (the default), and moto is the version they fit."""
    from moto import __version__

    return os.environ.get("DEVICEHOOKS_LOCAL_MOTO_FIXES", "1") != "0" and __version__ == FIXED_VERSION


def _keep_alive_handler(base: Any) -> Any:
    """moto's request handler, keeping connections open. werkzeug's closes each one after its
    response (a TCP connection and a server thread per AWS call), because after a response it
    drains what the client may still send, which would eat the next request. Here the request's
    body is read whole first and werkzeug is given it from memory, its drain an exhausted socket;
    chunked requests are served as werkzeug does (then closed)."""
    left, right = socket.socketpair()
    right.close()  # ``left`` now reads as at its end at once: the drain finds nothing and stops

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
            self.rfile, self.connection, self.keep_alive = io.BytesIO(body), left, True
            try:
                base.run_wsgi(self)
            finally:
                self.rfile, self.connection, self.keep_alive = stream, connection, False

        def send_header(self, keyword: str, value: str) -> None:
            if self.keep_alive and keyword.lower() == "connection" and value.lower() == "close":
                return
            base.send_header(self, keyword, value)

    return KeepAliveHandler


def _item_init(self: Any, hash_key: Any, range_key: Any, attrs: dict[str, Any]) -> None:
    """moto's ``Item.__init__`` with the item's size summed once rather than at each attribute
    (the same sum as ``LimitedSizeDict.__setitem__``, the same limit, the same error)."""
    from moto.dynamodb.exceptions import ItemSizeTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType, LimitedSizeDict
    from moto.dynamodb.models.utilities import bytesize

    self.hash_key, self.range_key = hash_key, range_key
    values = {key: DynamoType(value) for key, value in attrs.items()}
    if sum(bytesize(key) + value.size() for key, value in values.items()) > ITEM_SIZE_LIMIT:
        raise ItemSizeTooLarge
    self.attrs = LimitedSizeDict()
    dict.update(self.attrs, values)  # as LimitedSizeDict's own update: no check per attribute


_applied = False


def apply() -> None:
    """Patch moto in this process (once)."""
    global _applied
    if _applied:
        return
    _applied = True
    from jsonpath_ng import ext as jsonpath_ext
    from moto import backends
    from moto.core import responses as core_responses
    from moto.core.utils import unix_time
    from moto.dynamodb import responses
    from moto.dynamodb.models import dynamo_type
    from moto.moto_server import threaded_moto_server
    from moto.sqs import models as sqs_models
    from moto.sqs import responses as sqs_responses

    # moto's server lists its own package directory (~170 stat calls) for every request, under
    # its global lock; the list does not change while it runs
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules

    lock = threading.RLock()
    call_action = responses.DynamoHandler.call_action

    def locked_call_action(self: Any) -> Any:
        with lock:
            return call_action(self)

    def retained(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())

    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = retained

    # SendMessage reads one attribute through Queue.attributes, which counts every message
    all_attributes = sqs_models.Queue.attributes
    send_message = sqs_models.SQSBackend.send_message

    def attributes(self: Any) -> Any:
        if getattr(_state, "sending", False):
            # the one attribute a send reads, as moto lists it (for FIFO queues only: "true" or "false")
            return (
                {"ContentBasedDeduplication": str(self.content_based_deduplication).lower()} if self.fifo_queue else {}
            )
        return all_attributes.fget(self)

    def sending(self: Any, *args: Any, **kwargs: Any) -> Any:
        _state.sending = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _state.sending = False

    sqs_models.Queue.attributes = property(attributes)

    # Queue.messages reads the clock twice per message; DeleteMessage scans every message twice,
    # building a list of receipt handles for each: O(queue depth) in Python per message deleted
    def visible_messages(self: Any) -> list[Any]:
        now = sqs_models.unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delete_message(self: Any, receipt_handle: str) -> None:
        if receipt_handle in self.deleted_messages:
            return
        for index, message in enumerate(self._messages):  # noqa: B007 - index is used after the loop
            if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                break
        else:
            raise sqs_models.ReceiptHandleIsInvalid()
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)
        self._messages = self._messages[:index] + self._messages[index + 1 :]

    # SQS: moto's queues are not safe for concurrent requests (ReceiveMessage iterates the set of
    # in-flight messages that DeleteMessage changes: "Set changed size during iteration", a 500;
    # two receives can take one message). Its requests are serialised, as DynamoDB's, except
    # while a long poll waits: the lock is let go for the wait and taken back after it.
    sqs_lock = threading.Lock()
    sqs_call_action = sqs_responses.SQSResponse.call_action

    def locked_sqs_call_action(self: Any) -> Any:
        with sqs_lock:
            _state.sqs_locked = True
            try:
                return sqs_call_action(self)
            finally:
                _state.sqs_locked = False

    def wait_for_messages(self: Any, timeout: int) -> None:
        locked = getattr(_state, "sqs_locked", False)
        if locked:
            sqs_lock.release()
        try:
            with self._messages_lock:
                self._messages_lock.wait_for(lambda: self.messages, timeout=min(timeout, LONG_POLL_CHECK))
        finally:
            if locked:
                sqs_lock.acquire()

    sqs_models.Queue.wait_for_messages = wait_for_messages
    sqs_responses.SQSResponse.call_action = locked_sqs_call_action
    sqs_models.Queue.messages = property(visible_messages)
    sqs_models.Queue.delete_message = delete_message
    sqs_models.SQSBackend.send_message = sending

    dynamo_type.Item.__init__ = _item_init  # an item's size summed once, not at every attribute
    # every request lists its handler class's methods (inspect.getmembers) to find the action's
    core_responses.method_names_from_class = lru_cache(maxsize=None)(core_responses.method_names_from_class)
    # EventBridge builds a jsonpath parser (PLY) for each path of each target of each event
    jsonpath_ext.parse = lru_cache(maxsize=256)(jsonpath_ext.parse)
    threaded_moto_server.MotoRequestHandler = _keep_alive_handler(threaded_moto_server.MotoRequestHandler)
    responses.DynamoHandler.call_action = locked_call_action
