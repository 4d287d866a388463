"""Lambda's SQS event source mapping, emulated for the local stack.

One :class:`SqsPoller` per SQS event source of the template. Like Lambda's pollers, it receives a
batch only when it has an execution environment free to run it, and hands each batch to one:

* at most ``max_concurrency`` batches of a source are in flight (received and not yet settled):
  the template's ``ScalingConfig.MaximumConcurrency``, else :data:`UNBOUNDED_CONCURRENCY`;
* while every environment is busy nothing is received: the queue's messages stay visible
  to the next receive rather than being held, invisible, by the poller;
* a batch is what one long-polling ``ReceiveMessage`` returns (at most 10 messages), topped up by
  further receives up to ``BatchSize`` while ``MaximumBatchingWindowInSeconds`` lasts;
* several receivers poll a source side by side while it has a backlog, as Lambda adds pollers to
  a busy source (it starts with five): :data:`RECEIVERS`, at most one per environment; one polls
  all along, the others only while receives come back full. One only when moto runs without the
  local stack's fixes, whose ``ReceiveMessage`` takes no lock (two receivers could be handed the
  same message). Each batch runs in a thread of its own, named after the environment that runs it;
* SQS answers a long poll as soon as a message becomes visible. With the local stack's moto
  fixes (``motofixes``) moto's long poll does too (within 50 ms), and the poller always
  long-polls when it has no backlog. Unfixed moto's long poll wakes only for a new message, not
  for one whose delay or visibility timeout ends; then the poller long-polls only while the queue
  has no delayed and no in-flight messages, and otherwise polls every :data:`SHORT_POLL_PAUSE`
  seconds: a retry task's delay, or a failed record's redelivery delay, ends in a receive within
  that much, as on AWS;
* after the invocation, the records it did not report in ``batchItemFailures`` are deleted; the
  failed ones (the whole batch when the invocation raised) become visible again after
  ``redelivery_seconds`` (on AWS: at the end of the queue's visibility timeout); moto moves
  messages past the queue's ``maxReceiveCount`` to its dead-letter queue.

:meth:`SqsPoller.stop` stops receiving (a batch received meanwhile is made visible again at once),
waits for the batches in flight to finish, and makes visible again the messages of those that
did not finish in time: nothing stays invisible because the stack stopped.
"""

from __future__ import annotations

import base64
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from devicehooks_dev.local import motofixes

# Lambda scales an SQS event source without ScalingConfig.MaximumConcurrency up to 1,250
# concurrent invocations (from 5 concurrent batches at first); locally such a source runs
# Lambda's initial 5, so that one process stays responsive.
UNBOUNDED_CONCURRENCY = 5
RECEIVE_MAX = 10  # SQS ReceiveMessage returns at most 10 messages
LONG_POLL_SECONDS = 1  # short, so that stop() is prompt
SHORT_POLL_PAUSE = 0.05  # between empty short polls, while messages are delayed or in flight
RECEIVERS = 5  # receivers polling a source at once (Lambda's SQS pollers start with five)


@dataclass(frozen=True)
class SqsSource:
    """One SQS event source of a function, as the template declares it."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    report_failures: bool
    name: str = ""  # the event's name in the template (``DeviceEvents``)
    max_concurrency: int = UNBOUNDED_CONCURRENCY
    batching_window: float = 0.0  # MaximumBatchingWindowInSeconds


def record(message: Mapping[str, Any], source: SqsSource) -> dict[str, Any]:
    """The Lambda SQS event record of a received message."""
    attributes = {}
    for name, attr in (message.get("MessageAttributes") or {}).items():
        attributes[name] = {
            "stringValue": attr.get("StringValue"),
            "binaryValue": base64.b64encode(attr["BinaryValue"]).decode() if "BinaryValue" in attr else None,
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": attr.get("DataType", "String"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": source.queue_arn,
        "awsRegion": source.queue_arn.split(":")[3] if source.queue_arn.count(":") >= 3 else "",
    }


class _Batch:
    """Received messages, settled once: by their invocation, or given back by stop()."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.lock = threading.Lock()
        self.done = False


