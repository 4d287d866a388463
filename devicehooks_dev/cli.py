"""The ``devicehooks`` command: ``local``, ``token``, ``verify``, ``receive``, ``redrive``, ``publish-ui``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence


def _local(args: argparse.Namespace) -> int:
    from devicehooks_dev.local.stack import LocalStack

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
    # Wake up now and then: the kernel may deliver Ctrl-C to another thread, and Python runs the
    # handler only once the main thread wakes (a wait without a timeout could sleep through it).
    while not stopping.wait(0.25):
        pass
    print("devicehooks local: stopping", file=sys.stderr, flush=True)
    stack.stop()
    return 0


# The claim `devicehooks token --role` writes: the example of the AdminClaim parameter
# (template.yaml), so that `DEVICEHOOKS_ADMIN_CLAIM=roles devicehooks local` reads it.
ROLE_CLAIM = "roles"
ROLES = ("admin", "user")


def _token(args: argparse.Namespace) -> int:
    from devicehooks_dev.devkeys import mint_token

    extra = {ROLE_CLAIM: [args.role]} if args.role else None
    print(mint_token(args.tenant, args.user, args.ttl, extra=extra))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from devicehooks_dev.receiver import WebhookVerificationError, verify_men_signature, verify_standard_webhook

    body = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()  # noqa: SIM115
    try:
        if args.signature.startswith("v1,"):
            if not args.webhook_id or args.timestamp is None:
                print("devicehooks verify: a v1 signature needs --webhook-id and --timestamp", file=sys.stderr)
                return 2
            headers = {
                "webhook-id": args.webhook_id,
                "webhook-timestamp": str(args.timestamp),
                "webhook-signature": args.signature,
            }
            verify_standard_webhook(args.secret, body, headers, tolerance=args.tolerance)
            ok = True
        else:
            ok = verify_men_signature(args.secret, body, args.signature)
    except WebhookVerificationError as exc:
        print(f"devicehooks verify: {exc}", file=sys.stderr)
        return 1 if "secret" not in str(exc) else 2
    print("signature matches" if ok else "signature does NOT match", file=sys.stderr)
    return 0 if ok else 1


def _receive(args: argparse.Namespace) -> int:
    """A development receiver: prints each webhook and whether its signatures verify."""
    import http.server

    from devicehooks_dev.receiver import WebhookVerificationError, verify_men_signature, verify_standard_webhook

    secret = args.secret

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            verdict = "unsigned"
            if secret is not None and self.headers.get("X-Men-Signature"):
                men = verify_men_signature(secret, body, self.headers["X-Men-Signature"])
                try:
                    verify_standard_webhook(secret, body, dict(self.headers.items()))
                    standard = "valid"
                except WebhookVerificationError as exc:
                    standard = f"INVALID ({exc})"
                verdict = f"X-Men-Signature {'valid' if men else 'INVALID'}, webhook-signature {standard}"
            print(f"POST {self.path}  {verdict}\n{body.decode(errors='replace')}", flush=True)
            self.send_response(args.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"receiving webhooks on http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _stack_outputs(name: str) -> dict[str, str]:
    """A deployed stack's outputs (queue URLs, the UI's bucket and distribution)."""
    from devicehooks import aws

    stack = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _redrive(args: argparse.Namespace) -> int:
    import json
    import urllib.request

    from devicehooks import aws
    from devicehooks_dev.redrive import OUTPUTS, ROUTES, redrive

    source, target = ROUTES[args.queue]
    if args.local:
        with urllib.request.urlopen(args.local.rstrip("/") + "/local/info", timeout=10) as response:  # noqa: S310
            info = json.load(response)
        os.environ.update(
            AWS_ENDPOINT_URL=info["moto_endpoint"],
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S105 - moto's dummy credentials
            AWS_DEFAULT_REGION="us-east-1",
        )
        aws.reset_clients()
        urls = {name: info["resources"][name]["QueueUrl"] for name in (source, target)}
    else:
        outputs = _stack_outputs(args.stack)
        urls = {name: outputs[OUTPUTS[name]] for name in (source, target)}
    moved = redrive(aws.client("sqs"), urls[source], urls[target])
    print(f"moved {moved} message(s) from {source} to {target}")
    return 0


def _publish_ui(args: argparse.Namespace) -> int:
    from pathlib import Path

    from devicehooks import aws
    from devicehooks_dev.local.stack import project_root
    from devicehooks_dev.publish import publish

    outputs = _stack_outputs(args.stack)
    root = Path(args.dir) if args.dir else project_root() / "ui"
    keys = publish(
        aws.client("s3"), aws.client("cloudfront"), outputs["UiBucketName"], outputs["UiDistributionId"], root
    )
    print(f"uploaded {len(keys)} file(s); the UI is at {outputs['UiUrl']}")
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
    token.add_argument(
        "--role",
        choices=ROLES,
        default=None,
        help=f'adds the claim "{ROLE_CLAIM}": ["<role>"]; a stack run with DEVICEHOOKS_ADMIN_CLAIM={ROLE_CLAIM} '
        "lets only admins change integrations (default: no role claim)",
    )
    token.set_defaults(run=_token)

    verify = commands.add_parser(
        "verify", help="check a webhook signature (X-Men-Signature, or a Standard Webhooks v1 signature)"
    )
    verify.add_argument("--secret", required=True, help="the integration's secret, hex")
    verify.add_argument("--signature", required=True, help="X-Men-Signature (hex) or one webhook-signature v1,...")
    verify.add_argument("--webhook-id", default=None, help="webhook-id header (v1 signatures)")
    verify.add_argument("--timestamp", type=int, default=None, help="webhook-timestamp header (v1 signatures)")
    verify.add_argument("--tolerance", type=int, default=300, help="accepted timestamp age, seconds (v1)")
    verify.add_argument("file", nargs="?", default="-", help="the request body (default: standard input)")
    verify.set_defaults(run=_verify)

    receive = commands.add_parser("receive", help="a development webhook receiver that checks signatures")
    receive.add_argument("--host", default="127.0.0.1")
    receive.add_argument("--port", type=int, default=9000)
    receive.add_argument("--secret", default=None, help="the integration's secret, hex")
    receive.add_argument("--status", type=int, default=200, help="the status to answer with (default 200)")
    receive.set_defaults(run=_receive)

    redrive = commands.add_parser("redrive", help="move dead-lettered messages back to be processed")
    redrive.add_argument("--queue", choices=["delivery", "dispatch", "retry"], default="delivery")
    where = redrive.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="a deployed stack's name (its outputs name the queues)")
    where.add_argument("--local", metavar="URL", help="a running local stack, e.g. http://127.0.0.1:8080")
    redrive.set_defaults(run=_redrive)

    publish_ui = commands.add_parser("publish-ui", help="upload the web UI to a deployed stack and refresh its CDN")
    publish_ui.add_argument("--stack", required=True, help="the deployed stack's name")
    publish_ui.add_argument("--dir", default=None, help="the UI's directory (default: ui/ of the project)")
    publish_ui.set_defaults(run=_publish_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
