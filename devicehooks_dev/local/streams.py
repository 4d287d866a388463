"""Lambda's DynamoDB stream event source mapping, emulated for the local stack.

One :class:`StreamPoller` per ``DynamoDB`` event of the template. It reads the table's stream from
moto's server (``dynamodbstreams``: ``DescribeStream``, ``GetShardIterator``, ``GetRecords``), as
Lambda's poller does, and hands each batch to an execution environment of its function:

* each shard is read in order, one batch in flight per shard (moto's stream has one shard, so one
  invocation at a time, as on AWS with a ``ParallelizationFactor`` of 1 per shard);
* the shard is polled every :data:`POLL_SECONDS` (Lambda: about four times a second); a batch is
  up to ``BatchSize`` records, gathered while ``MaximumBatchingWindowInSeconds`` lasts from its
  first record;
* each record is shaped as Lambda gives it: ``eventID``, ``eventName``, ``eventSource``,
  ``eventSourceARN`` (the stream's), ``awsRegion``, and ``dynamodb`` with ``Keys``, ``NewImage``,
  ``OldImage``, ``SequenceNumber``, ``SizeBytes``, ``StreamViewType`` and
  ``ApproximateCreationDateTime`` in epoch seconds (binary values in base64, as in JSON);
* ``FilterCriteria``: a record that matches none of the patterns is dropped before any batch (the
  patterns' exact values, ``prefix`` and ``exists``; not the numeric and ``anything-but`` rules);
* ``ReportBatchItemFailures``: the record the answer names and every one after it are sent again;
  an invocation that fails is sent again, halved first with ``BisectBatchOnFunctionError``; a
  batch is dropped (a line on standard error) after ``MaximumRetryAttempts`` retries.

Not emulated: ``MaximumRecordAgeInSeconds`` (nothing is old on a local stack), shards that split
or close (moto's stream has one), an on-failure destination, the stream's 24-hour retention
(moto keeps every record in memory while the stack runs).
"""

from __future__ import annotations

import base64
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from devicehooks_dev.local.environments import InvocationError

POLL_SECONDS = 0.25  # Lambda polls a stream's shard about four times a second
RETRY_PAUSE = 0.2  # before a batch (or its rest) is sent again


@dataclass(frozen=True)
class StreamSource:
    """One DynamoDB stream event source of a function, as the template declares it."""

    function: str
    name: str
    stream_arn: str
    batch_size: int = 100
    batching_window: float = 0.0  # MaximumBatchingWindowInSeconds
    report_failures: bool = False
    starting_position: str = "TRIM_HORIZON"
    max_retries: int = -1  # MaximumRetryAttempts (-1: until the records expire)
    bisect: bool = False  # BisectBatchOnFunctionError
    filters: tuple[Mapping[str, Any], ...] = ()  # FilterCriteria's patterns (none: every record)