class SqsPoller:
    """Polls one SQS event source into ``invoke``, up to the source's concurrency (see the module)."""

    def __init__(
        self,
        source: SqsSource,
        invoke: Callable[[dict[str, Any]], Any],
        client: Callable[[], Any],
        redelivery_seconds: int,
        receivers: int | None = None,
    ) -> None:
        self.source = source
        self._receiver_count = receivers
        self._invoke = invoke
        self._client = client
        self._redelivery_seconds = redelivery_seconds
        self._long_polls_wake = motofixes.enabled()  # moto's long poll sees delays end (motofixes)
        self._stopping = threading.Event()
        self._backlog = threading.Event()  # a receive came back full: the extra receivers poll too
        self._changed = threading.Condition()
        self._free = list(range(max(1, source.max_concurrency)))  # idle environments, by number
        self._in_flight: dict[int, _Batch] = {}
        self._workers: set[threading.Thread] = set()
        self._receivers: list[threading.Thread] = []
        self.peak = 0  # the most batches in flight at once so far
        self.invocations = 0

    @property
    def in_flight(self) -> int:
        with self._changed:
            return len(self._in_flight)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def label(self) -> str:
        return f"{self.source.function}-{self.source.name or 'sqs'}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        count = min(RECEIVERS, max(1, self.source.max_concurrency)) if motofixes.enabled() else 1
        count = self._receiver_count or count
        self._receivers = [
            threading.Thread(target=self._run, args=(n == 0,), name=f"poll-{self.label}-{n}", daemon=True)
            for n in range(count)
        ]
        for receiver in self._receivers:
            receiver.start()

    def stop(self, grace: float) -> None:
        """Stop receiving; wait up to ``grace`` seconds for the batches in flight; give back the rest."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        for receiver in self._receivers:
            receiver.join(timeout=LONG_POLL_SECONDS + 15)  # a receive in progress, then its give-back
        deadline = time.monotonic() + grace
        with self._changed:
            while self._in_flight and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            unfinished = list(self._in_flight.values())
        for batch in unfinished:
            self._give_back(batch)

    def join(self, timeout: float) -> list[threading.Thread]:
        """Wait up to ``timeout`` seconds for the receiver and the invocations; the threads still running."""
        deadline = time.monotonic() + timeout
        with self._changed:
            threads = [*self._receivers, *self._workers]
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return [t for t in threads if t.is_alive()]

    # ------------------------------------------------------------------ receiving
    def _run(self, first: bool) -> None:
        """One receiver. The ``first`` polls all along; the others only while the queue has a
        backlog (a receive came back full), as Lambda adds pollers to a busy source: idle, they
        would each long-poll moto, whose every wait costs it a check of the queue every 50 ms."""
        receiving = False  # the last receive returned messages
        while not self._stopping.is_set():
            if not first and not receiving and not self._wait_for_backlog():
                return
            environment = self._acquire()
            if environment is None:
                return
            backlog = receiving
            try:
                # after a batch, at once (there may be more); else long only when nothing can surface
                quiet = first and not backlog and (self._long_polls_wake or self._nothing_pending())
                wait = LONG_POLL_SECONDS if quiet else 0
                messages = self._receive(wait)
            except Exception:  # noqa: BLE001 - moto stopping, or a transient error: keep polling
                receiving = False
                self._release(environment)
                if self._stopping.wait(0.2):
                    return
                continue
            receiving = bool(messages)
            if len(messages) >= min(RECEIVE_MAX, self.source.batch_size):
                self._backlog.set()  # more may be waiting: every receiver polls
            if not messages:
                if not first:
                    self._backlog.clear()
                self._release(environment)
                if first and not wait and not backlog and self._stopping.wait(SHORT_POLL_PAUSE):
                    return
                continue
            batch = _Batch(messages)
            if self._stopping.is_set():  # received while stopping: visible again at once, not run
                self._give_back(batch)
                self._release(environment)
                return
            worker = threading.Thread(
                target=self._work, args=(environment, batch), name=f"{self.label}-env-{environment}", daemon=True
            )
            with self._changed:
                self._in_flight[environment] = batch
                self._workers = {t for t in self._workers if t.is_alive()}
                self._workers.add(worker)
                self.peak = max(self.peak, len(self._in_flight))
                self.invocations += 1
            worker.start()

    def _wait_for_backlog(self) -> bool:
        """Wait until a receive finds the queue busy; False once stopping."""
        while not self._backlog.wait(0.5):
            if self._stopping.is_set():
                return False
        return not self._stopping.is_set()

    def _acquire(self) -> int | None:
        """A free environment, waiting for one; None once stopping."""
        with self._changed:
            while not self._free:
                if self._stopping.is_set():
                    return None
                self._changed.wait(0.5)
            if self._stopping.is_set():
                return None
            return self._free.pop(0)

    def _release(self, environment: int) -> None:
        with self._changed:
            self._in_flight.pop(environment, None)
            self._free.append(environment)
            self._changed.notify_all()

    def _nothing_pending(self) -> bool:
        """No message of the queue is delayed or in flight: only a new one can arrive (moto's long poll sees those)."""
        attributes = self._client().get_queue_attributes(
            QueueUrl=self.source.queue_url,
            AttributeNames=["ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return all(
            int(attributes.get(name, 0)) == 0
            for name in ("ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible")
        )

    def _receive(self, wait: int) -> list[dict[str, Any]]:
        """One batch: a receive, topped up to the batch size while the batching window lasts."""
        source = self.source
        messages = self._receive_once(min(RECEIVE_MAX, source.batch_size), wait)
        if not messages or source.batching_window <= 0:
            return messages
        deadline = time.monotonic() + source.batching_window
        while len(messages) < source.batch_size and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait = LONG_POLL_SECONDS if left >= LONG_POLL_SECONDS else 0
            more = self._receive_once(min(RECEIVE_MAX, source.batch_size - len(messages)), wait)
            messages += more
            if not more and not wait:
                time.sleep(min(left, 0.05))
        return messages

    def _receive_once(self, count: int, wait: int) -> list[dict[str, Any]]:
        out = self._client().receive_message(
            QueueUrl=self.source.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(out.get("Messages", []))

    # ------------------------------------------------------------------ invoking
    def _work(self, environment: int, batch: _Batch) -> None:
        try:
            messages = batch.messages
            failed = {m["MessageId"] for m in messages}
            try:
                result = self._invoke({"Records": [record(m, self.source) for m in messages]})
                if self.source.report_failures and isinstance(result, dict):
                    failed = {str(f["itemIdentifier"]) for f in result.get("batchItemFailures") or []}
                else:
                    failed = set()
            except Exception:  # noqa: BLE001 - a crashed invocation returns the whole batch, as Lambda does
                traceback.print_exc()
            self._settle(batch, failed)
        finally:
            self._release(environment)

    def _settle(self, batch: _Batch, failed: set[str]) -> None:
        """Delete what succeeded; failed records come back after the redelivery delay."""
        with batch.lock:
            if batch.done:  # given back by stop() while the invocation ran
                return
            batch.done = True
            try:
                sqs = self._client()
                done = [m for m in batch.messages if m["MessageId"] not in failed]
                for start in range(0, len(done), RECEIVE_MAX):
                    entries = [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + RECEIVE_MAX])
                    ]
                    sqs.delete_message_batch(QueueUrl=self.source.queue_url, Entries=entries)
                for m in batch.messages:
                    if m["MessageId"] in failed:
                        # Lambda leaves failed records until the visibility timeout; locally a short wait
                        sqs.change_message_visibility(
                            QueueUrl=self.source.queue_url,
                            ReceiptHandle=m["ReceiptHandle"],
                            VisibilityTimeout=self._redelivery_seconds,
                        )
            except Exception:  # noqa: BLE001 - the messages come back after the visibility timeout
                if not self._stopping.is_set():
                    traceback.print_exc()

    def _give_back(self, batch: _Batch) -> None:
        """Make a batch's messages visible again now (its invocation, if any, is no longer settled)."""
        with batch.lock:
            if batch.done:
                return
            batch.done = True
            try:
                sqs = self._client()
                for start in range(0, len(batch.messages), RECEIVE_MAX):
                    entries = [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(batch.messages[start : start + RECEIVE_MAX])
                    ]
                    sqs.change_message_visibility_batch(QueueUrl=self.source.queue_url, Entries=entries)
            except Exception as exc:  # noqa: BLE001 - they come back after the visibility timeout
                print(f"{self.label}: could not give back {len(batch.messages)} messages: {exc}", file=sys.stderr)
