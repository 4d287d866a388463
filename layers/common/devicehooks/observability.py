"""Powertools Logger and Metrics shared by every function (service name from the environment)."""

from __future__ import annotations

import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()

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
