"""The ``devicehooks`` command: ``local``, ``token``, ``verify``, ``receive``, ``redrive``, ``publish-ui``."""

from __future__ import annotations

import argparse
import errno
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A failure the command reports in one line (``devicehooks <command>: <message>``), no traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _port(text: str) -> int:
    """An argparse type: a TCP port (0: any free one)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {port}")
    return port


def _reason(exc: OSError) -> str:
    """An OS error's reason without Python's decoration (``[Errno 98] Address already in use``)."""
    return exc.strerror or str(exc)


# Settings naming the stack's own resources: the local stack never passes the developer's values
# of these to a function (devicehooks_dev.local.stack), so they are not checked before it starts.
_RESOURCE_SETTINGS = ("DEVICEHOOKS_INTEGRATIONS_TABLE", "DEVICEHOOKS_ACTIVITY_TABLE")


def _check_environment(environ: Mapping[str, str]) -> None:
    """The developer's ``DEVICEHOOKS_*`` settings, checked before anything starts (the stack checks
    every function's again once it knows them)."""
    from devicehooks.config import problems_in

    problems = problems_in({k: v for k, v in environ.items() if k not in _RESOURCE_SETTINGS})
    if problems:
        raise CliError("invalid configuration: " + "; ".join(problems), code=2)


def _local(args: argparse.Namespace) -> int:
    from devicehooks.errors import ConfigError
    from devicehooks_dev.local.stack import LocalStack

    if args.port is not None:
        port = args.port
    else:
        try:
            port = _port(os.environ.get("DEVICEHOOKS_PORT", "8080"))
        except argparse.ArgumentTypeError as exc:
            raise CliError(f"DEVICEHOOKS_PORT: {exc}", code=2) from None
    _check_environment(os.environ)
    try:
        stack = LocalStack(host=args.host, port=port)
    except FileNotFoundError as exc:
        raise CliError(str(exc), code=2) from None
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        stopping.set()

    handlers = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        stack.start()
    except (ConfigError, OSError) as exc:
        stack.stop()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        if isinstance(exc, ConfigError):
            raise CliError(str(exc), code=2) from None
        if exc.errno == errno.EADDRINUSE:
            raise CliError(
                f"cannot start: {args.host}:{port} is in use (another devicehooks local? "
                "--port or DEVICEHOOKS_PORT chooses another)"
            ) from None
        raise CliError(f"cannot start: {exc}") from None
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


def _read_body(name: str) -> bytes:
    """The request body: the file ``name``, or standard input for ``-``."""
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {_reason(exc)}", code=2) from None


def _signature_matches(args: argparse.Namespace, body: bytes) -> bool:
    """Whether ``args.signature`` signs ``body``; :class:`CliError` when it cannot be checked."""
    from devicehooks_dev.receiver import WebhookVerificationError, verify_men_signature, verify_standard_webhook

    try:
        if not args.signature.startswith("v1,"):
            return verify_men_signature(args.secret, body, args.signature)
        if not args.webhook_id or args.timestamp is None:
            raise CliError("a v1 signature needs --webhook-id and --timestamp", code=2)
        headers = {
            "webhook-id": args.webhook_id,
            "webhook-timestamp": str(args.timestamp),
            "webhook-signature": args.signature,
        }
        verify_standard_webhook(args.secret, body, headers, tolerance=args.tolerance)
        return True
    except WebhookVerificationError as exc:
        if "no webhook-signature matches" in str(exc):
            return False
        raise CliError(str(exc), code=2 if "secret" in str(exc) else 1) from None


def _without_final_newline(body: bytes) -> bytes | None:
    """``body`` without the line end an editor or ``echo`` adds (None: it ends with none)."""
    for end in (b"\r\n", b"\n"):
        if body.endswith(end):
            return body[: -len(end)]
    return None


def _verify(args: argparse.Namespace) -> int:
    body = _read_body(args.file)
    if _signature_matches(args, body):
        print("signature matches", file=sys.stderr)
        return 0
    print("signature does NOT match", file=sys.stderr)
    trimmed = _without_final_newline(body)
    if trimmed is not None and _signature_matches(args, trimmed):
        print(
            "hint: it matches the body without its final newline: the file ends with a line break the request "
            "did not have (save the body exactly: devicehooks receive --save DIR, or printf '%s' '<body>' > FILE)",
            file=sys.stderr,
        )
    return 1


