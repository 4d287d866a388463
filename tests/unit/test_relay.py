"""The relay's rules without a network: what it forwards, its settings, its command line."""

from __future__ import annotations

import pytest

from devicehooks_relay.__main__ import main
from devicehooks_relay.relay import Refused, Settings, forwardable

BASE = "/api/internal/v1/iot-manager"


@pytest.mark.parametrize(
    ("target", "sent"),
    [
        (f"{BASE}/tenants/acme%2Feu%23x/devices", f"{BASE}/tenants/acme%2Feu%23x/devices"),
        # the escapes' hex digits upper-cased, as urllib3 sends them (the signature covers what is sent)
        (f"{BASE}/tenants/a%2fb/devices/d%c3%a9v", f"{BASE}/tenants/a%2Fb/devices/d%C3%A9v"),
        (f"{BASE}/tenants//devices", f"{BASE}/tenants//devices"),  # open source's empty tenant
        (
            f"{BASE}/tenants/a+b/bulk/devices/status/accepted?x=%2f&y",
            f"{BASE}/tenants/a+b/bulk/devices/status/accepted?x=%2F&y",
        ),
    ],
)
def test_internal_targets_are_forwarded_as_received(target: str, sent: str) -> None:
    assert forwardable(target) == sent


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/api/management/v1/iot-manager/integrations", 404),
        ("/api/internal/v1/iot-manager", 404),
        ("/api/internal/v1/iot-managerx/tenants", 404),
        ("http://elsewhere/api/internal/v1/iot-manager/alive", 400),
        (f"{BASE}/./alive", 400),
        (f"{BASE}/tenants/%2e%2E/x", 400),
        (f"{BASE}/tenants/a b/devices", 400),
        (f"{BASE}/tenants/%zz/devices", 400),
        (f"{BASE}/tenants/é/devices", 400),
    ],
)
def test_other_targets_are_refused(target: str, status: int) -> None:
    with pytest.raises(Refused) as refused:
        forwardable(target)
    assert refused.value.status == status


def test_settings_take_the_region_of_an_execute_api_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    settings = Settings.make("https://abc123.execute-api.eu-north-1.amazonaws.com/")
    assert (settings.upstream, settings.region) == ("https://abc123.execute-api.eu-north-1.amazonaws.com", "eu-north-1")
    assert Settings.make("https://hooks.example.com/base/", "us-east-2").upstream == "https://hooks.example.com/base"
    with pytest.raises(ValueError, match="no region"):
        Settings.make("https://hooks.example.com")


@pytest.mark.parametrize("upstream", ["http://hooks.example.com", "ftp://x", "https://x.example?q=1", "nothing"])
def test_settings_refuse_an_upstream_in_clear_or_not_a_base_url(upstream: str) -> None:
    with pytest.raises(ValueError):
        Settings.make(upstream, "eu-west-1")


def test_plain_http_is_allowed_to_a_loopback_upstream_only() -> None:
    assert Settings.make("http://127.0.0.1:9000", "eu-west-1").upstream == "http://127.0.0.1:9000"


def test_the_command_stops_without_an_upstream_or_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in (
        "DEVICEHOOKS_RELAY_UPSTREAM",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 2
    assert "--upstream" in capsys.readouterr().err
    # no credentials anywhere botocore looks (no files, no instance metadata)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["--upstream", "https://abc.execute-api.eu-west-1.amazonaws.com", "--check"]) == 2
    assert "no AWS credentials" in capsys.readouterr().err
