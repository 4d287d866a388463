"""End to end: ``devicehooks local`` serves the management API with tokens from ``devicehooks token``."""

from __future__ import annotations

import re
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from devicehooks_dev.local.process import BIN, RunningStack, start_stack, stop_stack
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
BASE = "/api/management/v1/iot-manager"


def _auth(stack: RunningStack, tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(tenant)}"}


def test_management_api_round_trip_over_http(local_stack: RunningStack) -> None:
    tenant = f"tenant-{uuid.uuid4()}"
    headers = _auth(local_stack, tenant)
    body = {
        "provider": "webhook",
        "credentials": {"type": "http", "http": {"url": "http://127.0.0.1:9000/hook", "secret": "deadbeef"}},
        "description": "e2e",
    }
    created = requests.post(f"{local_stack.url}{BASE}/integrations", json=body, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    assert created.text == ""
    integration_id = created.headers["Location"].rsplit("/", 1)[1]
    assert uuid.UUID(integration_id)

    listed = requests.get(f"{local_stack.url}{BASE}/integrations", headers=headers, timeout=10)
    assert listed.status_code == 200
    assert listed.headers["Content-Type"] == "application/json; charset=utf-8"
    assert listed.json() == [
        {
            **body,
            "id": integration_id,
            "credentials": {
                "type": "http",
                "http": {"url": body["credentials"]["http"]["url"], "secret": "<omitted>"},
            },
            "enabled": True,
        }
    ]

    other = requests.get(
        f"{local_stack.url}{BASE}/integrations/{integration_id}",
        headers=_auth(local_stack, "someone-else"),
        timeout=10,
    )
    assert other.status_code == 404

    deleted = requests.delete(f"{local_stack.url}{BASE}/integrations/{integration_id}", headers=headers, timeout=10)
    assert deleted.status_code == 204
    assert requests.get(f"{local_stack.url}{BASE}/integrations", headers=headers, timeout=10).json() == []


def test_missing_and_bad_tokens_get_menders_401(local_stack: RunningStack) -> None:
    missing = requests.get(f"{local_stack.url}{BASE}/integrations", timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="ManagementJWT"'
    assert missing.json()["error"] == "Authorization not present in header"
    assert uuid.UUID(missing.json()["request_id"])
    expired = requests.get(
        f"{local_stack.url}{BASE}/integrations",
        headers={"Authorization": f"Bearer {local_stack.token('t', ttl=-120)}"},
        timeout=10,
    )
    assert (expired.status_code, expired.json()["error"]) == (401, "identity: token has expired")


def test_request_ids_are_echoed_over_http(local_stack: RunningStack) -> None:
    response = requests.get(
        f"{local_stack.url}{BASE}/integrations",
        headers={**_auth(local_stack, "t"), "X-MEN-RequestID": "abc-123"},
        timeout=10,
    )
    assert response.headers["X-MEN-RequestID"] == "abc-123"


def test_unknown_routes_wrong_methods_and_big_bodies(local_stack: RunningStack) -> None:
    headers = _auth(local_stack, "t")
    unknown = requests.get(f"{local_stack.url}{BASE}/nope", headers=headers, timeout=10)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not found")
    wrong = requests.patch(f"{local_stack.url}{BASE}/integrations", headers=headers, timeout=10)
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method not allowed")
    big = requests.post(
        f"{local_stack.url}{BASE}/integrations", data=b"x" * (1024 * 1024 + 1), headers=headers, timeout=10
    )
    assert (big.status_code, big.json()["error"]) == (413, "http: request body too large")


def test_openapi_and_swagger_ui_are_served(local_stack: RunningStack) -> None:
    document = requests.get(f"{local_stack.url}{BASE}/openapi.json", timeout=10)
    assert document.status_code == 200
    assert f"{BASE}/integrations" in document.json()["paths"]
    ui = requests.get(f"{local_stack.url}{BASE}/docs", timeout=10)
    assert ui.status_code == 200 and "SwaggerUIBundle" in ui.text


def _readme_walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- walkthrough -->\s*```(?:sh|bash|console)\n(.*?)```", text, re.S)
    assert found, "README.md has no walkthrough block"
    return found.group(1)


def test_the_readme_walkthrough_works_as_written(local_stack: RunningStack, tmp_path: Path) -> None:
    script = _readme_walkthrough().replace("http://localhost:8080", local_stack.url)
    env = {**local_stack.env, "PATH": f"{BIN}:{local_stack.env['PATH']}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"provider":"webhook"' in result.stdout
    assert "<omitted>" in result.stdout or "\\u003comitted\\u003e" in result.stdout


def test_ctrl_c_stops_the_stack_cleanly(tmp_path: Path) -> None:
    stack = start_stack(tmp_path)
    port = int(stack.url.rsplit(":", 1)[1])
    assert stop_stack(stack) == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    assert "Traceback" not in "".join(stack.output)
