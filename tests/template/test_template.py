"""template.yaml holds the conventions the service relies on (sam validate --lint and cfn-lint
run in ``make template-check``; these tests check what the linters do not)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devicehooks_dev.local.template import load_template, resources_of
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


def test_queue_visibility_is_at_least_six_times_its_consumers_timeout(template: dict[str, Any]) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    default_timeout = template["Globals"]["Function"]["Timeout"]
    for fn in _functions(template).values():
        for event in (fn["Properties"].get("Events") or {}).values():
            if event["Type"] != "SQS":
                continue
            queue = queues[event["Properties"]["Queue"]["Fn::GetAtt"][0]]
            timeout = fn["Properties"].get("Timeout", default_timeout)
            assert int(queue["Properties"]["VisibilityTimeout"]) >= 6 * int(timeout)
            assert "ReportBatchItemFailures" in event["Properties"]["FunctionResponseTypes"]


def test_tables_are_encrypted_with_point_in_time_recovery_and_activity_expires(
    template: dict[str, Any],
) -> None:
    tables = resources_of(template, "AWS::DynamoDB::Table")
    for name, table in tables.items():
        props = table["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True, name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert table["DeletionPolicy"] == "Retain", name
    ttl = tables["ActivityLogTable"]["Properties"]["TimeToLiveSpecification"]
    assert ttl == {"AttributeName": "expire_ts", "Enabled": True}


def _kms_actions(template: dict[str, Any], function: str) -> set[str]:
    policies = _functions(template)[function]["Properties"].get("Policies", [])
    statements = [s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    return {s["Action"] for s in statements if str(s["Action"]).startswith("kms:")}


def test_the_secrets_key_rotates_and_only_signing_functions_may_decrypt(template: dict[str, Any]) -> None:
    key = resources_of(template, "AWS::KMS::Key")["SecretsKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert _kms_actions(template, "ManagementFunction") == {"kms:Encrypt", "kms:Decrypt"}  # decrypt: test sends
    assert _kms_actions(template, "DispatcherFunction") == {"kms:Decrypt"}
    assert _kms_actions(template, "InternalFunction") == set()
    assert _kms_actions(template, "AuthorizerFunction") == set()


def test_the_rule_routes_the_three_device_event_types_to_the_dispatch_queue(template: dict[str, Any]) -> None:
    rule = resources_of(template, "AWS::Events::Rule")["DeviceEventsRule"]["Properties"]
    assert rule["EventPattern"]["source"] == [{"Ref": "EventSource"}]
    assert sorted(rule["EventPattern"]["detail-type"]) == [
        "device-decommissioned",
        "device-provisioned",
        "device-status-changed",
    ]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["DispatchQueue", "Arn"]}


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
