"""template.yaml holds the conventions the service relies on (sam validate --lint and cfn-lint
run in ``make template-check``; these tests check what the linters do not)."""

from __future__ import annotations

import json
import re
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from devicehooks import observability
from devicehooks.domain.decisions import DispatchPolicy
from devicehooks.domain.models import EVENT_TYPES
from devicehooks_dev import layer as layer_requirements
from devicehooks_dev import templatelint
from devicehooks_dev.local.template import Resolver, load_template, resources_of
from tests.conftest import EVENTS, ROOT

pytestmark = pytest.mark.template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of(template, "AWS::Serverless::Function")


def test_functions_run_python312_on_arm64(template: dict[str, Any]) -> None:
    glob = template["Globals"]["Function"]
    assert glob["Runtime"] == "python3.12"
    assert glob["Architectures"] == ["arm64"]
    for name, fn in _functions(template).items():
        assert "Runtime" not in fn["Properties"] or fn["Properties"]["Runtime"] == "python3.12", name


def test_every_function_has_its_own_log_group_with_retention(template: dict[str, Any]) -> None:
    groups = resources_of(template, "AWS::Logs::LogGroup")
    for name, fn in _functions(template).items():
        ref = fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert ref in groups, name
        assert groups[ref]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_every_queue_is_encrypted_and_every_work_queue_has_a_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    dead_letter = {name for name in queues if name.endswith("DeadLetterQueue")}
    redrive_targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q["Properties"]
    }
    assert redrive_targets and redrive_targets <= dead_letter
    for name, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, name
        if name not in dead_letter:
            assert "RedrivePolicy" in queue["Properties"], f"{name} has no dead-letter queue"


def test_every_dead_letter_queue_has_an_alarm(template: dict[str, Any]) -> None:
    dead_letter = {name for name in resources_of(template, "AWS::SQS::Queue") if name.endswith("DeadLetterQueue")}
    assert len(dead_letter) == 3
    alarmed = {
        dim["Value"]["Fn::GetAtt"][0]
        for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values()
        for dim in alarm["Properties"].get("Dimensions", [])
        if dim["Name"] == "QueueName"
    }
    assert dead_letter <= alarmed


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: alarm["Properties"] for name, alarm in resources_of(template, "AWS::CloudWatch::Alarm").items()}


def test_every_alarm_notifies_the_alarm_topic_and_says_where_to_look(template: dict[str, Any]) -> None:
    alarms = _alarms(template)
    assert len(alarms) == 11
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name  # no messages, no invocations: all is well
        description = alarm["AlarmDescription"]
        text = description["Fn::Sub"] if isinstance(description, dict) else description
        assert "docs/operations.md" in text and "First check" in text, name
        assert len(text) <= 1024, name  # CloudWatch's limit (before substitution, near enough)


