"""The local stack's DynamoDB stream event source: Lambda's record shape, its filter patterns, and
what a partial batch response or a failed invocation sends again (devicehooks_dev/local/streams.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from devicehooks_dev.local.environments import InvocationError
from devicehooks_dev.local.streams import StreamPoller, StreamSource, matches, record

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
PATTERN = json.loads('{"eventName": ["INSERT", "MODIFY"], "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "E#"}]}}}}')


def raw(sk: str, seq: int, name: str = "MODIFY") -> dict[str, Any]:
    return {
        "eventID": f"e{seq}",
        "eventName": name,
        "dynamodb": {
            "Keys": {"pk": {"S": "T#t"}, "sk": {"S": sk}},
            "NewImage": {"sk": {"S": sk}, "blob": {"B": b"\x00\x01"}},
            "SequenceNumber": str(seq),
            "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
        },
    }


def test_records_are_shaped_as_lambda_gives_them() -> None:
    shaped = record(raw("E#1", 7), StreamSource("F", "S", ARN))
    assert (shaped["eventSource"], shaped["eventSourceARN"], shaped["awsRegion"]) == ("aws:dynamodb", ARN, "us-east-1")
    assert shaped["dynamodb"]["ApproximateCreationDateTime"] == 1767225600
    assert shaped["dynamodb"]["NewImage"]["blob"] == {"B": "AAE="}
    json.dumps(shaped)  # as JSON as Lambda's event


def test_the_templates_filter_keeps_event_items_writes_only() -> None:
    source = StreamSource("F", "S", ARN)
    assert matches(PATTERN, record(raw("E#1", 1), source))
    assert matches(PATTERN, record(raw("E#1", 1, "INSERT"), source))
    assert not matches(PATTERN, record(raw("E#1", 1, "REMOVE"), source))
    assert not matches(PATTERN, record(raw("D#1#h", 1), source))
    assert not matches(PATTERN, record(raw("H#h#2026-01-01T00", 1), source))
    assert matches({"dynamodb": {"NewImage": {"gone": [{"exists": False}]}}}, record(raw("E#1", 1), source))
    with pytest.raises(ValueError, match="not emulated"):
        matches({"eventName": [{"anything-but": "REMOVE"}]}, record(raw("E#1", 1), source))


def test_a_partial_failure_sends_its_record_and_the_rest_again_and_a_crash_is_bisected() -> None:
    batches: list[list[str]] = []
    answers: list[Any] = [{"batchItemFailures": [{"itemIdentifier": "3"}]}, {}]

    def invoke(event: dict[str, Any]) -> Any:
        batches.append([r["dynamodb"]["SequenceNumber"] for r in event["Records"]])
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    source = StreamSource("F", "S", ARN, report_failures=True, bisect=True, max_retries=2)
    poller = StreamPoller(source, invoke, client=lambda: None)
    records = [record(raw(f"E#{n}", n), source) for n in range(1, 5)]
    poller._deliver(records)
    assert batches == [["1", "2", "3", "4"], ["3", "4"]]
    batches.clear()
    answers[:] = [InvocationError("crashed"), {}, {}]
    poller._deliver(records)
    assert batches == [["1", "2", "3", "4"], ["1", "2"], ["3", "4"]]
    batches.clear()
    answers[:] = [{"batchItemFailures": [{"itemIdentifier": "1"}]}] * 3
    poller._deliver(records)  # retried twice, then dropped
    assert len(batches) == 3
