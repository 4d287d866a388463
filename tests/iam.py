"""The functions' IAM roles as ``sam deploy`` creates them, and a check of AWS calls against them.

:func:`roles` expands template.yaml with ``samtranslator`` (the library ``sam deploy`` and
``sam validate`` transform with; no call to AWS: the parameter values are given, the managed
policy map is empty since the template names no managed policy by name, and the boto session only
names a region), and returns, per ``AWS::Serverless::Function``, the statements of its generated
role (SAM policy templates such as DynamoDBCrudPolicy expanded by the translator) and its managed
policy ARNs (the ones SAM adds itself: basic execution, X-Ray, the SQS event source's).

:func:`resolve` evaluates the statements' intrinsics (``!Ref``, ``!GetAtt``, ``!Sub``) against a
local stack's physical names (``stack.physical``, or ``GET /local/info``'s ``resources``), and
:func:`check` matches recorded calls (:mod:`devicehooks_dev.local.callrecorder`) against them:
every call must be allowed (action and resource), and every action granted on every resource must
be used by some call, or be listed in an allowance with its reason.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devicehooks_dev.local.stack import ACCOUNT, REGION, STACK
from devicehooks_dev.local.template import Resolver, load_template, parameter_defaults, resources_of

ROOT = Path(__file__).resolve().parents[1]

# A call's operation is authorised by another action's name (the batch forms of SQS's calls).
ACTION_OF = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


@dataclass
class Role:
    """One function's generated role: its statements (intrinsics as the translator left them) and
    its managed policies' ARNs."""

    function: str
    statements: list[dict[str, Any]]
    managed: list[Any]


def roles(template: Mapping[str, Any] | Path = ROOT / "template.yaml") -> dict[str, Role]:
    """Function logical id -> its role, as the SAM transform generates it (see the module)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = load_template(template) if isinstance(template, Path) else copy.deepcopy(dict(template))
    for resource in sam["Resources"].values():  # as `sam package` uploads the code: an S3 location
        for uri in ("CodeUri", "ContentUri"):
            if isinstance((resource.get("Properties") or {}).get(uri), str):
                resource["Properties"][uri] = "s3://devicehooks-artifacts/code.zip"
    parameters = parameter_defaults(sam, {"JwtPublicKeys": "-----BEGIN PUBLIC KEY-----"})
    parameters.update({"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"})
    parameters["AWS::StackName"] = STACK
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    cfn = translator.translate(sam, parameter_values=parameters, get_managed_policy_map=lambda: {})
    found: dict[str, Role] = {}
    for logical, function in resources_of(cfn, "AWS::Lambda::Function").items():
        role_ref = function["Properties"]["Role"]["Fn::GetAtt"][0]
        props = cfn["Resources"][role_ref]["Properties"]
        statements = [s for p in props.get("Policies") or [] for s in p["PolicyDocument"]["Statement"]]
        found[logical] = Role(logical, statements, list(props.get("ManagedPolicyArns") or []))
    return found


def resolver(physical: Mapping[str, Mapping[str, Any]], template: Mapping[str, Any] | None = None) -> Resolver:
    """Intrinsics against a local stack's physical names (``Ref`` gives what CloudFormation's does)."""
    sam = template or load_template(ROOT / "template.yaml")
    ref_of = {  # what CloudFormation's Ref gives for each kind
        "AWS::DynamoDB::Table": "TableName",
        "AWS::SQS::Queue": "QueueUrl",
        "AWS::KMS::Key": "KeyId",
        "AWS::SNS::Topic": "TopicArn",
    }
    refs: dict[str, Any] = {}
    attributes: dict[tuple[str, str], Any] = {}
    for logical, names in physical.items():
        for attr, value in names.items():
            attributes[(logical, attr)] = value
        kind = (sam["Resources"].get(logical) or {}).get("Type", "")
        chosen = ref_of.get(kind, "Name")
        if chosen in names:
            refs[logical] = names[chosen]
    return Resolver(
        parameters=parameter_defaults(sam, {"JwtPublicKeys": "-"}),
        refs=refs,
        attributes=attributes,
        pseudo={"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::StackName": STACK},
        mappings=sam.get("Mappings") or {},
        conditions=sam.get("Conditions") or {},
    )


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Grant:
    """One action on one resource (pattern) that a role allows."""

    action: str
    resource: str
    sid: str = ""


def grants(role: Role, resolve: Resolver) -> list[Grant]:
    """Every (action, resource) the role's Allow statements give, intrinsics resolved."""
    out: list[Grant] = []
    for statement in role.statements:
        assert statement.get("Effect") == "Allow", statement  # no Deny, no NotAction: keep the check simple
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        for action in _listed(statement["Action"]):
            for resource in _listed(resolve.resolve(statement["Resource"])):
                out.append(Grant(str(action), str(resource), str(statement.get("Sid", ""))))
    return out


