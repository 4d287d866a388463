"""A local stack driven from this process (moto's server, every resource from template.yaml, the
real handlers in execution environments of their own, HTTP on a free port, SQS pollers), with a
short retry schedule so faults play out in seconds."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devicehooks import aws
from devicehooks_dev.local.stack import LocalStack
from tests.conftest import ROOT

# the functions' settings the template declares (a developer's value replaces the template's)
FAST = {
    "DEVICEHOOKS_RETRY_SCHEDULE": "1,1",
    "DEVICEHOOKS_DELIVERY_TIMEOUT": "1",
    "DEVICEHOOKS_DELIVERY_LEASE": "3",
    "DEVICEHOOKS_LOCAL_REDELIVERY_SECONDS": "1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    saved = dict(os.environ)  # the stack points this process's AWS_* at itself: all put back after
    os.environ["DEVICEHOOKS_DEV_KEY_FILE"] = str(tmp_path_factory.mktemp("keys") / "dev.pem")
    os.environ.update(FAST)
    local = LocalStack(root=ROOT, port=0)
    local.access_log = False
    aws.reset_clients()
    local.start()
    yield local
    local.stop()
    os.environ.clear()
    os.environ.update(saved)
    aws.reset_clients()
