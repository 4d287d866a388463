"""moto's SQS and the local stack's fixes to it (devicehooks_dev.local.motofixes).

``sqs-lock``: moto answers SQS requests on several threads with no lock; the tests hold moto's
thread at the racy point while another request runs (moto's server in this process), and load
moto's server in its child process, as ``devicehooks local`` starts it, with concurrent receives,
deletes and sends (clients that never retry, so any 500 shows). ``sqs-long-poll-check``: a long
poll on moto's backend against a clock the test moves. The four costs that grow with the queue
are counted on moto's backend (clock reads, lists of receipt handles), and the fixed backend
answers a run of calls as moto does.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devicehooks_dev.local import motofixes, motoserver
from tests.conftest import moto_client
from tests.integration.mototools import (
    ACCOUNT,
    HELD_BACK,
    REGION,
    RUNS_AT_ONCE,
    Pause,
    counting,
    moto_in_process,
    paused,
    pinned,
    replaced,
    still_needed,
)

THREADS = 6
IN_FLIGHT = 3000


def backend() -> Any:
    """An SQS backend of moto's, of this test's own."""
    from moto.sqs.models import SQSBackend

    return SQSBackend(REGION, ACCOUNT)


def answer(call: Callable[[], object]) -> object:
    """What a call returned, or the error it raised."""
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - the error is the answer compared
        return f"{type(error).__name__}: {error}"


# --- sqs-lock -------------------------------------------------------------------------------


def receives_of_one_message(url: str, wait: float) -> dict[str, list[str]]:
    """Two receives on a queue of one message, the second made while moto holds the first between
    reading the message as visible and marking it received: what each got."""
    from moto.sqs.models import Message

    first, second = moto_client("sqs", url), moto_client("sqs", url)
    queue = first.create_queue(QueueName="one", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    first.send_message(QueueUrl=queue, MessageBody="m")
    got: dict[str, list[str]] = {}

    def receive(client: Any, who: str) -> None:
        got[who] = [m["Body"] for m in client.receive_message(QueueUrl=queue).get("Messages", [])]

    pause = Pause(lambda: receive(second, "second"), wait)
    with paused(Message, "mark_received", pause):
        receive(first, "first")
    pause.join()
    return got


def test_moto_hands_one_message_to_two_receives() -> None:
    with motofixes.using(), moto_in_process() as url:
        got = receives_of_one_message(url, RUNS_AT_ONCE)
    still_needed("sqs-lock", got == {"first": ["m"], "second": ["m"]}, f"received: {got}")


@pinned
def test_with_the_lock_a_message_is_handed_to_one_receive() -> None:
    with motofixes.using("sqs-lock"), moto_in_process() as url:
        assert receives_of_one_message(url, HELD_BACK) == {"first": ["m"], "second": []}


class PausingSet(set[Any]):
    """A set whose iteration reaches ``pause`` after its first element."""

    pause: Pause

    def __iter__(self) -> Iterator[Any]:
        for n, item in enumerate(set.__iter__(self)):
            yield item
            if n == 0:
                self.pause.at()


def receive_while_a_delete_changes_the_in_flight_set(url: str, wait: float) -> dict[str, int]:
    """A receive held while it iterates the queue's in-flight messages, a delete of one of them made
    meanwhile: the HTTP status each was answered with."""
    from moto.sqs.models import sqs_backends

    first, second = moto_client("sqs", url), moto_client("sqs", url)
    queue = first.create_queue(QueueName="in-flight", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    for body in ("a", "b", "c"):
        first.send_message(QueueUrl=queue, MessageBody=body)
    handles = [m["ReceiptHandle"] for m in first.receive_message(QueueUrl=queue, MaxNumberOfMessages=2)["Messages"]]
    assert len(handles) == 2
    statuses: dict[str, int] = {}

    def call(who: str, request: Callable[[], Any]) -> None:
        try:
            statuses[who] = request()["ResponseMetadata"]["HTTPStatusCode"]
        except ClientError as error:
            statuses[who] = error.response["ResponseMetadata"]["HTTPStatusCode"]

    pause = Pause(lambda: call("delete", lambda: second.delete_message(QueueUrl=queue, ReceiptHandle=handles[0])), wait)
    in_flight = sqs_backends[ACCOUNT][REGION].get_queue("in-flight")
    pausing = PausingSet(in_flight._pending_messages)
    pausing.pause = pause
    # receive_message starts with the groups of the messages in flight (Queue.pending_message_groups)
    with replaced(in_flight, "_pending_messages", pausing):
        call("receive", lambda: first.receive_message(QueueUrl=queue))
    pause.join()
    return statuses


def test_moto_fails_a_receive_while_a_delete_changes_the_in_flight_set() -> None:
    with motofixes.using(), moto_in_process() as url:
        statuses = receive_while_a_delete_changes_the_in_flight_set(url, RUNS_AT_ONCE)
    still_needed("sqs-lock", statuses == {"receive": 500, "delete": 200}, f"answered: {statuses}")


@pinned
def test_with_the_lock_a_receive_and_a_delete_at_once_both_succeed() -> None:
    with motofixes.using("sqs-lock"), moto_in_process() as url:
        assert receive_while_a_delete_changes_the_in_flight_set(url, HELD_BACK) == {"receive": 200, "delete": 200}


@pinned
def test_with_the_lock_a_message_sent_during_a_long_poll_is_sent_and_received() -> None:
    """The lock is let go while a long poll waits: a send made meanwhile is answered, and the
    waiting poll gets its message (were the lock held, the send would wait for the poll's end)."""
    from moto.sqs.models import Queue

    with motofixes.using("sqs-lock"), moto_in_process() as url:
        poller, sender = moto_client("sqs", url), moto_client("sqs", url)
        queue = poller.create_queue(QueueName="long-poll")["QueueUrl"]
        waiting = threading.Event()
        got: list[str] = []
        wait_for_messages = Queue.wait_for_messages

        def signalling_wait(self: Any, timeout: int) -> None:
            waiting.set()
            wait_for_messages(self, timeout)

        def poll() -> None:
            messages = poller.receive_message(QueueUrl=queue, WaitTimeSeconds=10).get("Messages", [])
            got.extend(m["Body"] for m in messages)

        with replaced(Queue, "wait_for_messages", signalling_wait):
            polling = threading.Thread(target=poll)
            polling.start()
            assert waiting.wait(RUNS_AT_ONCE)
            sender.send_message(QueueUrl=queue, MessageBody="during the poll")
            polling.join(RUNS_AT_ONCE)
    assert got == ["during the poll"]


@pytest.fixture
def sqs() -> Iterator[Any]:
    process, url = motoserver.start()
    client = moto_client("sqs", url, connections=THREADS * 2)
    try:
        yield client
    finally:
        motoserver.stop(process)


def test_concurrent_receives_and_deletes_never_fail_nor_hand_a_message_out_twice(sqs: Any) -> None:
    """moto's server as the stack runs it (every fix): many messages in flight (each receive walks
    them), deleted by some threads while others receive and send: every request answers, and no
    message is handed out twice while in flight."""
    url = sqs.create_queue(QueueName="motofix-sqs", Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    in_flight: list[str] = []
    for start in range(0, IN_FLIGHT, 10):
        sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"old-{start + i}"} for i in range(10)]
        )
    while len(in_flight) < IN_FLIGHT:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        in_flight += [m["ReceiptHandle"] for m in got]
    errors: list[BaseException] = []
    received: Counter[str] = Counter()
    lock = threading.Lock()

    def deleter() -> None:
        while True:
            with lock:
                handles, in_flight[:10] = in_flight[:10], []
            if not handles:
                return
            try:
                sqs.delete_message_batch(
                    QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
                )
            except BaseException as exc:  # noqa: BLE001 - every failure is reported by the test
                errors.append(exc)
                return

    def receiver(n: int) -> None:
        sequence = 0
        try:
            while True:
                with lock:
                    if not in_flight:
                        return
                sqs.send_message(QueueUrl=url, MessageBody=f"new-{n}-{sequence}")
                sequence += 1
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                with lock:
                    received.update(m["Body"] for m in got)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=deleter) for _ in range(THREADS)]
    threads += [threading.Thread(target=receiver, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sum(received.values()) > 0 and not any(body.startswith("old-") for body in received)
    assert [body for body, count in received.items() if count > 1] == []  # none handed out twice in flight


# --- sqs-long-poll-check --------------------------------------------------------------------


class Clock:
    """moto's SQS clock, moved by the test (seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def unix_time(self, dt: object = None) -> float:
        return self.now

    def unix_time_millis(self, dt: object = None) -> float:
        return self.now * 1000


class ClockCondition:
    """A queue's condition (``Queue._messages_lock``) whose wait moves the clock by its timeout."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def __enter__(self) -> ClockCondition:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def notify_all(self) -> None:
        return None

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        if not predicate():
            self.clock.now += timeout
        return predicate()


def long_poll_lateness() -> float:
    """A long poll that starts half a second before a delayed message becomes visible: seconds
    from the message's becoming visible to the poll handing it out."""
    from moto.sqs import models

    clock = Clock(1_000_000.0)
    with replaced(models, "unix_time", clock.unix_time), replaced(models, "unix_time_millis", clock.unix_time_millis):
        sqs = backend()
        queue = sqs.create_queue("delayed")
        sqs.send_message("delayed", "m", delay_seconds=1)
        visible_at = clock.now + 1
        clock.now += 0.5
        with replaced(queue, "_messages_lock", ClockCondition(clock)):
            got = sqs.receive_message("delayed", 1, 5, 30)
        assert [m.body for m in got] == ["m"]
        return clock.now - visible_at


def test_moto_hands_a_message_out_up_to_a_second_after_its_delay_ends() -> None:
    with motofixes.using():
        late = long_poll_lateness()
    still_needed("sqs-long-poll-check", late > motofixes.LONG_POLL_CHECK, f"handed out {late:.3f} s late")


@pinned
def test_with_the_fix_a_long_poll_hands_a_message_out_soon_after_its_delay_ends() -> None:
    with motofixes.using("sqs-long-poll-check"):
        assert long_poll_lateness() <= motofixes.LONG_POLL_CHECK + 1e-6


# --- the four costs that grow with the queue ------------------------------------------------


def queue_of(depth: int) -> tuple[Any, Any]:
    """A backend and its queue "q" of ``depth`` messages, the first half of them in flight."""
    sqs = backend()
    queue = sqs.create_queue("q", VisibilityTimeout="300")
    for n in range(depth):
        sqs.send_message("q", f"m{n}")
    for message in queue._messages[: depth // 2]:
        message.mark_received(visibility_timeout=300)
        queue.pending_messages.add(message)
    return sqs, queue


def clock_reads(action: Callable[[Any, Any], object]) -> Callable[[int], int]:
    """How many times ``action`` reads moto's SQS clock, on a queue of a given depth."""
    from moto.sqs import models

    def reads(depth: int) -> int:
        sqs, queue = queue_of(depth)
        with counting(models, "unix_time") as seconds, counting(models, "unix_time_millis") as millis:
            action(sqs, queue)
        return seconds.calls + millis.calls

    return reads


def receipt_handle_lists(depth: int) -> int:
    """How many lists of a message's receipt handles a delete of the first message in flight builds."""
    from moto.sqs.models import Message

    sqs, queue = queue_of(depth)
    with counting(Message, "all_receipt_handles") as lists:
        sqs.delete_message("q", queue._messages[0].receipt_handle)
    return lists.calls


COSTS: dict[str, tuple[str, Callable[[int], int]]] = {
    "sqs-send-attributes": ("clock reads per send", clock_reads(lambda sqs, queue: sqs.send_message("q", "new"))),
    "sqs-retention": (
        "clock reads per retention check",
        clock_reads(lambda sqs, queue: sqs.is_message_valid_based_on_retention_period("q", queue._messages[-1])),
    ),
    "sqs-visible-messages": (
        "clock reads per list of visible messages",
        clock_reads(lambda sqs, queue: queue.messages),
    ),
    "sqs-delete-message": ("lists of receipt handles per delete", receipt_handle_lists),
}
DEPTHS = (50, 100)


@pytest.mark.parametrize("fix", COSTS)
def test_moto_works_per_message_of_the_queue(fix: str) -> None:
    what, cost = COSTS[fix]
    with motofixes.using():
        costs = [cost(depth) for depth in DEPTHS]
    still_needed(fix, costs[1] > costs[0], f"{what} at depths {DEPTHS}: {costs}")


@pinned
@pytest.mark.parametrize("fix", COSTS)
def test_with_the_fix_the_work_does_not_grow_with_the_queue(fix: str) -> None:
    _, cost = COSTS[fix]
    with motofixes.using(fix):
        costs = [cost(depth) for depth in DEPTHS]
    assert costs[0] == costs[1] <= 2, costs


def transcript() -> list[object]:
    """moto's SQS backend's answers to a run of calls: sends to a standard queue (one delayed) and
    to FIFO queues, receives, deletes, a retention period that ends, and the queues' attributes."""
    sqs = backend()
    out: list[object] = []
    sqs.create_queue("std", VisibilityTimeout="300")
    sqs.create_queue("fifo.fifo", FifoQueue="true")
    sqs.create_queue("dedup.fifo", FifoQueue="true", ContentBasedDeduplication="true")
    sqs.create_queue("short", MessageRetentionPeriod="60")
    for body, delay in (("a", 0), ("b", 300), ("c", 0), ("d", 0)):
        out.append(answer(lambda: sqs.send_message("std", body, delay_seconds=delay).body_md5))  # noqa: B023
    out.append(answer(lambda: sqs.send_message("fifo.fifo", "f", group_id="g")))  # no deduplication id: refused
    out.append(answer(lambda: sqs.send_message("fifo.fifo", "f", group_id="g", deduplication_id="d1").deduplication_id))
    out.append(answer(lambda: sqs.send_message("dedup.fifo", "f", group_id="g").deduplication_id))
    out.append(answer(lambda: sqs.send_message("dedup.fifo", "x", group_id="g", delay_seconds=5)))  # refused
    out.append(answer(lambda: sqs.send_message("dedup.fifo", "f", group_id="g").deduplication_id))  # a duplicate
    received = sqs.receive_message("std", 2, 0, 300)
    out.append([m.body for m in received])
    out.append([m.body for m in sqs.receive_message("std", 10, 0, 300)])
    out.append([m.body for m in sqs.receive_message("std", 10, 0, 300)])  # all in flight or delayed
    sqs.change_message_visibility("std", received[1].receipt_handle, 0)
    again = sqs.receive_message("std", 10, 0, 300)
    out.append([m.body for m in again])
    out.append(answer(lambda: sqs.delete_message("std", received[0].receipt_handle)))
    out.append(answer(lambda: sqs.delete_message("std", received[0].receipt_handle)))  # again
    out.append(answer(lambda: sqs.delete_message("std", received[1].receipt_handle)))  # an older handle
    out.append(answer(lambda: sqs.delete_message("std", "not-a-handle")))
    out.append([m.body for m in sqs.get_queue("std")._messages])
    sqs.send_message("short", "expired")
    sqs.get_queue("short")._messages[0].sent_timestamp -= 61_000
    sqs.send_message("short", "kept")
    out.append([m.body for m in sqs.receive_message("short", 10, 0, 30)])
    for name in ("std", "fifo.fifo", "dedup.fifo", "short"):
        attributes = sqs.get_queue_attributes(name, ["All"])
        out.append({k: v for k, v in attributes.items() if not k.endswith("Timestamp")})
    return out


@pinned
@pytest.mark.parametrize("fixes", [(fix,) for fix in COSTS] + [tuple(COSTS)], ids=[*COSTS, "all four"])
def test_with_the_fixes_moto_answers_as_it_does(fixes: tuple[str, ...]) -> None:
    with motofixes.using():
        as_moto = transcript()
    with motofixes.using(*fixes):
        assert transcript() == as_moto


def receipt_draws() -> int:
    """How many ``random.choice`` draws a receive of one message makes."""
    from moto.moto_api._internal import mock_random

    sqs, _ = queue_of(1)
    with counting(mock_random, "choice") as draws:
        sqs.receive_message("q", 1, 0, 300)
    return draws.calls


def test_moto_draws_a_receipt_handle_one_letter_at_a_time() -> None:
    with motofixes.using():
        draws = receipt_draws()
    still_needed("sqs-receipt-handle", draws >= 100, f"{draws} random.choice calls for one message received")


@pinned
def test_with_the_fix_a_receipt_handle_is_drawn_at_once() -> None:
    with motofixes.using("sqs-receipt-handle"):
        assert receipt_draws() == 0
        sqs, _ = queue_of(6)  # three of its six in flight already
        handles = [m.receipt_handle for m in sqs.receive_message("q", 3, 0, 300)]
    assert len(handles) == 3
    assert len(set(handles)) == 3 and all(len(h) == 185 and h.isalpha() and h.islower() for h in handles)
