"""``devicehooks local``: moto's server, the template's resources, and the real handlers.

* moto's servers run in child processes (``motoserver.py``) on free loopback ports, as AWS
  answers from beside Lambda, not inside it: DynamoDB (and its streams) in one, every other service
  in another, as AWS serves each service apart (``APART``). The SDK (handlers included) reaches them
  through ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_DYNAMODB(_STREAMS)``.
* Tables, queues, the bus, its rule and targets, the KMS key and the topic are created from
  template.yaml; functions get the environment the template gives them, resolved locally.
* One HTTP server serves the API routes the template declares (HttpApi events), turning each
  request into an API Gateway HTTP API (payload 2.0) event, passed through the real authorizer
  where the route has one, then to the real handler; and the web UI at ``/``.
* Every function runs as Lambda runs it: each execution environment is a process of its own
  (``devicehooks_dev.local.environments``), started when an invocation finds none free (a real
  cold start), reused while warm, one invocation at a time, with exactly its function's
  environment variables. ``DEVICEHOOKS_LOCAL_WARM=1`` (or a list of functions' logical ids)
  starts them all at once, as provisioned concurrency would.
* SQS event sources are polled into the real handlers with real SQS event shapes, honouring
  ``batchItemFailures``; moto moves messages past ``maxReceiveCount`` to their DLQ. Each source
  runs up to its ``ScalingConfig.MaximumConcurrency`` invocations side by side, as Lambda does
  (``devicehooks_dev.local.sqs``); a function's sources share its environments.
* DynamoDB stream event sources read moto's stream (``dynamodbstreams``) into their function, a
  batch at a time, with Lambda's record shape and partial batch responses
  (``devicehooks_dev.local.streams``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from devicehooks_dev import devkeys
from devicehooks_dev.local import motoserver
from devicehooks_dev.local.environments import FunctionPool, FunctionSpec, InvocationError, lambda_variables
from devicehooks_dev.local.sqs import UNBOUNDED_CONCURRENCY, SqsPoller, SqsSource
from devicehooks_dev.local.streams import StreamPoller, StreamSource
from devicehooks_dev.local.template import (
    Resolver,
    load_template,
    parameter_defaults,
    queue_order,
    resources_of,
)

ACCOUNT = "123456789012"
REGION = "us-east-1"
STACK = "devicehooks-local"
LOCAL_ALLOWED_CIDRS = "127.0.0.0/8,::1/128"
MAX_API_PAYLOAD = 10 * 1024 * 1024  # API Gateway HTTP API limit
# services answered by a moto server of their own, beside the one serving the rest, and the variables
# that send the SDK there. AWS serves each service apart; one moto process would serve them all on one
# core (its GIL), and DynamoDB's share is the largest: every delivery's writes, and a stream record
# built for each write of the activity table. P8 measured that one process at a full core while the
# other core was half idle.
APART = {"dynamodb": ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS")}
# execution environments of a function behind API routes (Lambda scales it with the requests in
# flight; the HTTP API throttles at 100 requests/s): started only as requests overlap
API_CONCURRENCY = 4


def project_root() -> Path:
    """The directory holding template.yaml: ``DEVICEHOOKS_ROOT``, else the current directory or a parent."""
    explicit = os.environ.get("DEVICEHOOKS_ROOT")
    if explicit:
        return Path(explicit).resolve()
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "template.yaml").is_file():
            return candidate
    source = Path(__file__).resolve()
    for candidate in source.parents:
        if (candidate / "template.yaml").is_file():
            return candidate
    raise FileNotFoundError("template.yaml not found (run from the project, or set DEVICEHOOKS_ROOT)")


@dataclass
class ApiRoute:
    method: str
    path: str
    function: str
    authorizer: str | None  # logical id of the Lambda authorizer function, None for none/IAM
    regex: re.Pattern[str]
    rank: tuple[int, int, int]

    @classmethod
    def build(cls, method: str, path: str, function: str, authorizer: str | None) -> ApiRoute:
        pattern = ""
        params = greedy = 0
        for part in path.strip("/").split("/"):
            if part.startswith("{") and part.endswith("+}"):
                pattern += f"/(?P<{part[1:-2]}>.+)"
                greedy += 1
            elif part.startswith("{") and part.endswith("}"):
                pattern += f"/(?P<{part[1:-1]}>[^/]+)"
                params += 1
            else:
                pattern += "/" + re.escape(part)
        # API Gateway prefers exact paths, then fewer greedy/parameter segments, then a method over ANY
        rank = (greedy, params, 1 if method == "ANY" else 0)
        return cls(method, path, function, authorizer, re.compile(f"^{pattern or '/'}$"), rank)


def create_resources(
    template: Mapping[str, Any], overrides: Mapping[str, Any]
) -> tuple[Resolver, dict[str, dict[str, Any]]]:
    """Create the template's tables, queues, key, topic, bus and rules in moto (via ``AWS_ENDPOINT_URL``).

    Returns the resolver (for intrinsics such as the functions' environment) and, per logical id,
    the physical names and ARNs.
    """
    from devicehooks import aws

    physical: dict[str, dict[str, Any]] = {}
    resolver = Resolver(
        parameters=parameter_defaults(template, overrides),
        conditions=template.get("Conditions") or {},
        mappings=template.get("Mappings") or {},
        pseudo={
            "AWS::StackName": STACK,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        },
    )
    # names and ARNs that need no call to moto
    for logical, res in template["Resources"].items():
        kind = res.get("Type", "")
        name = f"{STACK}-{logical}"
        if kind == "AWS::Serverless::Function":
            resolver.refs[logical] = name
            resolver.attributes[(logical, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        elif kind == "AWS::Logs::LogGroup":
            resolver.refs[logical] = name
            resolver.attributes[(logical, "Arn")] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
        elif kind == "AWS::Events::Rule":
            resolver.refs[logical] = name
            resolver.attributes[(logical, "Arn")] = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
        elif kind not in (
            "AWS::DynamoDB::Table",
            "AWS::SQS::Queue",
            "AWS::KMS::Key",
            "AWS::Events::EventBus",
            "AWS::SNS::Topic",
        ):
            resolver.refs[logical] = name

    kms = aws.client("kms")
    for logical, res in resources_of(template, "AWS::KMS::Key").items():
        key = kms.create_key(Description=str((res.get("Properties") or {}).get("Description", logical)))["KeyMetadata"]
        resolver.refs[logical] = key["KeyId"]
        resolver.attributes[(logical, "Arn")] = key["Arn"]
        resolver.attributes[(logical, "KeyId")] = key["KeyId"]
        physical[logical] = {"KeyId": key["KeyId"], "Arn": key["Arn"]}

    dynamodb = aws.client("dynamodb")
    for logical, res in resources_of(template, "AWS::DynamoDB::Table").items():
        props = resolver.resolve(res["Properties"])
        name = f"{STACK}-{logical}"
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if props.get("LocalSecondaryIndexes"):
            kwargs["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
        stream = (props.get("StreamSpecification") or {}).get("StreamViewType")
        if stream:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
        described = dynamodb.create_table(**kwargs)["TableDescription"]
        arn = described["TableArn"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        resolver.refs[logical] = name
        resolver.attributes[(logical, "Arn")] = arn
        physical[logical] = {"TableName": name, "Arn": arn}
        if stream:
            resolver.attributes[(logical, "StreamArn")] = described["LatestStreamArn"]
            physical[logical]["StreamArn"] = described["LatestStreamArn"]

    sqs = aws.client("sqs")
    queues = resources_of(template, "AWS::SQS::Queue")
    for logical in queue_order(queues):
        props = resolver.resolve(queues[logical].get("Properties") or {})
        name = props.get("QueueName") or f"{STACK}-{logical}"
        attributes = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
        ):
            if key in props:
                attributes[key] = str(props[key])
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        resolver.refs[logical] = url
        resolver.attributes[(logical, "Arn")] = arn
        resolver.attributes[(logical, "QueueName")] = name
        resolver.attributes[(logical, "QueueUrl")] = url
        physical[logical] = {"QueueUrl": url, "Arn": arn, "QueueName": name}

    sns = aws.client("sns")
    for logical in resources_of(template, "AWS::SNS::Topic"):
        arn = sns.create_topic(Name=f"{STACK}-{logical}")["TopicArn"]
        resolver.refs[logical] = arn
        resolver.attributes[(logical, "TopicArn")] = arn
        physical[logical] = {"TopicArn": arn}

    events = aws.client("events")
    for logical, res in resources_of(template, "AWS::Events::EventBus").items():
        props = resolver.resolve(res.get("Properties") or {})
        name = props.get("Name") or f"{STACK}-{logical}"
        arn = events.create_event_bus(Name=name)["EventBusArn"]
        resolver.refs[logical] = name
        resolver.attributes[(logical, "Arn")] = arn
        resolver.attributes[(logical, "Name")] = name
        physical[logical] = {"Name": name, "Arn": arn}
    for logical, res in resources_of(template, "AWS::Events::Rule").items():
        props = resolver.resolve(res.get("Properties") or {})
        name = f"{STACK}-{logical}"
        bus = props.get("EventBusName", "default")
        events.put_rule(
            Name=name,
            EventBusName=bus,
            EventPattern=json.dumps(props["EventPattern"]),
            State=props.get("State", "ENABLED"),
        )
        targets = [{"Id": t["Id"], "Arn": t["Arn"]} for t in props.get("Targets", [])]
        if targets:
            events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
        physical[logical] = {"Name": name, "EventBusName": bus}
    return resolver, physical


def _references(value: Any) -> set[str]:
    """Logical ids an intrinsic refers to (Ref, GetAtt, ${X} in Sub)."""
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    found: set[str] = set()
    for key, arg in value.items():
        if key == "Ref" and isinstance(arg, str):
            found.add(arg)
        elif key == "Fn::GetAtt":
            found.add(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
        elif key == "Fn::Sub":
            text = arg if isinstance(arg, str) else arg[0]
            found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
        else:
            found |= _references(arg)
    return found


class LocalStack:
    """Everything ``devicehooks local`` runs, startable and stoppable from code (tests use it)."""

    def __init__(self, root: Path | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.root = root or project_root()
        self.host = host
        self.port = port
        self.template = load_template(self.root / "template.yaml")
        self.functions: dict[str, FunctionPool] = {}
        self.routes: list[ApiRoute] = []
        self.sources: list[SqsSource] = []
        self.pollers: list[SqsPoller | StreamPoller] = []
        self.streams: list[StreamSource] = []
        self.physical: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._motos: list[subprocess.Popen[str]] = []
        self._server: Any = None
        # how the SDK reaches moto's servers: AWS_ENDPOINT_URL (every service not APART) and
        # AWS_ENDPOINT_URL_<SERVICE> for each APART one, each naming its server's URL
        self.aws_endpoints: dict[str, str] = {}
        self.redelivery_seconds = int(os.environ.get("DEVICEHOOKS_LOCAL_REDELIVERY_SECONDS", "2"))
        self.shutdown_grace = 10.0  # seconds stop() waits for batches in flight before giving them back
        self.access_log = True

    # ------------------------------------------------------------------ lifecycle
    def start(self, serve_http: bool = True, poll: bool = True) -> None:
        """Start moto, create the resources, load the functions; then serve and poll unless told not to."""
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # our server's request lines

        self._start_moto()
        os.environ.update(self._aws_variables())  # this process (the pollers, the gateway) calls moto too
        from devicehooks import aws

        aws.reset_clients()
        resolver = self._create_resources()
        self._load_functions(resolver)
        self.check_settings()
        warm = os.environ.get("DEVICEHOOKS_LOCAL_WARM", "").strip()
        if warm not in ("", "0"):
            self.warm(None if warm in ("1", "all") else [name.strip() for name in warm.split(",")])
        if serve_http:
            self._start_server()
        for source in self.sources if poll else []:
            poller = SqsPoller(
                source,
                invoke=self.functions[source.function].invoke,
                client=lambda: self._client("sqs"),
                redelivery_seconds=self.redelivery_seconds,
            )
            poller.start()
            self.pollers.append(poller)
        # DEVICEHOOKS_LOCAL_STREAMS=0: no stream is read (bench/delivery.py runs the health counter
        # itself, metered, over the records it made: the stack's own would write the same items)
        reading = poll and os.environ.get("DEVICEHOOKS_LOCAL_STREAMS", "1") != "0"
        for stream in self.streams if reading else []:
            reader = StreamPoller(
                stream, invoke=self.functions[stream.function].invoke, client=lambda: self._client("dynamodbstreams")
            )
            reader.start()
            self.pollers.append(reader)

    def check_settings(self) -> None:
        """Each function's ``DEVICEHOOKS_*`` settings, checked as its cold start checks them: a value
        the developer exported that the function would refuse (``DEVICEHOOKS_MAX_INTEGRATIONS=150``)
        stops the stack before it serves, with one :class:`ConfigError` naming it, rather than every
        cold start failing with a traceback."""
        from devicehooks.config import problems_in
        from devicehooks.errors import ConfigError

        problems = [p for function in self.functions.values() for p in problems_in(function.spec.environment)]
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(dict.fromkeys(problems)))

    def warm(self, functions: list[str] | None = None) -> None:
        """Start every execution environment the ``functions`` (logical ids; all by default) may have,
        as provisioned concurrency keeps them ready: a benchmark then measures no cold start."""
        chosen = [self.functions[name] for name in functions] if functions else list(self.functions.values())
        warmers = [threading.Thread(target=f.warm, daemon=True) for f in chosen]
        for warmer in warmers:
            warmer.start()
        for warmer in warmers:
            warmer.join()

    def _aws_variables(self) -> dict[str, str]:
        """How code on this machine reaches the stack's AWS (moto) as Lambda's functions reach AWS."""
        return {
            **self.aws_endpoints,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's dummy credentials
            "AWS_SESSION_TOKEN": "testing",  # noqa: S105
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @property
    def moto_endpoint(self) -> str:
        """The server of every service not ``APART`` (SQS, EventBridge, KMS, SNS)."""
        return self.aws_endpoints.get("AWS_ENDPOINT_URL", "")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and polling: batches in flight finish (for up to ``shutdown_grace`` seconds)
        or their messages are made visible again; then moto stops."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)
        stoppers = [
            threading.Thread(target=p.stop, args=(self.shutdown_grace,), name=f"stop-{p.label}") for p in self.pollers
        ]
        for stopper in stoppers:  # side by side: the sources' batches finish together
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        for function in self.functions.values():
            function.stop()
        self._stop_moto()
        # invocations still running past the grace period fail fast without moto; wait a little for them
        deadline = time.monotonic() + 10
        left = [t for p in self.pollers for t in p.join(max(0.0, deadline - time.monotonic()))]
        if left:
            names = ", ".join(t.name for t in left)
            print(f"devicehooks local: invocations still running after stop: {names}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ moto, beside this process
    def _start_moto(self) -> None:
        """moto's servers in child processes (``motoserver.py``), as AWS answers from elsewhere: one
        for each ``APART`` service and one for the rest, started side by side."""
        variables = {"": ("AWS_ENDPOINT_URL",), **APART}
        with ThreadPoolExecutor(max_workers=len(variables)) as pool:
            starting = {name: pool.submit(motoserver.start) for name in variables}
        started = {name: future.result() for name, future in starting.items() if future.exception() is None}
        self._motos = [process for process, _ in started.values()]
        failed = next((f.exception() for f in starting.values() if f.exception() is not None), None)
        if failed is not None:
            self._stop_moto()
            raise failed
        self.aws_endpoints = {v: started[name][1] for name, names in variables.items() for v in names}

    def _stop_moto(self) -> None:
        for process in self._motos:
            motoserver.stop(process)
        self._motos = []

    # ------------------------------------------------------------------ resources
    def _client(self, service: str) -> Any:
        from devicehooks import aws

        return aws.client(service)

    def _create_resources(self) -> Resolver:
        overrides = {
            "JwtPublicKeys": devkeys.public_pem(),
            "AllowedCidrs": os.environ.get("DEVICEHOOKS_ALLOWED_CIDRS", LOCAL_ALLOWED_CIDRS),
            # no X-Ray daemon here: each function's tracer off (POWERTOOLS_TRACE_DISABLED), as on a
            # stack deployed with Tracing=Disabled
            "Tracing": "Disabled",
        }
        resolver, self.physical = create_resources(self.template, overrides)
        return resolver

    def _function_environment(self, logical: str, resolver: Resolver) -> dict[str, str]:
        """Exactly what Lambda puts in the function's environment: its runtime's variables, the
        template's ``Globals`` and the function's own variables; plus how to reach moto. A developer's
        ``DEVICEHOOKS_*``/``POWERTOOLS_*`` value replaces a variable the function has (not one naming
        the stack's own resources); a variable the function does not have never reaches it."""
        props = self.template["Resources"][logical].get("Properties") or {}
        globals_env = ((self.template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
        resources = set(self.template["Resources"])
        code_uri = (self.root / str(props["CodeUri"])).resolve()
        name = resolver.refs[logical]
        env = lambda_variables(name, str(props["Handler"]), code_uri, self._memory(props, resolver), REGION)
        env.update(self._aws_variables())
        if "PYTHONPATH" in os.environ:  # where this interpreter finds the project, when not installed
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        for source in (globals_env, props.get("Environment") or {}):
            for key, raw in (source.get("Variables") or {}).items():
                given = os.environ.get(key) if key.startswith(("DEVICEHOOKS_", "POWERTOOLS_")) else None
                bound = bool(_references(raw) & resources)
                env[key] = given if given is not None and not bound else str(resolver.resolve(raw))
        return env

    def _memory(self, props: Mapping[str, Any], resolver: Resolver) -> int:
        glob = (self.template.get("Globals") or {}).get("Function") or {}
        return int(resolver.resolve(props.get("MemorySize", glob.get("MemorySize", 128))))

    # ------------------------------------------------------------------ functions
    def _load_functions(self, resolver: Resolver) -> None:
        """Each function's routes and event sources, and its execution environments (none started:
        an invocation starts one when it finds none free)."""
        template = self.template
        glob = (template.get("Globals") or {}).get("Function") or {}
        apis = resources_of(template, "AWS::Serverless::HttpApi")
        specs: dict[str, dict[str, Any]] = {}
        for logical, res in resources_of(template, "AWS::Serverless::Function").items():
            props = res.get("Properties") or {}
            specs[logical] = {
                "logical_id": logical,
                "name": resolver.refs[logical],
                "code_uri": (self.root / str(props["CodeUri"])).resolve(),
                "handler": str(props["Handler"]),
                "timeout": float(resolver.resolve(props.get("Timeout", glob.get("Timeout", 3)))),
                "memory": self._memory(props, resolver),
                "environment": self._function_environment(logical, resolver),
            }
            for event_name, event in (props.get("Events") or {}).items():
                eprops = event.get("Properties") or {}
                if event.get("Type") == "HttpApi":
                    api_id = eprops.get("ApiId", {}).get("Ref") if isinstance(eprops.get("ApiId"), dict) else None
                    api_auth = ((apis.get(api_id or "", {}).get("Properties") or {}).get("Auth")) or {}
                    chosen = (eprops.get("Auth") or {}).get("Authorizer", api_auth.get("DefaultAuthorizer"))
                    authorizer = None
                    if chosen and chosen not in ("NONE", "AWS_IAM"):
                        arn = api_auth["Authorizers"][chosen]["FunctionArn"]
                        authorizer = arn["Fn::GetAtt"][0]
                    self.routes.append(
                        ApiRoute.build(
                            str(eprops.get("Method", "ANY")).upper(), str(eprops["Path"]), logical, authorizer
                        )
                    )
                elif event.get("Type") == "SQS" and resolver.resolve(eprops.get("Enabled", True)) is not False:
                    self.sources.append(self._sqs_source(logical, str(event_name), eprops, resolver))
                elif event.get("Type") == "DynamoDB" and resolver.resolve(eprops.get("Enabled", True)) is not False:
                    self.streams.append(self._stream_source(logical, str(event_name), eprops, resolver))
        # an SQS-invoked function: as many environments as its sources' batches in flight at most;
        # one behind API routes (or an authorizer): API_CONCURRENCY, started as requests overlap
        behind_api = {r.function for r in self.routes} | {r.authorizer for r in self.routes if r.authorizer}
        api_concurrency = int(os.environ.get("DEVICEHOOKS_LOCAL_API_CONCURRENCY", str(API_CONCURRENCY)))
        for logical, spec in specs.items():
            polled = sum(s.max_concurrency for s in self.sources if s.function == logical)
            polled += sum(1 for s in self.streams if s.function == logical)  # a batch per shard: moto has one
            concurrency = polled + (api_concurrency if logical in behind_api else 0)
            self.functions[logical] = FunctionPool(FunctionSpec(concurrency=max(1, concurrency), **spec))
        self.routes.sort(key=lambda r: r.rank)

    def _sqs_source(self, function: str, name: str, eprops: Mapping[str, Any], resolver: Resolver) -> SqsSource:
        """An SQS event source: its queue, batch size and window, and its MaximumConcurrency (Lambda
        scales a source without one far beyond what one process should run: UNBOUNDED_CONCURRENCY)."""
        queue_logical = eprops["Queue"]["Fn::GetAtt"][0]
        scaling = resolver.resolve(eprops.get("ScalingConfig") or {})
        return SqsSource(
            function=function,
            name=name,
            queue_url=self.physical[queue_logical]["QueueUrl"],
            queue_arn=self.physical[queue_logical]["Arn"],
            batch_size=int(resolver.resolve(eprops.get("BatchSize", 10))),
            batching_window=float(resolver.resolve(eprops.get("MaximumBatchingWindowInSeconds", 0))),
            max_concurrency=min(
                int(scaling.get("MaximumConcurrency", UNBOUNDED_CONCURRENCY)),
                # a developer's (or a benchmark's) cap: invocations side by side in one process share
                # its CPU, so each one's duration counts the others' work too (P6 measures with 1)
                int(os.environ.get("DEVICEHOOKS_LOCAL_MAX_CONCURRENCY", "1000")),
            ),
            report_failures="ReportBatchItemFailures" in (resolver.resolve(eprops.get("FunctionResponseTypes")) or []),
        )

    @staticmethod
    def _stream_source(function: str, name: str, eprops: Mapping[str, Any], resolver: Resolver) -> StreamSource:
        """A DynamoDB stream event source: its stream, batch size and window, retries."""
        return StreamSource(
            function=function,
            name=name,
            stream_arn=str(resolver.resolve(eprops["Stream"])),
            batch_size=int(resolver.resolve(eprops.get("BatchSize", 100))),
            batching_window=min(
                float(resolver.resolve(eprops.get("MaximumBatchingWindowInSeconds", 0))),
                # a test's (or a developer's) cap: the health view need not lag by the template's window
                float(os.environ.get("DEVICEHOOKS_LOCAL_STREAM_WINDOW", "inf")),
            ),
            report_failures="ReportBatchItemFailures" in (resolver.resolve(eprops.get("FunctionResponseTypes")) or []),
            starting_position=str(resolver.resolve(eprops.get("StartingPosition", "TRIM_HORIZON"))),
            max_retries=int(resolver.resolve(eprops.get("MaximumRetryAttempts", -1))),
            bisect=bool(resolver.resolve(eprops.get("BisectBatchOnFunctionError", False))),
            filters=tuple(
                json.loads(str(f["Pattern"]))
                for f in (resolver.resolve(eprops.get("FilterCriteria") or {}).get("Filters") or [])
            ),
        )

    # ------------------------------------------------------------------ HTTP
    def _start_server(self) -> None:
        from werkzeug.serving import make_server

        self._server = make_server(self.host, self.port, self._wsgi, threaded=True)
        self.port = int(self._server.server_port)
        thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        try:
            status, headers, body = self.handle_http(environ)
        except InvocationError as exc:  # the function's environment printed its own traceback
            print(f"devicehooks local: {exc}", file=sys.stderr, flush=True)
            status, headers, body = 500, [("Content-Type", "application/json")], b'{"message":"Internal Server Error"}'
        except Exception:  # noqa: BLE001 - the gateway answers 500 whatever the function did
            traceback.print_exc()
            status, headers, body = (
                500,
                [("Content-Type", "application/json")],
                b'{"message":"Internal Server Error"}',
            )
        reason = _REASONS.get(status, "Unknown")
        if self.access_log:
            path = str(environ.get("RAW_URI") or environ.get("PATH_INFO", "/")).split("?", 1)[0]
            took = (time.perf_counter() - started) * 1000
            print(f"{environ['REQUEST_METHOD']} {path} {status} {took:.0f}ms", file=sys.stderr, flush=True)
        start_response(f"{status} {reason}", headers + [("Content-Length", str(len(body)))])
        return [body]

    def handle_http(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        method = str(environ["REQUEST_METHOD"]).upper()
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        path, _, query = str(raw_path).partition("?")
        if path.startswith(("http://", "https://")):
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_API_PAYLOAD:
            return 413, [("Content-Type", "application/json")], b'{"message":"Request Entity Too Large"}'
        body = environ["wsgi.input"].read(length) if length else b""
        headers: dict[str, str] = {}
        for key, val in environ.items():
            if key.startswith("HTTP_"):
                headers[key[5:].replace("_", "-").lower()] = str(val)
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = str(environ["CONTENT_LENGTH"])
        if path.startswith("/local/"):
            return self._local_endpoint(method, path, body)
        route, params = self._match(method, path)
        if route is None:
            if method in ("GET", "HEAD") and not path.startswith("/api/"):
                return self._static(path)
            return 404, [("Content-Type", "application/json")], b'{"message":"Not Found"}'
        event = self._api_event(method, path, query, headers, body, route, params, environ)
        if route.authorizer is not None:
            verdict = self.functions[route.authorizer].invoke(self._authorizer_event(event, route))
            if not (isinstance(verdict, dict) and verdict.get("isAuthorized") is True):
                return 403, [("Content-Type", "application/json")], b'{"message":"Forbidden"}'
            event["requestContext"]["authorizer"] = {"lambda": verdict.get("context") or {}}
        result = self.functions[route.function].invoke(event)
        return self._api_response(result)

    def _local_endpoint(self, method: str, path: str, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        """Local-stack-only helpers for the web UI (never deployed): who we are, development tokens."""
        json_type = [("Content-Type", "application/json")]
        if path == "/local/info" and method == "GET":
            info = {
                "local": True,
                "moto_endpoint": self.moto_endpoint,
                "aws_endpoints": self.aws_endpoints,
                "resources": self.physical,
            }
            return 200, json_type, json.dumps(info).encode()
        if path == "/local/dev-token" and method == "POST":
            try:
                request = json.loads(body or b"{}")
                tenant = str(request.get("tenant", ""))
            except (ValueError, AttributeError):
                return 400, json_type, b'{"error":"body must be {"tenant": "<id>"}"}'
            # the UI's token is an admin's where a claim decides (standalone RBAC): the developer's
            # stack runs with their DEVICEHOOKS_ADMIN_CLAIM(_VALUES), so the UI can manage webhooks
            claim = os.environ.get("DEVICEHOOKS_ADMIN_CLAIM", "").strip()
            values = [v.strip() for v in os.environ.get("DEVICEHOOKS_ADMIN_CLAIM_VALUES", "admin").split(",")]
            extra = {claim: [values[0]]} if claim and values and values[0] else None
            token = devkeys.mint_token(tenant[:256], ttl=8 * 3600, extra=extra)
            return 200, json_type, json.dumps({"token": token, "tenant": tenant}).encode()
        return 404, json_type, b'{"message":"Not Found"}'

    def _match(self, method: str, path: str) -> tuple[ApiRoute | None, dict[str, str]]:
        for route in self.routes:
            if route.method not in ("ANY", method):
                continue
            found = route.regex.match(path)
            if found:
                return route, found.groupdict()
        return None, {}

    def _api_event(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        route: ApiRoute,
        params: dict[str, str],
        environ: Mapping[str, Any],
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        cookies = [c.strip() for c in headers.pop("cookie", "").split(";") if c.strip()]
        query_params: dict[str, str] = {}
        for key, val in parse_qsl(query, keep_blank_values=True):
            query_params[key] = f"{query_params[key]},{val}" if key in query_params else val
        try:
            text, encoded = body.decode(), False
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode(), True
        route_key = f"{route.method} {route.path}"
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": "local",
                "domainName": headers.get("host", f"{self.host}:{self.port}"),
                "domainPrefix": "local",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": str(environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
                    "sourceIp": str(environ.get("REMOTE_ADDR", "127.0.0.1")),
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": encoded,
        }
        if cookies:
            event["cookies"] = cookies
        if query_params:
            event["queryStringParameters"] = query_params
        if params:
            event["pathParameters"] = params
        if body:
            event["body"] = text
        return event

    @staticmethod
    def _authorizer_event(event: Mapping[str, Any], route: ApiRoute) -> dict[str, Any]:
        request = {k: v for k, v in event.items() if k not in ("body", "isBase64Encoded")}
        request["type"] = "REQUEST"
        request["routeArn"] = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:local/$default/{route.method}{route.path}"
        request["identitySource"] = []
        return request

    @staticmethod
    def _api_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if not isinstance(result, dict) or "statusCode" not in result:
            body = json.dumps(result).encode()
            return 200, [("Content-Type", "application/json")], body
        headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
        for key, values in (result.get("multiValueHeaders") or {}).items():
            headers += [(key, str(v)) for v in values]
        for cookie in result.get("cookies") or []:
            headers.append(("Set-Cookie", cookie))
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode()
        return int(result["statusCode"]), headers, body

    def _static(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """The web UI's files, as the deployed bucket serves them (same files, same types)."""
        from devicehooks_dev.publish import content_type, ui_base

        base = ui_base(self.root / "ui").resolve()
        target = (base / (path.lstrip("/") or "index.html")).resolve()
        if target.is_dir():
            target = target / "index.html"
        if base in target.parents and target.is_file():
            return (
                200,
                [("Content-Type", content_type(target.name)), ("Cache-Control", "no-cache")],
                target.read_bytes(),
            )
        return 404, [("Content-Type", "application/json")], b'{"message":"Not Found"}'


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
