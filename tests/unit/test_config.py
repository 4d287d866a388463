"""Settings from the environment: defaults, parsing, and one clear error naming every bad setting."""

from __future__ import annotations

import ipaddress

import pytest

from devicehooks.config import DEFAULT_RETRY_SCHEDULE, Settings, problems_in
from devicehooks.errors import ConfigError

TABLES = {"DEVICEHOOKS_INTEGRATIONS_TABLE": "i", "DEVICEHOOKS_ACTIVITY_TABLE": "a"}


def test_defaults_apply_when_only_the_tables_are_given() -> None:
    settings = Settings.from_environ({**TABLES, "UNRELATED": "x"})
    assert (settings.integrations_table, settings.activity_table) == ("i", "a")
    assert settings.retry_schedule == DEFAULT_RETRY_SCHEDULE
    assert (settings.max_integrations, settings.delivery_timeout, settings.allowed_cidrs) == (20, 10.0, ())
    assert settings.event_source == "devicehooks.deviceauth"


def test_values_are_parsed_into_their_types() -> None:
    settings = Settings.from_environ(
        {
            **TABLES,
            "DEVICEHOOKS_MAX_INTEGRATIONS": "5",
            "DEVICEHOOKS_DELIVERY_TIMEOUT": "2.5",
            "DEVICEHOOKS_RETRY_SCHEDULE": " 1, 2 ,3,",
            "DEVICEHOOKS_ALLOWED_CIDRS": "127.0.0.1/8, ::1/128",
            "DEVICEHOOKS_EVENT_BUS": "bus",
        }
    )
    assert settings.max_integrations == 5 and settings.delivery_timeout == 2.5
    assert settings.retry_schedule == (1, 2, 3)
    assert settings.allowed_cidrs == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert settings.event_bus == "bus"


def test_missing_tables_and_bad_values_are_all_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(
            {
                "DEVICEHOOKS_ACTIVITY_TABLE": "",
                "DEVICEHOOKS_MAX_INTEGRATIONS": "100",
                "DEVICEHOOKS_DELIVERY_TIMEOUT": "nan",
                "DEVICEHOOKS_RETRY_SCHEDULE": "5,soon",
                "DEVICEHOOKS_ALLOWED_CIDRS": "10.0.0.0/33",
                "DEVICEHOOKS_REQUEST_SIZE_LIMIT": "12",
            }
        )
    message = str(caught.value)
    assert message.startswith("invalid configuration: ")
    for name in (
        "DEVICEHOOKS_INTEGRATIONS_TABLE: is required",
        "DEVICEHOOKS_ACTIVITY_TABLE: must not be empty",
        "DEVICEHOOKS_MAX_INTEGRATIONS: must be at least 1 and at most 99",
        "DEVICEHOOKS_DELIVERY_TIMEOUT: must be more than 0 and at most 60 seconds",
        "DEVICEHOOKS_RETRY_SCHEDULE: must be an integer, not 'soon'",
        "DEVICEHOOKS_ALLOWED_CIDRS: must be comma-separated CIDRs",
        "DEVICEHOOKS_REQUEST_SIZE_LIMIT: must be at least 1024",
    ):
        assert name in message


def test_egress_ips_are_ip_addresses() -> None:
    base = {"DEVICEHOOKS_INTEGRATIONS_TABLE": "i", "DEVICEHOOKS_ACTIVITY_TABLE": "a"}
    assert Settings.from_environ(base).egress_ips == ()
    assert Settings.from_environ({**base, "DEVICEHOOKS_EGRESS_IPS": ""}).egress_ips == ()
    settings = Settings.from_environ({**base, "DEVICEHOOKS_EGRESS_IPS": "203.0.113.7, 198.51.100.9"})
    assert settings.egress_ips == ("203.0.113.7", "198.51.100.9")
    with pytest.raises(ConfigError, match="DEVICEHOOKS_EGRESS_IPS: must be comma-separated IP addresses"):
        Settings.from_environ({**base, "DEVICEHOOKS_EGRESS_IPS": "not-an-address"})


def test_the_settings_given_are_checked_without_requiring_the_tables() -> None:
    """What the local stack checks before it serves: the variables a function is given."""
    assert problems_in({}) == []
    assert problems_in({"DEVICEHOOKS_MAX_INTEGRATIONS": "99", "OTHER": "x"}) == []
    assert problems_in({"DEVICEHOOKS_MAX_INTEGRATIONS": "150", "DEVICEHOOKS_DELIVERY_TIMEOUT": "0"}) == [
        "DEVICEHOOKS_MAX_INTEGRATIONS: must be at least 1 and at most 99, not 150",
        "DEVICEHOOKS_DELIVERY_TIMEOUT: must be more than 0 and at most 60 seconds",
    ]
