"""Which AWS calls a function makes: an opt-in recorder for the local stack's execution environments.

``DEVICEHOOKS_LOCAL_RECORD_CALLS=<directory>`` in the stack's own environment (a knob of the local
stack, like ``DEVICEHOOKS_LOCAL_WARM``: it never reaches a function's environment) makes each
execution environment (:mod:`devicehooks_dev.local.runtime`) install :func:`install` before it
imports the handler. Every call of every botocore client made in that process after that (the
clients of :mod:`devicehooks.aws` come from ``botocore.session.get_session()``, a new session each
time: the hook goes into botocore's built-in handlers, which every new session registers) is
appended to ``<directory>/<function>-<pid>.jsonl``: one JSON object a line, with the function's
name, the service's IAM prefix, the operation and the resources it names (:func:`resources`).

Production code does not change for it: tests/e2e/test_iam.py checks the recorded calls against
the roles that ``sam deploy`` would create (tests/iam.py).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

VARIABLE = "DEVICEHOOKS_LOCAL_RECORD_CALLS"


def resources(service: str, params: dict[str, Any]) -> list[dict[str, str]]:
    """The resources a call's parameters name, each ``{kind: identifier}`` (``TableName`` with its
    ``IndexName``, or a transaction's item kind as ``Item``; ``QueueUrl``, ``KeyId``,
    ``EventBusName``); a KMS call without ``KeyId`` (Decrypt: the key is in the ciphertext) names
    none, and a PutEvents entry without a bus names the default bus."""
    found: list[dict[str, str]] = []
    if "TableName" in params:
        table = {"TableName": str(params["TableName"])}
        if params.get("IndexName"):  # a query of an index: IAM's resource is the index
            table["IndexName"] = str(params["IndexName"])
        found.append(table)
    for table in params.get("RequestItems") or {}:  # BatchWriteItem, BatchGetItem
        found.append({"TableName": str(table)})
    # TransactWriteItems, TransactGetItems: IAM authorises each item's own action (Put: PutItem ...)
    for item in params.get("TransactItems") or []:
        for kind, part in item.items():
            if isinstance(part, dict) and "TableName" in part:
                found.append({"TableName": str(part["TableName"]), "Item": str(kind)})
    if "QueueUrl" in params:
        found.append({"QueueUrl": str(params["QueueUrl"])})
    if "KeyId" in params:
        found.append({"KeyId": str(params["KeyId"])})
    if service == "events":
        for entry in params.get("Entries") or []:
            found.append({"EventBusName": str(entry.get("EventBusName") or "default")})
    unique = {json.dumps(r, sort_keys=True): r for r in found}
    return list(unique.values())


def install(directory: str | Path, function_name: str) -> Path:
    """Record every botocore call this process makes from now on (see the module); the file."""
    import botocore.handlers

    path = Path(directory) / f"{function_name}-{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        service_model = model.service_model
        service = str(service_model.signing_name or service_model.endpoint_prefix)
        line = {
            "function": function_name,
            "service": service,
            "operation": str(model.name),
            "resources": resources(service, params or {}),
        }
        with lock, path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    # provide-client-params carries the call's own parameters (before-call has the serialised request)
    botocore.handlers.BUILTIN_HANDLERS.append(("provide-client-params", record))
    return path


def read(directory: str | Path) -> list[dict[str, Any]]:
    """Every call recorded in ``directory``."""
    calls: list[dict[str, Any]] = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        calls.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return calls
