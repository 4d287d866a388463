"""A real ``devicehooks local`` process on a free port, driven over HTTP; a webhook receiver per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devicehooks_dev.local.process import RunningStack, start_stack, stop_stack
from tests.receiver import Receiver


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    stack = start_stack(tmp_path_factory.mktemp("e2e"))
    yield stack
    stop_stack(stack)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver (tests/receiver.py), closed after the test."""
    server = Receiver()
    yield server
    server.close()
