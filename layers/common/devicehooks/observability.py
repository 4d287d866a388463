"""Powertools Logger, Metrics and Tracer shared by every function (service name from the environment).

Tracing (X-Ray, template.yaml's ``Tracing`` parameter): every function's handler is a subsegment
(``tracer.capture_lambda_handler``), the AWS calls are subsegments of their own (botocore is patched
by :mod:`devicehooks.aws`, the one module that makes clients), and a device event's id is the
annotation ``event_id`` wherever it goes: the internal API that put it on the bus, the intake that
forwarded it, the dispatcher's record and each POST of it (:func:`traced`, :func:`trace_events`).
X-Ray links neither the HTTP API nor the queues into one trace, so ``annotation.event_id = "<id>"``
is what finds an event's traces from the API call to the receiver's POST. With tracing disabled
(``POWERTOOLS_TRACE_DISABLED``, or outside Lambda: the tests) every one of these is a no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from numbers import Number

    from aws_lambda_powertools.tracing.base import BaseSegment

logger = Logger()
metrics = Metrics()
# Nothing patched here: httplib's patch would add X-Amzn-Trace-Id to every webhook POST (a header
# the receivers have no use for) and to useradm's requests; botocore is patched where clients are made.
tracer = Tracer(auto_patch=False)

# The dispatcher's EMF metrics, in the namespace POWERTOOLS_METRICS_NAMESPACE with the dimension
# service = POWERTOOLS_SERVICE_NAME (template.yaml, Globals); the dashboard graphs them by these
# names (template.yaml, OperationsDashboard; tests/template check that it does).
DELIVERY_SUCCEEDED = "DeliverySucceeded"  # count: an attempt the receiver answered with a 2xx
DELIVERY_FAILED = "DeliveryFailed"  # count: an attempt without a 2xx (timeout, no connection, non-2xx)
DELIVERY_LATENCY = "DeliveryLatency"  # milliseconds: one attempt (either kind), DNS to response
DELIVERY_METRICS = (DELIVERY_SUCCEEDED, DELIVERY_FAILED, DELIVERY_LATENCY)


_metrics_lock = threading.Lock()


def record_delivery(success: bool, duration_ms: int) -> None:
    """EMF metrics of one delivery attempt (thread-safe: deliveries run concurrently)."""
    with _metrics_lock:
        metrics.add_metric(name=DELIVERY_SUCCEEDED if success else DELIVERY_FAILED, unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=DELIVERY_LATENCY, unit=MetricUnit.Milliseconds, value=duration_ms)


Annotation = str | int | bool


def _annotate(subsegment: BaseSegment, annotations: dict[str, Annotation]) -> None:
    for key, value in annotations.items():
        # Powertools types the value as numbers.Number, an ABC that int is registered with at run
        # time but not for mypy
        subsegment.put_annotation(key=key, value=cast("Number", value) if isinstance(value, int) else value)


@contextmanager
def traced(name: str, **annotations: Annotation) -> Iterator[BaseSegment | None]:
    """A subsegment ``name`` with ``annotations`` around the block (``None`` when tracing is disabled:
    then it costs one attribute read). Safe in any thread: in Lambda, X-Ray gives each thread the
    invocation's segment, and a closed subsegment is sent at once (Powertools streams them)."""
    if tracer.disabled:
        yield None
        return
    with tracer.provider.in_subsegment(name=name) as subsegment:
        _annotate(subsegment, annotations)
        yield subsegment


def annotate(subsegment: BaseSegment | None, **annotations: Annotation) -> None:
    """Add ``annotations`` to a subsegment of :func:`traced` (nothing when tracing is disabled)."""
    if subsegment is not None:
        _annotate(subsegment, annotations)


def trace_events(event_ids: Iterable[str]) -> None:
    """Mark each device event this invocation handled (put on the bus, forwarded) with a
    ``device event`` subsegment annotated ``event_id``: one per event, since an annotation holds one
    value and a request may carry a hundred events."""
    if tracer.disabled:
        return
    for event_id in event_ids:
        with traced("device event", event_id=event_id):
            pass