def matches(pattern: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` (a record, or a part of it) matches an event filtering ``pattern``: each key
    of the pattern must match (a nested pattern, or a list of which one value or rule holds)."""
    if not isinstance(value, Mapping):
        return False
    for key, wanted in pattern.items():
        if isinstance(wanted, Mapping):
            if not matches(wanted, value.get(key)):
                return False
        elif not any(_rule(rule, key in value, value.get(key)) for rule in wanted):
            return False
    return True


def _rule(rule: Any, present: bool, value: Any) -> bool:
    if isinstance(rule, Mapping):
        if "prefix" in rule:
            return isinstance(value, str) and value.startswith(rule["prefix"])
        if "exists" in rule:
            return present is bool(rule["exists"])
        raise ValueError(f"filter rule not emulated locally: {rule}")
    return present and value == rule


def _plain(value: Any) -> Any:
    """An attribute value as Lambda's JSON event has it (botocore hands binary values as bytes)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    return value


def record(raw: Mapping[str, Any], source: StreamSource) -> dict[str, Any]:
    """The Lambda event record of a ``GetRecords`` record."""
    dynamodb = dict(raw.get("dynamodb") or {})
    created = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": raw.get("eventID"),
        "eventName": raw.get("eventName"),
        "eventVersion": raw.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": source.stream_arn.split(":")[3] if source.stream_arn.count(":") >= 3 else "",
        "dynamodb": _plain(dynamodb),
        "eventSourceARN": source.stream_arn,
    }


class StreamPoller:
    """Polls one DynamoDB stream event source into ``invoke`` (see the module)."""

    def __init__(
        self, source: StreamSource, invoke: Callable[[dict[str, Any]], Any], client: Callable[[], Any]
    ) -> None:
        self.source = source
        self._invoke = invoke
        self._client = client
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = threading.Lock()  # held while a batch is in flight

    @property
    def label(self) -> str:
        return f"{self.source.function}.{self.source.name}"

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name=f"stream-{self.label}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, grace: float) -> None:
        """Stop polling; the batch in flight finishes (for up to ``grace`` seconds)."""
        self._stop.set()
        if self._busy.acquire(timeout=grace):
            self._busy.release()

    def join(self, timeout: float) -> list[threading.Thread]:
        """Wait for the poller to end; the threads still running."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t for t in self._threads if t.is_alive()]

    # ------------------------------------------------------------------ polling
    def _run(self) -> None:
        try:
            client = self._client()
            shard = client.describe_stream(StreamArn=self.source.stream_arn)["StreamDescription"]["Shards"][0]
            iterator = client.get_shard_iterator(
                StreamArn=self.source.stream_arn,
                ShardId=shard["ShardId"],
                ShardIteratorType=self.source.starting_position,
            )["ShardIterator"]
            batch: list[dict[str, Any]] = []
            first_at = 0.0
            while not self._stop.is_set():
                room = self.source.batch_size - len(batch)
                out = client.get_records(ShardIterator=iterator, Limit=room)
                iterator = out["NextShardIterator"]
                shaped = [record(r, self.source) for r in out["Records"]]
                kept = [r for r in shaped if not self.source.filters or any(matches(f, r) for f in self.source.filters)]
                if kept and not batch:
                    first_at = time.monotonic()
                batch += kept
                full = len(batch) >= self.source.batch_size
                if batch and (full or time.monotonic() - first_at >= self.source.batching_window):
                    with self._busy:
                        self._deliver(batch)
                    batch = []
                if not full:  # as Lambda: a few polls a second, not one after another (each takes moto's turn)
                    self._stop.wait(POLL_SECONDS)
        except Exception:  # noqa: BLE001 - the stack keeps serving; the poller's end is reported
            if not self._stop.is_set():
                print(f"devicehooks local: stream poller {self.label} stopped:", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)

    def _deliver(self, batch: list[dict[str, Any]], retries: int = 0) -> None:
        """Invoke with ``batch`` until it succeeds, is bisected, or runs out of retries."""
        while batch:
            try:
                answer = self._invoke({"Records": batch})
            except InvocationError:
                if self.source.bisect and len(batch) > 1:
                    if not self._retry(batch, retries):
                        return
                    half = len(batch) // 2
                    self._deliver(batch[:half], retries + 1)
                    self._deliver(batch[half:], retries + 1)
                    return
                rest = 0
            else:
                failed = self._failed_from(batch, answer)
                if failed is None:
                    return
                rest = failed
            if not self._retry(batch, retries):
                return
            retries += 1
            batch = batch[rest:]
            self._stop.wait(RETRY_PAUSE)

    def _retry(self, batch: list[dict[str, Any]], retries: int) -> bool:
        """Whether ``batch`` may be sent again (not when its retries are used up, or the stack stops)."""
        if self._stop.is_set():
            return False
        if 0 <= self.source.max_retries <= retries:
            first, last = batch[0]["dynamodb"]["SequenceNumber"], batch[-1]["dynamodb"]["SequenceNumber"]
            print(
                f"devicehooks local: {self.label}: records {first}..{last} dropped after {retries} retries",
                file=sys.stderr,
                flush=True,
            )
            return False
        return True

    def _failed_from(self, batch: list[dict[str, Any]], answer: Any) -> int | None:
        """The index of the first record to send again (``None``: none), from a partial batch response."""
        if not self.source.report_failures or not isinstance(answer, Mapping):
            return None
        failed = [f.get("itemIdentifier") for f in answer.get("batchItemFailures") or [] if isinstance(f, Mapping)]
        if not failed:
            return None
        sequences = [r["dynamodb"]["SequenceNumber"] for r in batch]
        known = [sequences.index(s) for s in failed if s in sequences]
        return min(known) if known else 0  # an unknown identifier fails the whole batch, as on AWS
