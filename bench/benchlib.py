"""What the benchmarks share: output, the receiver process, bus events, dispatchers, the local stack.

Output: figures go to the real standard output as ``NAME value`` lines, context as ``# ...``
lines; the package's own output (powertools' EMF metrics are ``print``ed, its logger writes to
stdout) is kept out of it by :func:`quiet`.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devicehooks_dev.local import process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RECEIVER = Path(__file__).resolve().with_name("receiver.py")
OUT = sys.stdout  # the figures' stream, whatever quiet() does to sys.stdout

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "devicehooks-bench")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "devicehooks-bench")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")


def figure(name: str, value: float, digits: int = 2) -> None:
    print(f"{name} {value:.{digits}f}", file=OUT, flush=True)


def note(text: str) -> None:
    print(f"# {text}", file=OUT, flush=True)


def quiet() -> None:
    """Keep the package's output off the figures' stream (in the process that measures)."""
    import warnings

    from devicehooks.observability import logger

    # powertools warns when an invocation emitted no metric (a batch that only held deliveries)
    warnings.filterwarnings("ignore", "No application metrics to publish")
    handler = logger.registered_handler
    if hasattr(handler, "setStream"):
        handler.setStream(sys.stderr)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - EMF metrics are print()ed every 100 values


# ------------------------------------------------------------------ the receiver process


class Receiver:
    """``receiver.py`` in a separate process; ``url(path)`` to POST to, its log to count with."""

    def __init__(self, delay: float = 0.0, hang: float = 5.0, late: float = 1.5) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(RECEIVER), "--delay", str(delay), "--hang", str(hang), "--late", str(late)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"listening on (\d+)", line)
        if not found:
            self.process.kill()
            raise RuntimeError(f"the receiver did not start: {line!r}")
        self.port = int(found.group(1))
        self._control = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _get(self, path: str) -> Any:
        for attempt in range(2):
            try:
                self._control.request("GET", path)
                return json.loads(self._control.getresponse().read())
            except (OSError, http.client.HTTPException):
                self._control.close()
                if attempt:
                    raise
        return None

    def count(self) -> int:
        return int(self._get("/_count"))

    def log(self, since: int = 0) -> list[tuple[str, str | None, float, str | None]]:
        """``(path, webhook_id, received on time.monotonic(), device id)`` per POST, from entry ``since``."""
        return [(p, w, t, d) for p, w, t, d in self._get(f"/_log?since={since}")]

    def reset(self) -> None:
        self._get("/_reset")

    def wait_for(self, total: int, deadline: float, what: str) -> None:
        """Poll until ``total`` POSTs arrived; fail loudly after ``deadline`` seconds."""
        end = time.monotonic() + deadline
        while (got := self.count()) < total:
            if time.monotonic() > end:
                raise RuntimeError(f"{what}: {got} of {total} deliveries arrived within {deadline:.0f} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self._control.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextmanager
def receiver(delay: float = 0.0, hang: float = 5.0, late: float = 1.5) -> Iterator[Receiver]:
    started = Receiver(delay, hang, late)
    try:
        yield started
    finally:
        started.stop()


# ------------------------------------------------------------------ the dispatcher in this process


def bus_event(tenant_id: str, device_id: str, status: str = "accepted", event_id: str | None = None) -> str:
    """A device event as the dispatch queue receives it (the JSON of an EventBridge event)."""
    return json.dumps(
        {
            "version": "0",
            "id": event_id or str(uuid.uuid4()),
            "detail-type": "device-status-changed",
            "source": "devicehooks.deviceauth",
            "account": "123456789012",
            "time": "2026-01-01T00:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "tenant_id": tenant_id,
                "data": {"id": device_id, "status": status},
                "time": "2026-01-01T00:00:00.123456Z",
            },
        }
    )


def guard() -> Any:
    from devicehooks.security.ssrf import DestinationGuard

    return DestinationGuard(allowed_cidrs=(ipaddress.ip_network("127.0.0.0/8"),))


def dispatcher(integrations: Any, activity: Any, cipher: Any, timeout: float = 10.0, sender: Any = None) -> Any:
    """The production Dispatcher and HttpSender (or ``sender``) over the given stores, retries kept
    in memory."""
    from devicehooks.delivery.sender import HttpSender
    from devicehooks.dispatch import DispatchContext, Dispatcher
    from devicehooks.domain.decisions import DispatchPolicy
    from devicehooks_dev.doubles import MemoryTaskQueue

    return Dispatcher(
        DispatchContext(
            integrations=integrations,
            activity=activity,
            cipher=cipher,
            sender=sender or HttpSender(guard(), timeout=timeout),
            queue=MemoryTaskQueue(),
            policy=DispatchPolicy(delivery_timeout=timeout),
        )
    )


def one_batch(dispatcher: Any, bodies: list[str], records: Any = None) -> list[BaseException | None]:
    """``bodies`` as one invocation's batch, as the handler runs it: side by side on ``records`` (a
    thread pool; one by one without), then the batch finished; each record's error, if it raised."""
    from devicehooks.dispatch import Batch

    batch = Batch(deadline=None)
    try:
        if records is None:
            errors: list[BaseException | None] = []
            for body in bodies:
                try:
                    dispatcher.handle_message(body, batch)
                    errors.append(None)
                except Exception as exc:  # noqa: BLE001 - reported to the caller, as SQS would redeliver it
                    errors.append(exc)
            return errors
        futures = [records.submit(dispatcher.handle_message, body, batch) for body in bodies]
        return [future.exception() for future in futures]
    finally:
        dispatcher.finish_batch(batch)


