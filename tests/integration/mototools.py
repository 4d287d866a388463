"""What the tests of the moto fixes (devicehooks_dev.local.motofixes) share.

Each fix has a test that shows, on moto as it is (``motofixes.using()``), the behaviour it works
around, and fails with "moto no longer needs fix X: remove it" once moto no longer shows it; and a
test of moto with the fix. Races are made to happen: moto's thread is held at the racy point
(:class:`Pause`) while another request runs. Costs are counted (calls of what moto repeats per
message, attribute or request), never timed.
"""

from __future__ import annotations

import inspect
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import moto
import pytest

from devicehooks_dev.local import motofixes

ACCOUNT = "123456789012"  # moto's account for any credentials
REGION = "us-east-1"
# How long moto's held thread waits for the other request: without the fix that request runs at
# once (the wait ends when it has finished: RUNS_AT_ONCE only bounds it); with a fix that holds it
# back, the wait ends unfinished after HELD_BACK (the outcome checked does not depend on it).
RUNS_AT_ONCE = 30.0
HELD_BACK = 0.5

pinned = pytest.mark.skipif(
    moto.__version__ != motofixes.FIXED_VERSION,
    reason=f"the fixes are for moto {motofixes.FIXED_VERSION} only",
)


def still_needed(fix: str, shown: bool, what: str) -> None:
    """Fails, saying so, when moto as it is no longer shows what ``fix`` works around."""
    assert shown, f"moto no longer needs fix {fix}: remove it ({what})"


@contextmanager
def moto_in_process() -> Iterator[str]:
    """moto's threaded server on a thread of this process (its URL); its data reset after."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=30).close()
        server.stop()


_ABSENT = object()


@contextmanager
def replaced(owner: Any, attribute: str, value: Any) -> Iterator[None]:
    """``owner.attribute`` is ``value`` inside the block, then what it was."""
    saved = vars(owner).get(attribute, _ABSENT)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        if saved is _ABSENT:
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, saved)


class Pause:
    """Holds moto's thread at a racy point the first time it gets there (:meth:`at`): runs ``then``
    (another request) on a thread of its own and waits for it to finish, ``wait`` seconds at most."""

    def __init__(self, then: Callable[[], object], wait: float) -> None:
        self.wait = wait
        self.thread = threading.Thread(target=then, daemon=True)
        self._lock = threading.Lock()
        self._reached = False

    def at(self) -> None:
        with self._lock:
            if self._reached:
                return
            self._reached = True
        self.thread.start()
        self.thread.join(self.wait)

    def join(self) -> None:
        """Wait for ``then`` to finish (the test goes on once both requests are answered)."""
        assert self._reached, "moto never reached the racy point"
        self.thread.join(RUNS_AT_ONCE)
        assert not self.thread.is_alive(), "the other request never finished"


@contextmanager
def paused(owner: Any, attribute: str, pause: Pause, after: bool = False) -> Iterator[None]:
    """``owner.attribute`` (a function) reaches ``pause`` before it runs (or after: ``after``)."""
    inner = getattr(owner, attribute)

    def pausing(*args: Any, **kwargs: Any) -> Any:
        if not after:
            pause.at()
        result = inner(*args, **kwargs)
        if after:
            pause.at()
        return result

    with replaced(owner, attribute, pausing):
        yield


@dataclass
class Count:
    calls: int = 0


@contextmanager
def counting(owner: Any, attribute: str) -> Iterator[Count]:
    """Counts the calls of ``owner.attribute`` (a function, or a property's getter)."""
    count = Count()
    static = inspect.getattr_static(owner, attribute)
    if isinstance(static, property):
        getter = static.fget
        assert getter is not None

        def counted_getter(self: Any) -> Any:
            count.calls += 1
            return getter(self)

        value: Any = property(counted_getter)
    else:
        inner = getattr(owner, attribute)

        def counted(*args: Any, **kwargs: Any) -> Any:
            count.calls += 1
            return inner(*args, **kwargs)

        value = counted
    with replaced(owner, attribute, value):
        yield count