# the headers a receiver checks, printed first (then the others, as received)
SIGNATURE_HEADERS = ("X-Men-Signature", "webhook-id", "webhook-timestamp", "webhook-signature")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _receiver(args: argparse.Namespace) -> Any:
    """The development receiver's server, listening (not yet serving): prints each request's line,
    verdict, headers and body, and saves each body to ``args.save`` when given."""
    import http.server

    from devicehooks_dev.receiver import WebhookVerificationError, verify_men_signature, verify_standard_webhook

    secret = args.secret
    save = Path(args.save) if args.save else None
    lock = threading.Lock()
    received = [0]

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
            first = [(k, v) for name in SIGNATURE_HEADERS for k, v in self.headers.items() if k.lower() == name.lower()]
            rest = [(k, v) for k, v in self.headers.items() if (k, v) not in first]
            lines = [f"POST {self.path}  {verdict}", *(f"  {k}: {v}" for k, v in first + rest)]
            with lock:
                received[0] += 1
                number = received[0]
                if save is not None:
                    webhook_id = self.headers.get("webhook-id") or ""
                    name = webhook_id if _SAFE_NAME.match(webhook_id) else f"request-{number}"
                    path = save / f"{name}.json"
                    path.write_bytes(body)
                    lines.append(f"  (body saved to {path}: {len(body)} bytes, exactly as received)")
                print("\n".join(lines) + "\n" + body.decode(errors="replace"), flush=True)
            self.send_response(args.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if args.count and number >= args.count:
                threading.Thread(target=self.server.shutdown, daemon=True).start()

        def log_message(self, *_: object) -> None:
            pass

    try:
        return http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as exc:
        hint = " (another receiver running? choose another --port)" if exc.errno == errno.EADDRINUSE else ""
        raise CliError(f"cannot listen on {args.host}:{args.port}: {_reason(exc)}{hint}") from None


def _receive(args: argparse.Namespace) -> int:
    """A development receiver: prints each webhook and whether its signatures verify."""
    if args.save:
        try:
            Path(args.save).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot save bodies in {args.save}: {_reason(exc)}", code=2) from None
    server = _receiver(args)
    print(f"receiving webhooks on http://{args.host}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _stack_outputs(name: str) -> dict[str, str]:
    """A deployed stack's outputs (queue URLs, the UI's bucket and distribution)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from devicehooks import aws

    try:
        stack = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot read the stack {name!r}: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _output(outputs: Mapping[str, str], key: str, stack: str) -> str:
    if key not in outputs:
        raise CliError(f"the stack {stack!r} has no output {key} (is it a devicehooks stack?)")
    return outputs[key]


REDRIVE_WHERE = (
    "say where the queues are: --stack NAME (a deployed stack, e.g. devicehooks-dev) "
    "or --local URL (a running local stack, e.g. http://127.0.0.1:8080)"
)


def _redrive(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    from botocore.exceptions import BotoCoreError, ClientError

    from devicehooks import aws
    from devicehooks_dev.redrive import OUTPUTS, ROUTES, redrive

    if not args.stack and not args.local:
        raise CliError(REDRIVE_WHERE, code=2)
    source, target = ROUTES[args.queue]
    if args.local:
        url = args.local.rstrip("/") + "/local/info"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
                info = json.load(response)
        except (OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise CliError(
                f"cannot reach the local stack at {args.local} ({reason}): is devicehooks local running?"
            ) from None
        os.environ.update(
            info["aws_endpoints"],
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S105 - moto's dummy credentials
            AWS_DEFAULT_REGION="us-east-1",
        )
        aws.reset_clients()
        urls = {name: info["resources"][name]["QueueUrl"] for name in (source, target)}
    else:
        outputs = _stack_outputs(args.stack)
        urls = {name: _output(outputs, OUTPUTS[name], args.stack) for name in (source, target)}
    try:
        moved = redrive(aws.client("sqs"), urls[source], urls[target])
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot move the messages: {exc}") from None
    print(f"moved {moved} message(s) from {source} to {target}")
    return 0


def _publish_ui(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from devicehooks import aws
    from devicehooks_dev.local.stack import project_root
    from devicehooks_dev.publish import publish

    if args.dir and not Path(args.dir).is_dir():
        raise CliError(f"{args.dir} is not a directory", code=2)
    outputs = _stack_outputs(args.stack)
    bucket, distribution, url = (_output(outputs, k, args.stack) for k in ("UiBucketName", "UiDistributionId", "UiUrl"))
    try:
        root = Path(args.dir) if args.dir else project_root() / "ui"
    except FileNotFoundError as exc:
        raise CliError(str(exc), code=2) from None
    try:
        keys = publish(aws.client("s3"), aws.client("cloudfront"), bucket, distribution, root)
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot upload the UI: {exc}") from None
    print(f"uploaded {len(keys)} file(s); the UI is at {url}")
    return 0


def _command(
    commands: Any, name: str, summary: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` in ``devicehooks --help``, ``description`` (and examples) in its own."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="devicehooks",
        description="devicehooks developer commands; devicehooks COMMAND --help describes each.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = _command(
        commands,
        "local",
        "run the whole service on this machine (moto-backed)",
        "Run the whole service on this machine: moto's server with every resource of template.yaml, the\n"
        "real Lambda handlers (each execution environment a process), the APIs and the web UI. No AWS\n"
        "account, no Docker. DEVICEHOOKS_* variables you export replace the functions' own; an invalid\n"
        "one stops it at once (e.g. DEVICEHOOKS_MAX_INTEGRATIONS must be 1 to 99).",
        "example: devicehooks local --port 8080   (make run does the same)",
    )
    local.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    local.add_argument("--port", type=_port, default=None, help="default: $DEVICEHOOKS_PORT or 8080")
    local.set_defaults(run=_local)

    token = _command(
        commands,
        "token",
        "print a management token the local stack accepts",
        "Print a management API token (a JWT) for a tenant, signed with the local development key\n"
        "(DEVICEHOOKS_DEV_KEY_FILE): the local stack accepts it, a deployed stack does not.",
        "example: TOKEN=$(devicehooks token --tenant acme)\n"
        '         curl -H "Authorization: Bearer $TOKEN" http://localhost:8080/api/management/v1/iot-manager/integrations',
    )
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

    verify = _command(
        commands,
        "verify",
        "check a webhook signature (X-Men-Signature, or a Standard Webhooks v1 signature)",
        "Check that a signature signs a request body, as a receiver would: Mender's X-Men-Signature\n"
        "(hex HMAC-SHA256 of the body), or one webhook-signature v1,... with its webhook-id and\n"
        "webhook-timestamp. The body must be the exact bytes received: a file saved with a final\n"
        "newline does not match (a hint says so). Exit 0: it matches; 1: it does not; 2: bad input.",
        "example: devicehooks receive --port 9000 --secret deadbeef --save bodies   (prints the headers)\n"
        "         devicehooks verify --secret deadbeef --signature <X-Men-Signature> bodies/<webhook-id>.json",
    )
    verify.add_argument("--secret", required=True, help="the integration's secret, hex")
    verify.add_argument("--signature", required=True, help="X-Men-Signature (hex) or one webhook-signature v1,...")
    verify.add_argument("--webhook-id", default=None, help="webhook-id header (v1 signatures)")
    verify.add_argument("--timestamp", type=int, default=None, help="webhook-timestamp header (v1 signatures)")
    verify.add_argument("--tolerance", type=int, default=300, help="accepted timestamp age, seconds (v1)")
    verify.add_argument("file", nargs="?", default="-", help="the request body (default: standard input)")
    verify.set_defaults(run=_verify)

    receive = _command(
        commands,
        "receive",
        "a development webhook receiver that checks signatures",
        "Receive webhooks on this machine: print each request's path, whether its X-Men-Signature and\n"
        "webhook-signature verify (with --secret), its headers and its body; answer --status.\n"
        "--save DIR keeps each body exactly as received (DIR/<webhook-id>.json), for devicehooks verify.",
        "example: devicehooks receive --port 9000 --secret deadbeef --save bodies",
    )
    receive.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    receive.add_argument("--port", type=_port, default=9000, help="port to listen on (default 9000)")
    receive.add_argument("--secret", default=None, help="the integration's secret, hex")
    receive.add_argument("--status", type=int, default=200, help="the status to answer with (default 200)")
    receive.add_argument("--save", metavar="DIR", default=None, help="save each body, exactly, in DIR")
    receive.add_argument("--count", type=int, default=0, help="stop after this many requests (default: never)")
    receive.set_defaults(run=_receive)

    redrive = _command(
        commands,
        "redrive",
        "move dead-lettered messages back to be processed",
        "Move the messages of a dead-letter queue back to where they are processed, once their cause\n"
        "is fixed: --queue delivery (delivery DLQ -> retry queue, a fresh series of attempts), dispatch\n"
        "(dispatch DLQ -> intake queue) or retry (retry DLQ -> retry queue). Say where the queues are:\n"
        "--stack (a deployed stack's name; AWS credentials as for the AWS CLI) or --local (a running\n"
        "local stack).",
        "examples: devicehooks redrive --stack devicehooks-prod --queue dispatch\n"
        "          devicehooks redrive --local http://127.0.0.1:8080 --queue delivery",
    )
    redrive.add_argument(
        "--queue", choices=["delivery", "dispatch", "retry"], default="delivery", help="which DLQ (default delivery)"
    )
    where = redrive.add_mutually_exclusive_group()  # one is required: _redrive says so, with examples
    where.add_argument("--stack", metavar="NAME", help="a deployed stack's name (its outputs name the queues)")
    where.add_argument("--local", metavar="URL", help="a running local stack, e.g. http://127.0.0.1:8080")
    redrive.set_defaults(run=_redrive)

    publish_ui = _command(
        commands,
        "publish-ui",
        "upload the web UI to a deployed stack and refresh its CDN",
        "Upload the web UI's files to a deployed stack's bucket (output UiBucketName), each with its\n"
        "content type, then invalidate its CloudFront distribution (UiDistributionId).",
        "example: devicehooks publish-ui --stack devicehooks-dev",
    )
    publish_ui.add_argument("--stack", required=True, help="the deployed stack's name")
    publish_ui.add_argument("--dir", default=None, help="the UI's directory (default: ui/ of the project)")
    publish_ui.set_defaults(run=_publish_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CliError as exc:
        print(f"devicehooks {args.command}: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
