"""The table a store works on: one description shared by the activity log's parts and the
webhooks' store."""

from __future__ import annotations

from typing import Any

from devicehooks import aws


class Table:
    """A DynamoDB table the store's parts share: its name, and a client (made on first use, so that
    a cold start that never reaches the table makes none)."""

    def __init__(self, name: str, client: Any = None) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client