def _match(pattern: str, value: str, case: bool = True) -> bool:
    pattern = pattern.replace("[", "[[]")
    return fnmatch.fnmatchcase(value, pattern) if case else fnmatch.fnmatchcase(value.lower(), pattern.lower())


# TransactWriteItems and TransactGetItems are no IAM actions: each item needs its own
TRANSACT_ITEM = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def _arn(resource: Mapping[str, str], physical: Mapping[str, Mapping[str, Any]]) -> str:
    prefix = f"{REGION}:{ACCOUNT}"
    if "TableName" in resource:
        arn = f"arn:aws:dynamodb:{prefix}:table/{resource['TableName']}"
        return f"{arn}/index/{resource['IndexName']}" if "IndexName" in resource else arn
    if "QueueUrl" in resource:
        return f"arn:aws:sqs:{prefix}:{resource['QueueUrl'].rstrip('/').rsplit('/', 1)[1]}"
    if "KeyId" in resource:
        key = resource["KeyId"]
        if not key.startswith("arn:"):
            key = next((n["Arn"] for n in physical.values() if n.get("KeyId") == key), key)
        return key
    if "EventBusName" in resource:
        bus = resource["EventBusName"]
        return bus if bus.startswith("arn:") else f"arn:aws:events:{prefix}:event-bus/{bus}"
    raise ValueError(f"unknown resource {resource}")


def action_of(call: Mapping[str, Any]) -> str:
    """The IAM action that authorises a recorded call (SendMessageBatch: sqs:SendMessage)."""
    action = f"{call['service']}:{call['operation']}"
    return ACTION_OF.get(action, action)


def needs(call: Mapping[str, Any], physical: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs a recorded call needs (a call naming no resource: ``*``)."""
    action = action_of(call)
    pairs = [(TRANSACT_ITEM[r["Item"]] if "Item" in r else action, _arn(r, physical)) for r in call["resources"]]
    return pairs or [(action, "*")]


@dataclass
class Verdict:
    """What :func:`check` found: calls no grant allows, grants no call used (and not allowed for)."""

    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    used: dict[str, set[Grant]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unused


def check(
    role_grants: Mapping[str, list[Grant]],
    calls: Iterable[Mapping[str, Any]],
    physical: Mapping[str, Mapping[str, Any]],
    names: Mapping[str, str],
    allowances: Mapping[tuple[str, str, str], str] = {},  # noqa: B006 - read only
) -> Verdict:
    """Each call (by function name; ``names``: function name -> logical id) against its function's
    grants; then each grant no call used, unless ``allowances`` ((function, action glob, resource
    glob) -> reason) lists it."""
    verdict = Verdict(used={f: set() for f in role_grants})
    for call in calls:
        function = names.get(call["function"], call["function"])
        for action, arn in needs(call, physical):
            allowing = [
                g
                for g in role_grants.get(function, [])
                if _match(g.action, action, case=False) and _match(g.resource, arn)
            ]
            if allowing:
                verdict.used[function].update(allowing)
            else:
                problem = f"{function}: {action} on {arn} is not allowed"
                if problem not in verdict.missing:
                    verdict.missing.append(problem)
    for function, granted in role_grants.items():
        for grant in granted:
            if grant in verdict.used[function]:
                continue
            if any(
                f == function and _match(a, grant.action, case=False) and _match(r, grant.resource)
                for (f, a, r) in allowances
            ):
                continue
            verdict.unused.append(f"{function}: {grant.action} on {grant.resource} is granted but never used")
    return verdict