def template() -> dict[str, Any]:
    """template.yaml, as the local stack reads it."""
    from devicehooks_dev.local.template import load_template

    return dict(load_template(ROOT / "template.yaml"))


def function_memory_mb(template: dict[str, Any], function: str) -> int:
    props = template["Resources"][function]["Properties"]
    return int(props.get("MemorySize") or template["Globals"]["Function"]["MemorySize"])


def dynamo_stores(integrations_table: str, activity_table: str, client: Any) -> tuple[Any, Any]:
    """The production DynamoDB stores over ``client``."""
    from devicehooks.store.activity import DynamoActivityStore
    from devicehooks.store.integrations import DynamoIntegrationStore

    return DynamoIntegrationStore(integrations_table, client=client), DynamoActivityStore(activity_table, client=client)


_KMS_CALLS: list[str] = []


def kms_cipher(key_id: str) -> Any:
    """The production KMS secret cipher; its Decrypt calls are counted (:func:`kms_requests`)."""
    from devicehooks import aws
    from devicehooks.aws.kms import KmsSecretCipher

    kms = aws.client("kms")
    if not getattr(kms, "_bench_counted", False):
        kms.meta.events.register("before-call.kms.*", lambda model, **_: _KMS_CALLS.append(model.name))
        kms._bench_counted = True
    return KmsSecretCipher(key_id, kms=kms)


def kms_requests(reset: bool = False) -> int:
    """KMS requests made since the last reset."""
    count = len(_KMS_CALLS)
    if reset:
        _KMS_CALLS.clear()
    return count


def add_webhook(store: Any, cipher: Any, tenant_id: str, url: str, secret: bytes = b"\xde\xad\xbe\xef") -> str:
    from devicehooks.domain.models import Integration, new_id
    from devicehooks.timeutil import utcnow

    now = utcnow()
    integration_id = new_id()
    store.add(
        Integration(
            id=integration_id,
            tenant_id=tenant_id,
            url=url,
            secret=cipher.seal(secret, tenant_id, integration_id),
            created_at=now,
            updated_at=now,
        ),
        limit=99,
    )
    return integration_id


# ------------------------------------------------------------------ `devicehooks local` in a subprocess

MANAGEMENT = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"


