"""A real ``devicehooks local`` process on a free port, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(tmp_path_factory.mktemp("e2e"))
    yield stack
    stop_stack(stack)
