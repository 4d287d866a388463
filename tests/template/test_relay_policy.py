"""MenderRelayPolicy (template.yaml): the relay may invoke the internal routes Mender's workflows
call (tests/mender_workflows.py) and the health checks, and nothing else (an IAM ``*`` matches ``/``
too, so ``DELETE .../tenants/*/devices/*`` also matches paths the API does not serve: no more).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from devicehooks_dev.local.template import load_template
from tests.conftest import ROOT
from tests.mender_workflows import BASE, workflow_tasks

pytestmark = pytest.mark.template
PREFIX = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${HttpApi}/$default/"


@pytest.fixture(scope="module")
def granted() -> list[re.Pattern[str]]:
    """The policy's resources as IAM matches them (``*``: any characters, ``/`` included), on
    ``METHOD/path`` of the stack's HTTP API's ``$default`` stage."""
    template: dict[str, Any] = load_template(ROOT / "template.yaml")
    policy = template["Resources"]["MenderRelayPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    assert [s["Effect"] for s in statements] == ["Allow"] * len(statements)
    assert {s["Action"] for s in statements} == {"execute-api:Invoke"}
    patterns = []
    for statement in statements:
        for resource in statement["Resource"]:
            arn = resource["Fn::Sub"]
            assert arn.startswith(PREFIX), arn
            rest = arn.removeprefix(PREFIX)
            assert rest.split("/", 1)[1].startswith(BASE[1:] + "/"), arn  # the internal API only
            patterns.append(re.compile(".*".join(re.escape(part) for part in rest.split("*"))))
    assert template["Outputs"]["MenderRelayPolicyArn"]["Value"] == {"Ref": "MenderRelayPolicy"}
    return patterns


def _allowed(granted: list[re.Pattern[str]], method: str, path: str) -> bool:
    return any(p.fullmatch(f"{method}{path}") for p in granted)


def test_every_workflow_task_and_the_relays_check_are_allowed(granted: list[re.Pattern[str]]) -> None:
    device = {"id": "dev/1#é", "status": "accepted"}
    for tenant in ("acme/eu#1", ""):  # Mender Enterprise's tenants, open source's empty one
        for task in workflow_tasks(tenant, device):
            assert _allowed(granted, task.method, f"{BASE}{task.path}"), task
    assert _allowed(granted, "GET", f"{BASE}/alive")
    assert _allowed(granted, "GET", f"{BASE}/health")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/management/v1/iot-manager/integrations"),
        ("POST", "/api/management/v1/iot-manager/integrations"),
        ("DELETE", f"{BASE}/tenants/acme"),  # tenant removal: no workflow sends it
        ("POST", f"{BASE}/tenants/acme/devices/dev-1/inventory"),  # inventory: no workflow sends it
        ("GET", f"{BASE}/tenants/acme/devices"),
        ("PUT", f"{BASE}/tenants/acme/devices"),
    ],
)
def test_nothing_else_is_allowed(granted: list[re.Pattern[str]], method: str, path: str) -> None:
    assert not _allowed(granted, method, path)