class BenchStack(process.RunningStack):
    """The local stack a benchmark drives, with the calls the benchmarks make."""

    def create_webhook(self, tenant: str, url: str, secret: str = "deadbeef") -> str:
        """A webhook through the management API, as a user would create it; returns its id."""
        import requests

        body = {"provider": "webhook", "credentials": {"type": "http", "http": {"url": url, "secret": secret}}}
        response = requests.post(
            f"{self.url}{MANAGEMENT}/integrations",
            json=body,
            headers={"Authorization": f"Bearer {self.token(tenant)}"},
            timeout=30,
        )
        if response.status_code != 201:
            raise RuntimeError(f"creating a webhook: {response.status_code} {response.text}")
        return str(response.headers["Location"].rsplit("/", 1)[1])

    def bulk_status(self, session: Any, tenant: str, device_ids: list[str], status: str = "accepted") -> None:
        """Mender's bulk status change (at most 100 devices) through the internal API."""
        response = session.put(
            f"{self.url}{INTERNAL}/tenants/{tenant}/bulk/devices/status/{status}",
            json=[{"id": d} for d in device_ids],
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(f"bulk status change: {response.status_code} {response.text}")


# Every function's execution environments started with the stack, as provisioned concurrency keeps
# them: the figures measure deliveries, not cold starts (docs/architecture.md, "Local stack")
WARM = {"DEVICEHOOKS_LOCAL_WARM": "1"}


def start_stack(workdir: Path, deadline: float = 180.0) -> BenchStack:
    """``devicehooks local --port 0``, the command a developer runs (moto fixed by the stack), its
    environments warm (:data:`WARM`)."""
    running = process.start_stack(workdir, WARM, deadline=deadline)
    return BenchStack(running.url, running.process, running.env, running.output)


def stop_stack(stack: process.RunningStack, deadline: float = 30.0) -> None:
    try:
        process.stop_stack(stack, deadline)
    except subprocess.TimeoutExpired:
        pass


# ------------------------------------------------------------------ the local stack in this process


def in_process_stack(workdir: Path, env: dict[str, str]) -> Any:
    """``devicehooks local``'s LocalStack in this process (its gateway and pollers; each function's
    execution environments are processes of their own, warm: :data:`WARM`), with ``env`` for its
    functions and its knobs; ``stack.functions[name].stats`` counts a function's invocations and
    busy seconds."""
    from devicehooks_dev.local.stack import LocalStack

    os.environ.update({**WARM, "DEVICEHOOKS_DEV_KEY_FILE": str(workdir / "dev-key.pem"), **env})
    stack = LocalStack(ROOT, port=0)
    stack.access_log = False
    stack.start()
    return stack


class InProcessApi:
    """What the benchmarks ask of an in-process stack, over HTTP as Mender and users do."""

    def __init__(self, stack: Any, session: Any) -> None:
        self.stack = stack
        self.session = session

    def tenant(self, prefix: str, urls: list[str]) -> str:
        """A new tenant with one webhook per URL; returns its id."""
        from devicehooks_dev import devkeys

        tenant = f"{prefix}-{uuid.uuid4().hex[:8]}"
        headers = {"Authorization": f"Bearer {devkeys.mint_token(tenant)}"}
        for url in urls:
            body = {"provider": "webhook", "credentials": {"type": "http", "http": {"url": url}}}
            response = self.session.post(f"{self.stack.url}{MANAGEMENT}/integrations", json=body, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(f"creating a webhook: {response.status_code} {response.text}")
        return tenant

    def bulk(self, tenant: str, devices: list[str]) -> None:
        response = self.session.put(
            f"{self.stack.url}{INTERNAL}/tenants/{tenant}/bulk/devices/status/accepted",
            json=[{"id": d} for d in devices],
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(f"bulk status change: {response.status_code} {response.text}")

    def time_to_receive(self, receiver: Receiver, tenant: str, path: str, devices: int, deadline: float) -> float:
        """Seconds from a bulk change of ``devices`` devices of ``tenant`` until ``path`` received them all."""
        since = receiver.count()
        started = time.monotonic()
        self.bulk(tenant, [f"{tenant}-{n}" for n in range(devices)])
        end = started + deadline
        while True:
            arrived = [t for p, _, t, _ in receiver.log(since) if p == path]
            if len(arrived) >= devices:
                return max(sorted(arrived)[:devices]) - started
            if time.monotonic() > end:
                raise RuntimeError(f"{path}: {len(arrived)} of {devices} deliveries within {deadline:.0f} s")
            time.sleep(0.02)
