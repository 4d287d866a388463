"""The ``devicehooks`` command: ``local``, ``token``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence


def _local(args: argparse.Namespace) -> int:
    from devicehooks.local.stack import LocalStack

    port = args.port if args.port is not None else int(os.environ.get("DEVICEHOOKS_PORT", "8080"))
    stack = LocalStack(host=args.host, port=port)
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
    except OSError as exc:
        print(f"devicehooks local: cannot start: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    print(f"devicehooks local stack ready on {stack.url}", flush=True)
    print(
        f"  management API  {stack.url}/api/management/v1/iot-manager  (docs: /api/management/v1/iot-manager/docs)",
        file=sys.stderr,
    )
    print(f"  internal API    {stack.url}/api/internal/v1/iot-manager", file=sys.stderr)
    print(f"  web UI          {stack.url}/", file=sys.stderr)
    print("  token           devicehooks token --tenant <id>     (Ctrl-C stops)", file=sys.stderr, flush=True)
    stopping.wait()
    print("devicehooks local: stopping", file=sys.stderr, flush=True)
    stack.stop()
    return 0


def _token(args: argparse.Namespace) -> int:
    from devicehooks.devkeys import mint_token

    print(mint_token(args.tenant, args.user, args.ttl))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devicehooks", description="devicehooks developer commands")
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run the whole service on this machine (moto-backed)")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=None, help="default: $DEVICEHOOKS_PORT or 8080")
    local.set_defaults(run=_local)

    token = commands.add_parser("token", help="print a management token the local stack accepts")
    token.add_argument("--tenant", required=True, help='tenant id ("" for open source Mender)')
    token.add_argument("--user", default=None, help="user id (sub claim)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token.set_defaults(run=_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
