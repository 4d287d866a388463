"""A tenant of a local stack as the e2e tests drive it: its token, its webhooks, Mender's internal
calls for its devices, and the management API."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from devicehooks_dev.local.process import RunningStack

MGMT = "/api/management/v1/iot-manager"
INTERNAL = "/api/internal/v1/iot-manager"


class Tenant:
    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.id = f"tenant-{uuid.uuid4()}"
        self.headers = {"Authorization": f"Bearer {stack.token(self.id)}"}

    def webhook(self, url: str, secret: str | None = None) -> str:
        """A new webhook to ``url``; its id."""
        http: dict[str, str] = {"url": url} if secret is None else {"url": url, "secret": secret}
        body = {"provider": "webhook", "credentials": {"type": "http", "http": http}}
        response = requests.post(f"{self.stack.url}{MGMT}/integrations", json=body, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return str(response.headers["Location"].rsplit("/", 1)[1])

    def internal(self, method: str, path: str, body: Any = None) -> None:
        """Mender's internal call for this tenant (``path`` after ``/tenants/{id}``), accepted."""
        url = f"{self.stack.url}{INTERNAL}/tenants/{self.id}{path}"
        assert requests.request(method, url, json=body, timeout=10).status_code == 202

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.stack.url}{MGMT}{path}", params=params, headers=self.headers, timeout=20)

    def post(self, path: str, body: Any = None) -> requests.Response:
        return requests.post(f"{self.stack.url}{MGMT}{path}", json=body, headers=self.headers, timeout=20)

    def pages(self, per_page: int = 2, **params: Any) -> list[str]:
        """Every page of ``GET /events`` with these filters: each full but the last, none repeated."""
        listed: list[list[str]] = []
        for page in range(1, 50):
            response = self.get("/events", page=page, per_page=per_page, **params)
            assert response.status_code == 200, response.text
            found = [e["id"] for e in response.json()]
            if not found:
                break
            listed.append(found)
        assert all(len(p) == per_page for p in listed[:-1]), (params, listed)
        flat = [e for p in listed for e in p]
        assert len(set(flat)) == len(flat)
        return flat
