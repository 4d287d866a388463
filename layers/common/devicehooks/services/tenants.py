"""Removing a tenant's data (Mender's ``DELETE /tenants/{id}``)."""

from __future__ import annotations

from devicehooks.store.activity import ActivityStore
from devicehooks.store.integrations import IntegrationStore


class TenantService:
    def __init__(self, integrations: IntegrationStore, activity: ActivityStore) -> None:
        self.integrations = integrations
        self.activity = activity

    def remove(self, tenant_id: str) -> tuple[int, int]:
        """Delete the tenant's integrations and activity log; returns how many of each."""
        return self.integrations.remove_tenant(tenant_id), self.activity.remove_tenant(tenant_id)
