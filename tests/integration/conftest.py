"""An in-process local stack (moto's server, every resource from template.yaml, the real handlers,
HTTP on a free port, SQS pollers), with a short retry schedule so faults play out in seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devicehooks import aws
from devicehooks.api import management
from devicehooks.config import get_settings
from devicehooks.handlers import dispatcher as worker
from devicehooks_dev.local.stack import LocalStack
from tests.conftest import ROOT

FAST = {
    "DEVICEHOOKS_RETRY_SCHEDULE": "1,1",
    "DEVICEHOOKS_DELIVERY_TIMEOUT": "1",
    "DEVICEHOOKS_DELIVERY_LEASE": "3",
    "DEVICEHOOKS_LOCAL_REDELIVERY_SECONDS": "1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def _clear_caches() -> None:
    aws.reset_clients()
    get_settings.cache_clear()
    for cached in (
        management.integration_service,
        management.event_service,
        management.delivery_service,
        worker.dispatcher,
    ):
        cached.cache_clear()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    saved = dict(os.environ)  # the stack points AWS_* and DEVICEHOOKS_* at itself: all put back after
    os.environ["DEVICEHOOKS_DEV_KEY_FILE"] = str(tmp_path_factory.mktemp("keys") / "dev.pem")
    os.environ.update(FAST)
    local = LocalStack(root=ROOT, port=0)
    local.access_log = False
    _clear_caches()
    local.start()
    yield local
    local.stop()
    os.environ.clear()
    os.environ.update(saved)
    _clear_caches()
