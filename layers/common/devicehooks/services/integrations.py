"""Managing a tenant's webhook integrations."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from devicehooks.domain.inputs import CredentialsIn, IntegrationIn, IntegrationUpdate
from devicehooks.domain.models import KEEP, EventType, Integration, IntegrationChanges, Scope, new_id, outside_scopes
from devicehooks.domain.validation import format_tree
from devicehooks.errors import BlockedDestination, InvalidRequest, NotFound
from devicehooks.security.secretbox import SecretCipher
from devicehooks.security.ssrf import DestinationGuard
from devicehooks.store.integrations import IntegrationStore
from devicehooks.timeutil import utcnow

NOT_FOUND = "integration not found"


def _url_error(path: tuple[str, ...], message: str) -> InvalidRequest:
    tree: dict[str, object] = {path[-1]: message}
    for key in reversed(path[:-1]):
        tree = {key: tree}
    return InvalidRequest("malformed request body: " + format_tree(tree))


def _check_filter(event_types: tuple[EventType, ...] | None, scopes: tuple[Scope, ...] | None) -> None:
    """An event-type filter narrows the scopes: a type no scope selects would never be sent."""
    outside = outside_scopes(event_types, scopes)
    if outside:
        named = ", ".join(scopes or ("deviceauth",))
        raise InvalidRequest(
            f"malformed request body: event_types: '{outside[0]}' is not in the integration's scopes ({named})."
        )


class IntegrationService:
    """Create, read, replace credentials of and delete integrations, one tenant at a time."""

    def __init__(
        self,
        store: IntegrationStore,
        cipher: SecretCipher,
        guard: DestinationGuard,
        max_integrations: int,
        clock: Callable[[], datetime] = utcnow,
        secret_overlap: int = 24 * 3600,
    ) -> None:
        self.secret_overlap = secret_overlap
        self.store = store
        self.cipher = cipher
        self.guard = guard
        self.max_integrations = max_integrations
        self.clock = clock

    def _check_destination(self, url: str, path: tuple[str, ...]) -> None:
        try:
            self.guard.check_url(url)
        except BlockedDestination as exc:
            raise _url_error(path, exc.message) from None

    def list_integrations(self, tenant_id: str) -> list[Integration]:
        return self.store.list_tenant(tenant_id)

    def get(self, tenant_id: str, integration_id: str) -> Integration:
        found = self.store.get(tenant_id, integration_id)
        if found is None:
            raise NotFound(NOT_FOUND)
        return found

    def create(self, tenant_id: str, spec: IntegrationIn) -> Integration:
        """Validate the destination, seal the secret, store; :class:`Conflict` past the limit."""
        http = spec.credentials.webhook
        self._check_destination(http.url, ("credentials", "http", "url"))
        integration_id = new_id()
        secret = http.secret_bytes()
        now = self.clock()
        integration = Integration(
            id=integration_id,
            tenant_id=tenant_id,
            url=http.url,
            secret=None if secret is None else self.cipher.seal(secret, tenant_id, integration_id),
            description=spec.description or "",
            event_types=tuple(spec.event_types) if spec.event_types is not None else None,
            rate_limit=spec.rate_limit,
            created_at=now,
            updated_at=now,
            scopes=tuple(spec.scopes) if spec.scopes is not None else None,
        )
        _check_filter(integration.event_types, integration.scopes)
        self.store.add(integration, self.max_integrations)
        return integration

    def set_credentials(self, tenant_id: str, integration_id: str, credentials: CredentialsIn) -> Integration:
        """Replace URL and secret (leaving the secret out removes it, as in Mender).

        A replaced secret keeps signing ``webhook-signature`` for ``secret_overlap`` seconds, so
        receivers can switch to the new one without dropping requests.
        """
        current = self.get(tenant_id, integration_id)
        http = credentials.webhook
        self._check_destination(http.url, ("http", "url"))
        secret = http.secret_bytes()
        now = self.clock()
        overlap = current.secret is not None and secret is not None and self.secret_overlap > 0
        changes = IntegrationChanges.credentials(
            url=http.url,
            secret=None if secret is None else self.cipher.seal(secret, tenant_id, integration_id),
            previous=current.secret if overlap else None,
            previous_until=now + timedelta(seconds=self.secret_overlap) if overlap else None,
            at=now,
        )
        updated = self.store.update(tenant_id, integration_id, changes)
        if updated is None:
            raise NotFound(NOT_FOUND)
        return updated

    def update(self, tenant_id: str, integration_id: str, spec: IntegrationUpdate) -> Integration:
        """Change URL, description, event filter or enabled state (fields not given are kept)."""
        current = self.get(tenant_id, integration_id)
        given = spec.model_fields_set
        if "url" in given and spec.url is not None:
            self._check_destination(spec.url, ("url",))
        changes = IntegrationChanges.settings(
            at=self.clock(),
            url=spec.url if "url" in given and spec.url is not None and spec.url != current.url else KEEP,
            description=(spec.description or "") if "description" in given else KEEP,
            event_types=(tuple(spec.event_types) if spec.event_types is not None else None)
            if "event_types" in given
            else KEEP,
            enabled=spec.enabled if "enabled" in given and spec.enabled is not None else KEEP,
            rate_limit=spec.rate_limit if "rate_limit" in given else KEEP,
            scopes=(tuple(spec.scopes) if spec.scopes is not None else None) if "scopes" in given else KEEP,
        )
        after = current.changed(changes)
        _check_filter(after.event_types, after.scopes)
        updated = self.store.update(tenant_id, integration_id, changes)
        if updated is None:
            raise NotFound(NOT_FOUND)
        return updated

    def delete(self, tenant_id: str, integration_id: str) -> None:
        if not self.store.remove(tenant_id, integration_id):
            raise NotFound(NOT_FOUND)
