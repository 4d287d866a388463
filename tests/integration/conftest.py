"""moto's server with every resource created from template.yaml, and the real handlers loaded."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devicehooks import aws
from devicehooks.api import management
from devicehooks.config import get_settings
from devicehooks.local.stack import LocalStack
from tests.conftest import ROOT


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    import os

    os.environ["DEVICEHOOKS_DEV_KEY_FILE"] = str(tmp_path_factory.mktemp("keys") / "dev.pem")
    local = LocalStack(root=ROOT, port=0)
    local.start(serve_http=False, poll=False)
    management.integration_service.cache_clear()
    management.event_service.cache_clear()
    yield local
    local.stop()
    aws.reset_clients()
    get_settings.cache_clear()
    management.integration_service.cache_clear()
    management.event_service.cache_clear()
