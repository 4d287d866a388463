"""The local stack's moto server takes concurrent SQS requests as SQS does: no request fails and
no message is handed to two receivers while it is in flight (moto 5.2.5 alone raised "Set changed
size during iteration" on a receive while deletes ran, a 500; devicehooks_dev.local.motofixes
serialises its SQS requests but for a long poll's wait).

moto's server in its child process, as ``devicehooks local`` starts it; clients that never retry,
so any 500 shows.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from devicehooks_dev.local import motoserver
from tests.conftest import moto_client

THREADS = 6
IN_FLIGHT = 3000


@pytest.fixture
def sqs() -> Iterator[Any]:
    process, url = motoserver.start()
    client = moto_client("sqs", url, connections=THREADS * 2)
    try:
        yield client
    finally:
        motoserver.stop(process)


def test_concurrent_receives_and_deletes_never_fail_nor_hand_a_message_out_twice(sqs: Any) -> None:
    """Many messages in flight (each receive walks them), deleted by some threads while others
    receive and send: every request answers, and no message is handed out twice while in flight."""
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
