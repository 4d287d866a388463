"""What every step of the delivery pipeline works with: one context of dependencies."""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from devicehooks.config import Settings
from devicehooks.delivery.sender import Sender
from devicehooks.delivery.tasks import TaskQueue
from devicehooks.domain.decisions import DispatchPolicy
from devicehooks.security.secretbox import SecretCipher
from devicehooks.store.activity import ActivityStore
from devicehooks.store.integrations import IntegrationStore
from devicehooks.timeutil import utcnow

WORKERS = 64  # deliveries (and writes) of an invocation at once


def spread() -> float:
    """A draw in [-1, 1]: how far a retry or a hold is moved within its jitter."""
    return random.uniform(-1.0, 1.0)


@dataclass(frozen=True)
class DispatchContext:
    """The dependencies of delivery, made once per execution environment (a composition root makes
    it). ``threads`` run an invocation's deliveries side by side: one pool per process, since an
    execution environment runs one invocation at a time."""

    integrations: IntegrationStore
    activity: ActivityStore
    cipher: SecretCipher
    sender: Sender
    queue: TaskQueue
    policy: DispatchPolicy
    clock: Callable[[], datetime] = utcnow
    draw: Callable[[], float] = spread  # the spread of retries and holds (tests fix it)
    threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="deliver")
    )


def policy_of(settings: Settings) -> DispatchPolicy:
    """The delivery knobs the settings give."""
    return DispatchPolicy(
        retention=settings.event_retention,
        schedule=settings.retry_schedule,
        disable_after=settings.disable_after,
        delivery_timeout=settings.delivery_timeout,
        lease=settings.delivery_lease,
    )


def from_settings(settings: Settings) -> DispatchContext:
    """The context a function's composition root makes: DynamoDB stores, KMS, the guarded sender,
    the SQS queues (clients and connections are made on first use)."""
    from devicehooks.aws.kms import KmsSecretCipher
    from devicehooks.aws.sqs import SqsTaskQueue
    from devicehooks.delivery.sender import HttpSender
    from devicehooks.security.ssrf import DestinationGuard
    from devicehooks.store.activity import DynamoActivityStore
    from devicehooks.store.integrations import DynamoIntegrationStore

    guard = DestinationGuard(allowed_cidrs=settings.allowed_cidrs)
    return DispatchContext(
        integrations=DynamoIntegrationStore(settings.integrations_table),
        activity=DynamoActivityStore(settings.activity_table),
        cipher=KmsSecretCipher(settings.secrets_key_id),
        sender=HttpSender(guard, timeout=settings.delivery_timeout),
        queue=SqsTaskQueue(settings.retry_queue_url, settings.delivery_dlq_url, settings.dispatch_dlq_url),
        policy=policy_of(settings),
    )
