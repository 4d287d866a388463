"""``devicehooks-relay`` (or ``python -m devicehooks_relay``): run the relay, or check it once.

Every option has an environment variable, for containers::

    DEVICEHOOKS_RELAY_UPSTREAM=https://<api-id>.execute-api.<region>.amazonaws.com devicehooks-relay
    devicehooks-relay --check    # one signed GET .../alive to devicehooks: exit 0 when it answers 204
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from botocore.credentials import Credentials
from botocore.session import Session

from devicehooks_relay.relay import ALIVE, Forwarder, Relay, Settings

log = logging.getLogger("devicehooks_relay")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"DEVICEHOOKS_RELAY_{name}") or default


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="devicehooks-relay",
        description="Listen on plain HTTP as Mender's IOT_MANAGER_ADDR; forward /api/internal/v1/iot-manager/... "
        "to devicehooks signed with SigV4 (execute-api). See docs/mender.md.",
    )
    p.add_argument(
        "--upstream",
        default=_env("UPSTREAM"),
        help="devicehooks' API base URL, the stack's ApiUrl output (env DEVICEHOOKS_RELAY_UPSTREAM)",
    )
    p.add_argument(
        "--region",
        default=_env("REGION"),
        help="the API's region (env DEVICEHOOKS_RELAY_REGION; default AWS_REGION, else the execute-api host's)",
    )
    p.add_argument(
        "--listen",
        default=_env("LISTEN", "0.0.0.0:8080"),
        help="address:port to listen on (env DEVICEHOOKS_RELAY_LISTEN; default 0.0.0.0:8080)",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=float(_env("CONNECT_TIMEOUT", "5") or 5),
        help="seconds to connect to devicehooks, then 504 (env DEVICEHOOKS_RELAY_CONNECT_TIMEOUT; default 5)",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=float(_env("READ_TIMEOUT", "30") or 30),
        help="seconds to wait for devicehooks' answer, then 504 (env DEVICEHOOKS_RELAY_READ_TIMEOUT; default 30)",
    )
    p.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="env DEVICEHOOKS_RELAY_LOG_LEVEL; INFO logs one line per request",
    )
    p.add_argument("--check", action="store_true", help="send one signed GET .../alive, print the answer, exit")
    return p


def _credentials() -> Credentials | None:
    """botocore's chain: environment keys, a profile, web identity (EKS IRSA), the container's or
    the instance's role; refreshable ones are refreshed as they near their expiry."""
    found: Credentials | None = Session().get_credentials()
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.upstream:
        print("devicehooks-relay: give --upstream (or DEVICEHOOKS_RELAY_UPSTREAM)", file=sys.stderr)
        return 2
    host, _, port = str(args.listen).rpartition(":")
    try:
        settings = Settings.make(
            args.upstream, args.region, host or "0.0.0.0", int(port), args.connect_timeout, args.read_timeout
        )
    except ValueError as exc:
        print(f"devicehooks-relay: {exc}", file=sys.stderr)
        return 2
    credentials = _credentials()
    if credentials is None:
        print("devicehooks-relay: no AWS credentials found (role, profile or AWS_ACCESS_KEY_ID)", file=sys.stderr)
        return 2
    if args.check:
        reply = Forwarder(settings, credentials).forward("GET", ALIVE, {}, b"")
        print(f"GET {settings.upstream}{ALIVE}: {reply.status} {reply.body.decode('utf-8', 'replace')}".rstrip())
        return 0 if reply.status == 204 else 1
    try:
        relay = Relay(settings, credentials).start()
    except OSError as exc:
        print(f"devicehooks-relay: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    log.info("listening on %s, forwarding to %s (signed for region %s)", relay.url, settings.upstream, settings.region)
    # wake now and then: a signal's handler runs only once the main thread does
    while not stopping.wait(0.25):
        pass
    log.info("stopping: requests in flight may finish")
    relay.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
