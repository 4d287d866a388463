"""Powertools Logger and Metrics shared by every function (service name from the environment)."""

from __future__ import annotations

import threading

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()


_metrics_lock = threading.Lock()


def record_delivery(success: bool, duration_ms: int) -> None:
    """EMF metrics of one delivery attempt (thread-safe: deliveries run concurrently)."""
    with _metrics_lock:
        metrics.add_metric(name="DeliverySucceeded" if success else "DeliveryFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="DeliveryLatency", unit=MetricUnit.Milliseconds, value=duration_ms)
