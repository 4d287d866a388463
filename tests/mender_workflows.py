"""Mender's workflow tasks that call iot-manager, as the workflows worker sends them.

From mender-server ``backend/services/workflows/worker/workflows/``: ``provision_device.json``,
``update_device_status.json``, ``legacy_provision_iot_manager.json`` and ``decommission_device.json``
(no other workflow calls iot-manager). Each task's URI is
``http://${env.IOT_MANAGER_ADDR|mender-iot-manager:8080}/api/internal/v1/iot-manager/...`` with its
ids written by ``${encoding=url;...}``, its only header ``X-MEN-RequestID``, 3 retries, and the
statuses it accepts (``statusCodes``); the worker (``app/processor/http.go``) marshals its ``json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

BASE = "/api/internal/v1/iot-manager"
# the statusCodes of each task (a workflow retries any other status, then fails)
PROVISION_OK = {201, 202, 204, 409}
STATUS_OK = {200, 201, 202, 204, 404}
DECOMMISSION_OK = {202, 204, 404}


def go_query_escape(value: str) -> str:
    """Go's ``url.QueryEscape``, which ``${encoding=url;...}`` applies (workflows'
    ``app/processor/string.go``): everything but ``A-Za-z0-9-_.~`` escaped, a space as ``+``."""
    return quote_plus(value, safe="")


def go_json(value: Any) -> bytes:
    """What the worker sends for a task's ``json``: ``json.Marshal`` of the decoded input (maps
    come out with sorted keys, compact, ``<>&`` escaped)."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


@dataclass(frozen=True)
class Task:
    workflow: str
    name: str
    method: str
    path: str  # after /api/internal/v1/iot-manager
    body: bytes | None  # None: no body and no Content-Type (the task has neither)
    accepted: set[int]
    event: str


def workflow_tasks(tenant_id: str, device: dict[str, Any]) -> list[Task]:
    """The iot-manager tasks of Mender's workflows for ``device`` of ``tenant_id``, in the order a
    device lives them: accepted (provisioned), rejected, accepted again (legacy provisioning on),
    decommissioned."""
    t = go_query_escape(tenant_id)
    d = go_query_escape(device["id"])
    return [
        # provision_device.json: provision_iot-manager ("json": "${workflow.input.device}")
        Task("provision_device", "provision_iot-manager", "POST", f"/tenants/{t}/devices", go_json(device),
             PROVISION_OK, "device-provisioned"),
        # provision_device.json: update_iot_manager_status ("json": ["${workflow.input.device}"])
        Task("provision_device", "update_iot_manager_status", "PUT",
             f"/tenants/{t}/bulk/devices/status/{go_query_escape('accepted')}", go_json([device]),
             STATUS_OK, "device-status-changed"),
        # update_device_status.json: update_azure_status ("json": "${workflow.input.devices}")
        Task("update_device_status", "update_azure_status", "PUT",
             f"/tenants/{t}/bulk/devices/status/{go_query_escape('rejected')}",
             go_json([{**device, "status": "rejected"}]), STATUS_OK, "device-status-changed"),
        # legacy_provision_iot_manager.json: provision_iot-manager ("json": "${workflow.input.device}")
        Task("legacy_provision_iot_manager", "provision_iot-manager", "POST", f"/tenants/{t}/devices",
             go_json(device), PROVISION_OK, "device-provisioned"),
        # decommission_device.json: delete_iot_device (no body, no contentType)
        Task("decommission_device", "delete_iot_device", "DELETE", f"/tenants/{t}/devices/{d}", None,
             DECOMMISSION_OK, "device-decommissioned"),
    ]  # fmt: skip
