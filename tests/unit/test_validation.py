"""Mender's validation rules and messages for integration bodies (BEHAVIOUR.md §1.0, §1.2)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from devicehooks.domain.inputs import CredentialsIn, IntegrationIn
from devicehooks.domain.validation import format_errors, format_tree


def _message(payload: Any, model: type[IntegrationIn] | type[CredentialsIn] = IntegrationIn) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(payload)
    return format_errors(caught.value.errors())


def _webhook(**http: Any) -> dict[str, Any]:
    return {"provider": "webhook", "credentials": {"type": "http", "http": http}}


def test_nested_errors_render_like_ozzo_validation() -> None:
    assert format_tree({"credentials": {"http": {"url": "cannot be blank"}}}) == (
        "credentials: (http: (url: cannot be blank.).)."
    )


def test_missing_url_is_reported_with_its_full_path() -> None:
    assert _message(_webhook(secret="00")) == "credentials: (http: (url: cannot be blank.).)."


def test_several_invalid_fields_are_sorted_and_joined() -> None:
    assert _message({}) == "credentials: cannot be blank; provider: cannot be blank."


@pytest.mark.parametrize("provider", ["iot-hub", "iot-core"])
def test_other_mender_providers_are_refused_as_not_supported(provider: str) -> None:
    message = _message({**_webhook(url="https://example.com"), "provider": provider})
    assert message == f"provider: '{provider}' is not supported: devicehooks manages 'webhook' integrations only."


def test_unknown_provider_is_not_a_valid_value() -> None:
    assert _message({**_webhook(url="https://example.com"), "provider": "carrier-pigeon"}) == (
        "provider: must be a valid value."
    )


@pytest.mark.parametrize("kind", ["aws", "sas"])
def test_credentials_of_other_providers_are_refused(kind: str) -> None:
    payload = {"provider": "webhook", "credentials": {"type": kind, "http": {"url": "https://example.com"}}}
    assert f"type: '{kind}' is not supported" in _message(payload)


def test_http_credentials_are_required() -> None:
    assert _message({"provider": "webhook", "credentials": {"type": "http"}}) == (
        "credentials: (http: cannot be blank.)."
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "example.com/hook",
        "https://",
        "http:///path",
        "javascript:alert(1)",
        "https://exa mple.com",
    ],
)
def test_url_must_be_absolute_http_or_https_with_a_host(url: str) -> None:
    message = _message(_webhook(url=url))
    assert message.startswith("credentials: (http: (url: must be")


def test_url_longer_than_2048_characters_is_refused() -> None:
    message = _message(_webhook(url="https://example.com/" + "a" * 2048))
    assert message == "credentials: (http: (url: the length must be no more than 2048.).)."


@pytest.mark.parametrize("secret", ["abc", "zz", "0xdeadbeef", "dead beef"])
def test_secret_must_be_hex_of_even_length(secret: str) -> None:
    message = _message(_webhook(url="https://example.com", secret=secret))
    assert message == "credentials: (http: (secret: must be a hexadecimal string of even length.).)."


def test_invalid_secret_is_never_echoed_in_the_message() -> None:
    assert "0xdeadbeef" not in _message(_webhook(url="https://example.com", secret="0xdeadbeef"))


def test_secret_is_capped_at_128_hex_digits() -> None:
    ok = IntegrationIn.model_validate(_webhook(url="https://example.com", secret="ab" * 64))
    assert ok.credentials.http.secret_bytes() == b"\xab" * 64
    message = _message(_webhook(url="https://example.com", secret="ab" * 65))
    assert message == "credentials: (http: (secret: the length must be no more than 128.).)."


def test_secret_is_hex_decoded_in_either_case_and_empty_is_a_secret() -> None:
    upper = IntegrationIn.model_validate(_webhook(url="https://example.com", secret="DEADbeef"))
    assert upper.credentials.http.secret_bytes() == bytes.fromhex("deadbeef")
    empty = IntegrationIn.model_validate(_webhook(url="https://example.com", secret=""))
    assert empty.credentials.http.secret_bytes() == b""
    absent = IntegrationIn.model_validate(_webhook(url="https://example.com", secret=None))
    assert absent.credentials.http.secret_bytes() is None


def test_secret_does_not_appear_in_the_models_repr() -> None:
    model = IntegrationIn.model_validate(_webhook(url="https://example.com", secret="deadbeef"))
    assert "deadbeef" not in repr(model)


def test_description_is_limited_to_1024_bytes_not_characters() -> None:
    IntegrationIn.model_validate({**_webhook(url="https://example.com"), "description": "x" * 1024})
    message = _message({**_webhook(url="https://example.com"), "description": "é" * 513})  # 1026 bytes
    assert message == "description: the length must be no more than 1024."


def test_unknown_fields_are_ignored_as_in_mender() -> None:
    model = IntegrationIn.model_validate({**_webhook(url="https://example.com"), "labels": ["x"], "id": "ignored"})
    assert model.provider == "webhook"


def test_scopes_are_menders_two_in_canonical_order_and_nothing_else() -> None:
    body = {**_webhook(url="https://example.com"), "scopes": ["inventory", "deviceauth", "inventory"]}
    assert IntegrationIn.model_validate(body).scopes == ["deviceauth", "inventory"]
    assert IntegrationIn.model_validate({**body, "scopes": []}).scopes == []
    assert IntegrationIn.model_validate(_webhook(url="https://example.com")).scopes is None
    assert _message({**body, "scopes": ["x"]}) == "scopes: (0: must be a valid value.)."


def test_wrong_json_types_are_reported_per_field() -> None:
    assert _message({"provider": 5, "credentials": {"type": "http", "http": {"url": "https://e.com"}}}) == (
        "provider: must be a string."
    )
    assert _message({"provider": "webhook", "credentials": None}) == "credentials: cannot be blank."


def test_credentials_body_of_put_uses_the_same_rules() -> None:
    assert _message({"type": "http", "http": {"url": ""}}, CredentialsIn) == "http: (url: cannot be blank.)."


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com:0/hook",  # urllib3 would dial port 80
        "http://example.com:65536/hook",
        "http://example.com:8o/hook",
        "http://\u2488.example/hook",  # a host IDNA refuses
        "http://exa[mple.com/hook",
        "http://[::1/hook",
        "http://example.com/\ud800",  # a lone surrogate: no store can keep it
    ],
)
def test_urls_urllib3_cannot_send_to_are_not_valid(url: str) -> None:
    assert _message(_webhook(url=url)) == "credentials: (http: (url: must be a valid URL.).)."


@pytest.mark.parametrize("url", ["http://user@/hook", "http://:80/hook", "mailto:someone@example.com"])
def test_urls_without_a_host_for_urllib3_are_refused(url: str) -> None:
    assert _message(_webhook(url=url)) == (
        "credentials: (http: (url: must be an absolute http:// or https:// URL with a host.).)."
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://%E2%82%AC:pw@example.com/",  # user info, not the host: urllib3 sends it as Basic credentials
        "HTTPS://Example.COM.:8443/a?b=c#d",
        "http://b\u00fccher.example/",
        "http://[2606:4700:4700::1111]:65535/",
        "http://10.0.0.1\\@93.184.216.34/",  # valid: its host is 10.0.0.1, which the SSRF guard then refuses
    ],
)
def test_urls_urllib3_sends_to_are_valid(url: str) -> None:
    model = IntegrationIn.model_validate(_webhook(url=url))
    assert model.credentials.http.url == url  # stored exactly as given
