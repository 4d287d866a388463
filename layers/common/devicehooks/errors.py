"""Domain errors. The HTTP layer maps each one to a status code and Mender's error body."""

from __future__ import annotations


class DevicehooksError(Exception):
    """Base class: ``message`` is what the client sees, so it never carries secrets."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(DevicehooksError):
    status_code = 400


class Unauthorized(DevicehooksError):
    status_code = 401


class Forbidden(DevicehooksError):
    status_code = 403


class NotFound(DevicehooksError):
    status_code = 404


class Conflict(DevicehooksError):
    status_code = 409


class PayloadTooLarge(DevicehooksError):
    status_code = 413


class ServiceUnavailable(DevicehooksError):
    status_code = 503


class BlockedDestination(DevicehooksError):
    """A webhook destination resolves to an address that may not be reached."""

    status_code = 400


class ConfigError(RuntimeError):
    """The function was deployed without a setting it needs (fails at cold start)."""