def test_the_intake_and_dispatch_queues_alarm_when_their_oldest_message_is_older_than_the_parameter(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"]["BacklogAgeAlarmSeconds"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 300, 60)
    backlog = {
        alarm["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: alarm
        for alarm in _alarms(template).values()
        if alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
    }
    assert set(backlog) == {"IntakeQueue", "DispatchQueue"}
    for queue, alarm in backlog.items():
        assert alarm["Namespace"] == "AWS/SQS", queue
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
        assert alarm["Statistic"] == "Maximum", queue
        assert alarm["Threshold"] == {"Ref": "BacklogAgeAlarmSeconds"}, queue
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", queue


@pytest.mark.parametrize("function", ["DispatcherFunction", "IntakeFunction"])
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_the_dispatcher_and_the_intake_alarm_on_any_error_or_throttle_in_five_minutes(
    template: dict[str, Any], function: str, metric: str
) -> None:
    # a failed delivery is recorded and retried, not a Lambda error: Errors are crashes and timeouts
    [alarm] = [
        alarm
        for alarm in _alarms(template).values()
        if alarm["Namespace"] == "AWS/Lambda"
        and alarm["MetricName"] == metric
        and alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
    ]
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Sum", 300, 1)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def _dashboard(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The dashboard's body with its !Sub variables substituted (parameters by their defaults,
    anything else by a placeholder naming it, as <DispatchQueue.QueueName>), and the variables."""
    body = resources_of(template, "AWS::CloudWatch::Dashboard")["OperationsDashboard"]["Properties"]["DashboardBody"]
    text = body["Fn::Sub"]
    assert isinstance(text, str)
    parameters = template["Parameters"]
    variables = set(_VARIABLE.findall(text))

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return str(parameters[name]["Default"]) if name in parameters else f"<{name}>"

    return json.loads(_VARIABLE.sub(substitute, text)), variables


def _metric_lines(dashboard: dict[str, Any]) -> list[tuple[str, str, dict[str, str], dict[str, Any]]]:
    """(namespace, metric name, dimensions, options) of every line of every metric widget."""
    lines = []
    for widget in dashboard["widgets"]:
        if widget["type"] != "metric":
            continue
        props = widget["properties"]
        for line in props["metrics"]:
            assert "." not in line[:4], "every line spells out its namespace and dimensions"
            namespace, name, *rest = line
            options = rest.pop() if rest and isinstance(rest[-1], dict) else {}
            lines.append((namespace, name, dict(zip(rest[::2], rest[1::2], strict=True)), {**props, **options}))
    return lines


def test_the_dashboard_is_valid_json_once_substituted_and_names_only_what_the_template_has(
    template: dict[str, Any],
) -> None:
    dashboard_resource = resources_of(template, "AWS::CloudWatch::Dashboard")
    assert set(dashboard_resource) == {"OperationsDashboard"}
    assert dashboard_resource["OperationsDashboard"]["Properties"]["DashboardName"] == {"Ref": "AWS::StackName"}
    dashboard, variables = _dashboard(template)
    resources = template["Resources"]
    for variable in variables:
        logical, _, attribute = variable.partition(".")
        assert (
            variable in template["Parameters"]
            or variable in ("AWS::StackName", "AWS::Region")
            or (logical in resources and (not attribute or attribute in ("Arn", "QueueName")))
        ), variable
    for widget in dashboard["widgets"]:
        assert 0 <= widget["x"] and widget["x"] + widget["width"] <= 24, widget
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == "<AWS::Region>", widget["properties"]["title"]


def test_the_dashboard_shows_every_queue_and_dead_letter_queue(template: dict[str, Any]) -> None:
    dashboard, _ = _dashboard(template)
    depth = {
        dims["QueueName"]
        for namespace, name, dims, _ in _metric_lines(dashboard)
        if namespace == "AWS/SQS" and name == "ApproximateNumberOfMessagesVisible"
    }
    age = {
        dims["QueueName"]
        for namespace, name, dims, _ in _metric_lines(dashboard)
        if namespace == "AWS/SQS" and name == "ApproximateAgeOfOldestMessage"
    }
    queues = resources_of(template, "AWS::SQS::Queue")
    assert depth == {f"<{queue}.QueueName>" for queue in queues}
    assert age == {"<IntakeQueue.QueueName>", "<DispatchQueue.QueueName>"}
    # the backlog graph marks where its alarms fire
    [backlog] = [w for w in dashboard["widgets"] if w["properties"].get("title", "").startswith("Backlog")]
    threshold = template["Parameters"]["BacklogAgeAlarmSeconds"]["Default"]
    assert [a["value"] for a in backlog["properties"]["annotations"]["horizontal"]] == [threshold]


def test_the_dashboard_graphs_the_dispatchers_delivery_metrics_as_it_emits_them(template: dict[str, Any]) -> None:
    metric_names = set(observability.DELIVERY_METRICS)
    observability.record_delivery(True, 5)
    observability.record_delivery(False, 7)
    try:  # the names the code emits, not only its constants
        assert set(observability.metrics.metric_set) == metric_names
    finally:
        observability.metrics.clear_metrics()
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    namespace = variables["POWERTOOLS_METRICS_NAMESPACE"]
    assert variables["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}  # each stack's metrics apart
    service = "<AWS::StackName>"  # as _dashboard substitutes it
    dashboard, _ = _dashboard(template)
    emf = [line for line in _metric_lines(dashboard) if line[0] not in ("AWS/SQS", "AWS/Lambda")]
    assert {name for _, name, _, _ in emf} == metric_names
    for line_namespace, name, dims, options in emf:
        assert (line_namespace, dims) == (namespace, {"service": service}), name  # powertools' default dimension
        assert options["period"] == 60, name
    stats = {(name, options["stat"]) for _, name, _, options in emf}
    assert {
        (observability.DELIVERY_SUCCEEDED, "Sum"),
        (observability.DELIVERY_FAILED, "Sum"),
        (observability.DELIVERY_LATENCY, "p50"),
        (observability.DELIVERY_LATENCY, "p99"),
    } == stats


def test_the_dashboard_shows_the_dispatchers_and_the_intakes_lambda_metrics(template: dict[str, Any]) -> None:
    dashboard, _ = _dashboard(template)
    shown = {
        (dims["FunctionName"], name, options["stat"])
        for namespace, name, dims, options in _metric_lines(dashboard)
        if namespace == "AWS/Lambda"
    }
    for function in ("DispatcherFunction", "IntakeFunction"):
        for metric, stat in (
            ("Errors", "Sum"),
            ("Throttles", "Sum"),
            ("ConcurrentExecutions", "Maximum"),
            ("Duration", "p99"),
        ):
            assert (f"<{function}>", metric, stat) in shown, (function, metric)
    # the concurrency graph marks the dispatcher's cap: its event sources' MaximumConcurrency
    events = _functions(template)["DispatcherFunction"]["Properties"]["Events"].values()
    cap = sum(e["Properties"]["ScalingConfig"]["MaximumConcurrency"] for e in events if e["Type"] == "SQS")
    [concurrency] = [w for w in dashboard["widgets"] if w["properties"].get("title") == "Concurrent executions"]
    assert [a["value"] for a in concurrency["properties"]["annotations"]["horizontal"]] == [cap]


def test_the_dashboard_shows_the_state_of_every_alarm(template: dict[str, Any]) -> None:
    dashboard, _ = _dashboard(template)
    [widget] = [w for w in dashboard["widgets"] if w["type"] == "alarm"]
    assert sorted(widget["properties"]["alarms"]) == sorted(f"<{name}.Arn>" for name in _alarms(template))


@pytest.mark.parametrize("delivery_timeout", [2, 5, 10, 15, 20])
def test_timeouts_follow_from_the_delivery_timeout(template: dict[str, Any], delivery_timeout: int) -> None:
    # for every allowed delivery timeout: a batch ends in time (no attempt starts with less than
    # its timeout + 5 s left, DispatchPolicy.attempt_budget) and SQS gives it 6 x the function's time
    allowed = template["Parameters"]["DeliveryTimeoutSeconds"]["AllowedValues"]
    assert delivery_timeout in allowed and set(allowed) == {int(k) for k in template["Mappings"]["DeliveryTimeouts"]}
    resolver = Resolver(parameters={"DeliveryTimeoutSeconds": str(delivery_timeout)}, mappings=template["Mappings"])
    queues = resources_of(template, "AWS::SQS::Queue")
    default_timeout = template["Globals"]["Function"]["Timeout"]
    for name, fn in _functions(template).items():
        for event in (fn["Properties"].get("Events") or {}).values():
            if event["Type"] != "SQS":
                continue
            queue = queues[event["Properties"]["Queue"]["Fn::GetAtt"][0]]
            timeout = int(resolver.resolve(fn["Properties"].get("Timeout", default_timeout)))
            visibility = int(resolver.resolve(queue["Properties"]["VisibilityTimeout"]))
            if name == "DispatcherFunction":  # the one that POSTs: its batch ends in time
                budget = DispatchPolicy(delivery_timeout=delivery_timeout).attempt_budget
                assert timeout >= 3 * delivery_timeout + 30 > budget
            assert visibility >= 6 * timeout
            assert "ReportBatchItemFailures" in event["Properties"]["FunctionResponseTypes"]


def test_tables_are_encrypted_with_point_in_time_recovery_and_activity_and_webhook_state_expire(
    template: dict[str, Any],
) -> None:
    tables = resources_of(template, "AWS::DynamoDB::Table")
    for name, table in tables.items():
        props = table["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert table["DeletionPolicy"] == "Retain", name
    for name in ("ActivityLogTable", "IntegrationsTable"):  # events; webhooks' state and rate items
        ttl = tables[name]["Properties"]["TimeToLiveSpecification"]
        assert ttl == {"AttributeName": "expire_ts", "Enabled": True}, name


def test_the_health_counter_reads_the_activity_tables_stream_and_may_only_update_its_items(
    template: dict[str, Any],
) -> None:
    # what a write added is told by the item before and after it (store/activity_stream.py)
    table = template["Resources"]["ActivityLogTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    props = _functions(template)["HealthCounterFunction"]["Properties"]
    [source] = props["Events"].values()
    assert source["Type"] == "DynamoDB"
    events = source["Properties"]
    assert events["Stream"] == {"Fn::GetAtt": ["ActivityLogTable", "StreamArn"]}
    assert events["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert events["BisectBatchOnFunctionError"] is True and events["MaximumRetryAttempts"] >= 1
    assert (events["BatchSize"], events["MaximumBatchingWindowInSeconds"]) == (100, 10)
    # event items' writes only: no invocation for markers, removals or the counter's own items
    [pattern] = [json.loads(f["Pattern"]) for f in events["FilterCriteria"]["Filters"]]
    assert pattern == {"eventName": ["INSERT", "MODIFY"], "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "E#"}]}}}}
    # its code's one call: UpdateItem on the activity table (SAM adds the stream's reads)
    statements = [s for p in props["Policies"] for s in p["Statement"]]
    assert [(s["Action"], s["Resource"]) for s in statements] == [
        ("dynamodb:UpdateItem", {"Fn::GetAtt": ["ActivityLogTable", "Arn"]})
    ]
    # off the delivery path: its errors and its lag alarm (IteratorAge, the stream's records waiting)
    watched = {
        (a["MetricName"], a["Statistic"])
        for a in _alarms(template).values()
        if a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "HealthCounterFunction"}}]
    }
    assert watched == {("Errors", "Sum"), ("IteratorAge", "Maximum")}


def _kms_actions(template: dict[str, Any], function: str) -> set[str]:
    policies = _functions(template)[function]["Properties"].get("Policies", [])
    statements = [s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    return {s["Action"] for s in statements if str(s["Action"]).startswith("kms:")}


def test_the_activity_table_has_its_three_indexes_keys_only_but_by_state(template: dict[str, Any]) -> None:
    props = template["Resources"]["ActivityLogTable"]["Properties"]
    gsis = props["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in gsis] == ["by_webhook", "by_device", "by_state"]  # by time: the table
    assert all(g["Projection"] == {"ProjectionType": "KEYS_ONLY"} for g in gsis[:2])
    # by_state shows each delivery's webhook
    assert gsis[2]["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["gsi2pk"]}
    keyed = {k["AttributeName"] for g in gsis for k in g["KeySchema"]} | {"pk", "sk"}
    assert {a["AttributeName"] for a in props["AttributeDefinitions"]} == keyed  # CloudFormation's rule


def test_the_secrets_key_rotates_and_only_signing_functions_may_decrypt(template: dict[str, Any]) -> None:
    key = resources_of(template, "AWS::KMS::Key")["SecretsKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert _kms_actions(template, "ManagementFunction") == {"kms:Encrypt", "kms:Decrypt"}  # decrypt: test sends
    assert _kms_actions(template, "DispatcherFunction") == {"kms:Decrypt"}
    assert _kms_actions(template, "InternalFunction") == set()
    assert _kms_actions(template, "AuthorizerFunction") == set()


def test_the_rule_routes_every_device_event_type_to_the_intake_and_on_to_the_fair_dispatch_queue(
    template: dict[str, Any],
) -> None:
    rule = resources_of(template, "AWS::Events::Rule")["DeviceEventsRule"]["Properties"]
    assert rule["EventPattern"]["source"] == [{"Ref": "EventSource"}]
    assert (
        sorted(rule["EventPattern"]["detail-type"])
        == sorted(EVENT_TYPES)
        == [
            "device-decommissioned",
            "device-inventory-changed",
            "device-provisioned",
            "device-status-changed",
        ]
    )
    # a rule's SQS target cannot give each event its tenant's group: the intake does
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["IntakeQueue", "Arn"]}
    intake = _functions(template)["IntakeFunction"]["Properties"]
    assert intake["Events"]["BusEvents"]["Properties"]["Queue"] == {"Fn::GetAtt": ["IntakeQueue", "Arn"]}
    assert intake["Environment"]["Variables"]["DEVICEHOOKS_DISPATCH_QUEUE_URL"] == {"Ref": "DispatchQueue"}
    dispatcher = _functions(template)["DispatcherFunction"]["Properties"]
    assert dispatcher["Events"]["DeviceEvents"]["Properties"]["Queue"] == {"Fn::GetAtt": ["DispatchQueue", "Arn"]}


def test_management_routes_use_the_jwt_authorizer_except_the_api_documents(template: dict[str, Any]) -> None:
    api = resources_of(template, "AWS::Serverless::HttpApi")["HttpApi"]["Properties"]["Auth"]
    assert api["DefaultAuthorizer"] == "ManagementJwt"
    events = _functions(template)["ManagementFunction"]["Properties"]["Events"]
    public = {
        e["Properties"]["Path"] for e in events.values() if e["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    }
    assert public == {"/api/management/v1/iot-manager/openapi.json", "/api/management/v1/iot-manager/docs"}


def test_outputs_name_the_api_url(template: dict[str, Any]) -> None:
    assert "ApiUrl" in template["Outputs"]


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_sample_events_are_valid_json_for_sam_local_invoke(path: Any) -> None:
    event = json.loads(path.read_text())
    assert isinstance(event, dict) and event


# ---------------------------------------------------------------------------- the layer's requirements
def test_layer_requirements_are_generated_from_pyproject() -> None:
    committed = layer_requirements.REQUIREMENTS.read_text() if layer_requirements.REQUIREMENTS.exists() else ""
    assert committed == layer_requirements.render(), (
        "layers/common/requirements.txt is not what pyproject.toml gives: run `make requirements`"
    )


def test_the_layer_requirements_leave_out_only_what_the_runtime_provides() -> None:
    text = layer_requirements.render()
    shipped = {layer_requirements.requirement_name(line) for line in text.splitlines() if not line.startswith("#")}
    assert text.startswith("# Generated from pyproject.toml by `make requirements`")
    assert "# runtime-provided: botocore\n" in text  # the line layers/common/prune.py reads
    assert not {"boto3", "botocore", "requests"} & shipped
    assert shipped == {"aws-lambda-powertools", "pydantic", "pyjwt", "urllib3"}


# ---------------------------------------------------------------------------- what sam build makes
# `make template-check` runs `sam build --build-dir .aws-sam/check` (for python3.12 on arm64);
# these tests read its output: the layer and each function hold only what Lambda runs.
BUILD = ROOT / ".aws-sam" / "check"
LAYER = BUILD / "CommonLayer" / "python"
MAKE_IT = "run `make template-check` (it runs sam build into .aws-sam/check; sam needs python3.12)"
SUBPACKAGES = {"api", "delivery", "domain", "handlers", "security", "services", "store"}
# modules of devicehooks_dev (the local stack, the CLI, dev keys, test doubles...): never in the layer
DEV_MODULES = {"local", "cli", "devkeys", "doubles", "motofixes", "receiver", "redrive", "publish"}
# development tools and the runtime's own SDK: never in the layer (as distributions or import names)
DEV_PACKAGES = {
    "moto",
    "pytest",
    "_pytest",
    "playwright",
    "schemathesis",
    "hypothesis",
    "yaml",
    "pyyaml",
    "requests",
    "boto3",
    "botocore",
    "s3transfer",
    "mypy",
    "ruff",
    "cfn-lint",
    "devicehooks-dev",
    "devicehooks_dev",
}
# the Lambda python3.12 arm64 runtime, for the markers of Requires-Dist
LAMBDA_ENVIRONMENT = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
}


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# what layers/common/prune.py removes from the built layer: requirements.txt's runtime-provided line
RUNTIME_PROVIDED = {
    _normalize(name)
    for line in layer_requirements.REQUIREMENTS.read_text().splitlines()
    if line.startswith("# runtime-provided:")
    for name in line.removeprefix("# runtime-provided:").replace(",", " ").split()
}


@pytest.fixture(scope="module")
def built_layer() -> Path:
    if not LAYER.is_dir():
        pytest.fail(f"no built layer at {LAYER.relative_to(ROOT)}: {MAKE_IT}")
    return LAYER


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _modules(package: Path) -> set[str]:
    """The dotted module names of a package's .py files, relative to the package."""
    return {
        ".".join(p.relative_to(package).with_suffix("").parts)
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }


def _distributions(layer: Path) -> dict[str, dict[str, Any]]:
    """Every distribution installed in the layer: name, version, Requires-Dist, wheel tags, top-level entries."""
    found: dict[str, dict[str, Any]] = {}
    for info in sorted(layer.glob("*.dist-info")):
        metadata = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        wheel = HeaderParser().parsestr((info / "WHEEL").read_text(encoding="utf-8"))
        record = (info / "RECORD").read_text(encoding="utf-8").splitlines()
        found[_normalize(metadata["Name"])] = {
            "version": metadata["Version"],
            "requires": metadata.get_all("Requires-Dist") or [],
            "tags": wheel.get_all("Tag") or [],
            "top_level": {line.split(",")[0].split("/")[0] for line in record if line.strip()} | {info.name},
        }
    return found


def _closure(requirements: list[Requirement], distributions: dict[str, dict[str, Any]]) -> set[str]:
    """The distributions these requirements need on the Lambda runtime, their dependencies included."""

    def applies(req: Requirement, extras: set[str]) -> bool:
        return req.marker is None or any(
            req.marker.evaluate({**LAMBDA_ENVIRONMENT, "extra": extra}) for extra in extras | {""}
        )

    needed: set[str] = set()
    todo = [(req, "requirements.txt") for req in requirements if applies(req, set())]
    while todo:
        req, wanted_by = todo.pop()
        name = _normalize(req.name)
        if name in RUNTIME_PROVIDED:  # the runtime's (aws-xray-sdk's botocore): pruned from the layer
            continue
        assert name in distributions, f"{req} (wanted by {wanted_by}) is not in the layer: {MAKE_IT}"
        if name in needed and not req.extras:
            continue
        needed.add(name)
        todo += [(dep, name) for dep in map(Requirement, distributions[name]["requires"]) if applies(dep, req.extras)]
    return needed


def _print_summary(layer: Path, distributions: dict[str, dict[str, Any]]) -> str:
    top = sorted(p.name for p in layer.iterdir() if not p.name.endswith((".dist-info", ".data")))
    modules = sorted(_modules(layer / "devicehooks"))
    by_package: dict[str, list[str]] = {}
    for module in modules:
        package, _, name = module.rpartition(".")
        by_package.setdefault(package, []).append(name or module)
    lines = [
        f"built layer {layer.relative_to(ROOT)}: {len(_files(layer))} files",
        f"  top level: {', '.join(top)}",
        "  distributions: " + ", ".join(f"{name} {d['version']}" for name, d in sorted(distributions.items())),
        f"  devicehooks ({len(modules)} modules):",
    ]
    lines += [
        f"    {'.'.join(['devicehooks', package]).rstrip('.')}: {' '.join(names)}"
        for package, names in sorted(by_package.items())
    ]
    return "\n".join(lines)


def test_the_built_layer_holds_the_devicehooks_package_and_nothing_of_devicehooks_dev(
    built_layer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    distributions = _distributions(built_layer)
    with capsys.disabled():
        print("\n" + _print_summary(built_layer, distributions))
    package = built_layer / "devicehooks"
    assert (package / "__init__.py").is_file(), f"devicehooks is not in the built layer: {MAKE_IT}"
    assert not [f for f in _files(built_layer) if "devicehooks_dev" in f], "devicehooks_dev is in the layer"
    dev_modules = sorted(m for m in _modules(package) if DEV_MODULES & set(m.split(".")))
    assert not dev_modules, f"development modules in the layer's devicehooks: {dev_modules}"
    assert SUBPACKAGES <= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert (package / "py.typed").is_file()
    others = [f for f in _files(package) if not f.endswith((".py", ".pyc")) and f != "py.typed"]
    assert not others, f"files other than modules in the layer's devicehooks: {others}"
    source = ROOT / "layers" / "common" / "devicehooks"
    assert _modules(package) == _modules(source), f"the built layer is older than layers/common/devicehooks: {MAKE_IT}"


def test_the_built_layer_holds_the_generated_requirements_and_their_dependencies_only(built_layer: Path) -> None:
    distributions = _distributions(built_layer)
    top_level = {p.name for p in built_layer.iterdir()}
    dev = {_normalize(p) for p in DEV_PACKAGES}
    # import names (a dist-info's directory: its name before "-<version>") and distribution names
    dev_found = sorted(
        {n for n in top_level if _normalize(n.split(".")[0].split("-")[0]) in dev} | (set(distributions) & dev)
    )
    assert not dev_found, f"development packages in the layer: {dev_found}"

    requirements = [
        Requirement(line)
        for line in layer_requirements.REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = _closure(requirements, distributions)
    assert set(distributions) == needed, (
        f"distributions in the layer that layers/common/requirements.txt does not need: "
        f"{sorted(set(distributions) - needed)}; {MAKE_IT}"
    )
    # every top-level entry is the devicehooks package, a distribution's or the bytecode of a top-level module
    owned = set().union(*(d["top_level"] for d in distributions.values())) | {"devicehooks", "__pycache__"}
    assert top_level <= owned, f"files of no distribution in the layer: {sorted(top_level - owned)}"
    for name, dist in distributions.items():  # wheels for Lambda's arm64 (or pure Python)
        assert all(tag.endswith(("-any", "aarch64")) for tag in dist["tags"]), f"{name}: {dist['tags']}"


def test_every_module_of_the_built_layer_ships_its_bytecode(built_layer: Path) -> None:
    # Lambda's /opt is read-only: a module without its .pyc is compiled again at every cold start
    missing = [
        str(source.relative_to(built_layer))
        for source in built_layer.rglob("*.py")
        if not (source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc").is_file()
    ]
    assert not missing, f"{len(missing)} modules without bytecode, e.g. {missing[:5]}: {MAKE_IT}"
    sample = (built_layer / "devicehooks" / "__pycache__" / "config.cpython-312.pyc").read_bytes()
    flags = int.from_bytes(sample[4:8], "little")
    assert flags == 0b01, "devicehooks' bytecode is not unchecked-hash (file times change in the zip)"


def test_each_built_function_holds_only_its_entry_point(template: dict[str, Any], built_layer: Path) -> None:
    for name in _functions(template):
        function = BUILD / name
        assert function.is_dir(), f"{name} is not built: {MAKE_IT}"
        files = _files(function)
        assert "app.py" in files, name
        assert set(files) <= {"app.py", "requirements.txt"}, f"{name} holds more than its app.py: {files}"
        requirements = function / "requirements.txt"
        if requirements.exists():
            lines = [line for line in requirements.read_text().splitlines() if line.strip()]
            assert all(line.lstrip().startswith("#") for line in lines), f"{name} installs packages: {lines}"


# ---------------------------------------------------------------------------- optional parameters
@pytest.mark.parametrize("mode", ["Active", "PassThrough", "Disabled"])
def test_the_tracing_parameter_drives_every_functions_tracing_its_role_and_its_tracer(
    template: dict[str, Any], mode: str
) -> None:
    parameter = template["Parameters"]["Tracing"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("Active", ["Active", "PassThrough", "Disabled"])
    assert template["Globals"]["Function"]["Tracing"] == {"Ref": "Tracing"}
    assert all("Tracing" not in fn["Properties"] for fn in _functions(template).values())  # Globals' for all
    cfn = templatelint.translate(template, {**templatelint.REQUIRED, "Tracing": mode})
    resolver = Resolver(parameters={"Tracing": mode}, conditions=template["Conditions"])
    functions = resources_of(cfn, "AWS::Lambda::Function")
    assert set(functions) == set(_functions(template))
    xray = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
    for name, fn in functions.items():
        props = fn["Properties"]
        role = cfn["Resources"][props["Role"]["Fn::GetAtt"][0]]["Properties"]
        variables = props["Environment"]["Variables"]
        disabled = resolver.resolve(variables["POWERTOOLS_TRACE_DISABLED"])
        if mode == "Disabled":
            assert "TracingConfig" not in props, name
            assert xray not in role["ManagedPolicyArns"], name
            assert disabled == "true", name  # Powertools' Tracer a no-op
        else:
            assert resolver.resolve(props["TracingConfig"]["Mode"]) == mode, name
            assert xray in role["ManagedPolicyArns"], name
            assert disabled == "false", name


def _conditional(template: dict[str, Any], condition: str) -> set[str]:
    return {name for name, res in template["Resources"].items() if res.get("Condition") == condition}


def test_static_egress_puts_the_functions_that_post_in_a_vpc_with_a_nat_gateway_and_address_per_zone(
    template: dict[str, Any],
) -> None:
    parameter = template["Parameters"]["StaticEgressIps"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("false", ["true", "false"])
    egress = _conditional(template, "StaticEgress")
    assert egress == {name for name in template["Resources"] if name.startswith("Egress")}
    resources = template["Resources"]
    nats = {name: resources[name]["Properties"] for name in egress if resources[name]["Type"] == "AWS::EC2::NatGateway"}
    assert len(nats) == 2
    # each zone's NAT gateway: its own address, in its own zone's public subnet
    ips = {nat["AllocationId"]["Fn::GetAtt"][0] for nat in nats.values()}
    zones = {str(resources[nat["SubnetId"]["Ref"]]["Properties"]["AvailabilityZone"]) for nat in nats.values()}
    assert len(ips) == 2 and len(zones) == 2
    assert all(resources[ip]["Type"] == "AWS::EC2::EIP" for ip in ips)
    endpoints = [resources[n]["Properties"] for n in egress if resources[n]["Type"] == "AWS::EC2::VPCEndpoint"]
    assert [(e["VpcEndpointType"], e["ServiceName"]) for e in endpoints] == [
        ("Gateway", {"Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb"})
    ]
    # the functions that POST to receivers, and only they
    in_vpc = {name for name, fn in _functions(template).items() if "VpcConfig" in fn["Properties"]}
    assert in_vpc == {"DispatcherFunction", "ManagementFunction"}
    for name in in_vpc:
        condition, config, otherwise = _functions(template)[name]["Properties"]["VpcConfig"]["Fn::If"]
        assert (condition, otherwise) == ("StaticEgress", {"Ref": "AWS::NoValue"})
        assert {s["Ref"] for s in config["SubnetIds"]} == {"EgressSubnetA", "EgressSubnetB"}
    # the addresses: an output, and the management API's setting (GET /egress, the UI)
    output = template["Outputs"]["EgressIps"]
    assert output["Condition"] == "StaticEgress"
    addresses = {"Fn::Join": [",", [{"Ref": ip} for ip in sorted(ips)]]}
    assert output["Value"] == addresses
    variables = _functions(template)["ManagementFunction"]["Properties"]["Environment"]["Variables"]
    assert variables["DEVICEHOOKS_EGRESS_IPS"] == {"Fn::If": ["StaticEgress", addresses, ""]}


def test_the_custom_domain_maps_the_whole_api_only_when_a_domain_and_its_certificate_are_given(
    template: dict[str, Any],
) -> None:
    assert {template["Parameters"][p]["Default"] for p in ("ApiDomainName", "ApiCertificateArn")} == {""}
    assert _conditional(template, "HasApiDomain") == {"ApiDomain", "ApiDomainMapping"}
    mapping = template["Resources"]["ApiDomainMapping"]["Properties"]
    assert (mapping["ApiId"], mapping["Stage"], mapping.get("ApiMappingKey")) == ({"Ref": "HttpApi"}, "$default", None)
    [config] = template["Resources"]["ApiDomain"]["Properties"]["DomainNameConfigurations"]
    assert (config["EndpointType"], config["SecurityPolicy"]) == ("REGIONAL", "TLS_1_2")
    cfn = templatelint.translate(
        template,
        {
            **templatelint.REQUIRED,
            "ApiDomainName": "webhooks.example.com",
            "ApiCertificateArn": templatelint.CERTIFICATE,
        },
    )
    assert "HttpApiApiGatewayDefaultStage" in cfn["Resources"]  # the stage the mapping waits for


def test_the_combinations_linted_cover_every_optional_parameter_and_render_as_defaults(tmp_path: Path) -> None:
    combinations = list(templatelint.combinations())
    optional = {name for names in templatelint.OPTIONAL for name in names}
    assert {"Tracing", "StaticEgressIps", "ApiDomainName", "ApiCertificateArn", "AlarmEmail"} <= optional
    assert len(combinations) == 3 * 2 * 2 * 2 + 1 == len({templatelint.label(c) for c in combinations})
    text = (ROOT / "template.yaml").read_text()
    for values in combinations[-2:]:
        path = tmp_path / "t.yaml"
        path.write_text(templatelint.rendered(text, values))
        rendered = load_template(path)
        assert {k: rendered["Parameters"][k]["Default"] for k in values} == values
        assert "# checkov:skip=CKV_AWS_116" in path.read_text()  # the skips' comments are kept
