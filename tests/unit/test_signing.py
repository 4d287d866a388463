"""Webhook signatures: Mender's test vector (BEHAVIOUR.md §3.3), Standard Webhooks, the receiver helper."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devicehooks.delivery.signing import MEN_ALGORITHM, men_signature, standard_signature, webhook_headers
from devicehooks_dev.receiver import WebhookVerificationError, verify_men_signature, verify_standard_webhook

VECTOR_BODY = (
    b'{"id":"00000000-0000-0000-0000-000000000000","type":"device-decommissioned",'
    b'"data":{"id":"9c91e5fa-9dcb-451b-b4d8-d30e6b1e9266"},"time":"2024-01-01T00:00:00Z"}'
)
DEVICEHOOKS = Path(sys.executable).parent / "devicehooks"


def test_menders_test_vector_signs_with_the_hex_decoded_secret() -> None:
    assert len(VECTOR_BODY) == 159
    assert men_signature(bytes.fromhex("deadbeef"), VECTOR_BODY) == (
        "3ceb75278a4bfd51b144f1f3b7b61e31bacb7ca85fe2aac7323be2b1de13dfdb"
    )


def test_the_ascii_of_the_hex_string_is_not_the_key() -> None:
    assert men_signature(b"deadbeef", VECTOR_BODY).startswith("3f6fa2c1")


def test_an_empty_secret_signs_with_an_empty_key() -> None:
    assert men_signature(b"", VECTOR_BODY) == "a31a6154a6363fc221767ba950938e0e80b5967c177b36d8d4118ccaa03b2795"


def test_headers_carry_both_schemes_when_there_is_a_secret() -> None:
    headers = webhook_headers("evt-1", VECTOR_BODY, [bytes.fromhex("deadbeef")], 1_700_000_000)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("devicehooks/")
    assert headers["X-Men-Signature"] == "3ceb75278a4bfd51b144f1f3b7b61e31bacb7ca85fe2aac7323be2b1de13dfdb"
    assert headers["X-Men-Algorithm"] == MEN_ALGORITHM == "MEN-HMAC-SHA256-Payload"
    assert headers["webhook-id"] == "evt-1"
    assert headers["webhook-timestamp"] == "1700000000"
    expected = hmac.new(bytes.fromhex("deadbeef"), b"evt-1.1700000000." + VECTOR_BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_without_a_secret_nothing_is_signed_as_in_mender() -> None:
    headers = webhook_headers("evt-1", VECTOR_BODY, None, 1_700_000_000)
    assert "X-Men-Signature" not in headers and "X-Men-Algorithm" not in headers
    assert "webhook-signature" not in headers
    assert headers["webhook-id"] == "evt-1"


def test_during_a_rotation_both_secrets_sign_and_mender_uses_the_new_one() -> None:
    new, old = bytes.fromhex("c0ffee"), bytes.fromhex("deadbeef")
    headers = webhook_headers("evt-1", VECTOR_BODY, [new, old], 1_700_000_000)
    assert headers["X-Men-Signature"] == men_signature(new, VECTOR_BODY)
    first, second = headers["webhook-signature"].split(" ")
    assert first == standard_signature(new, "evt-1", 1_700_000_000, VECTOR_BODY)
    assert second == standard_signature(old, "evt-1", 1_700_000_000, VECTOR_BODY)
    for secret in ("c0ffee", "deadbeef"):
        verify_standard_webhook(secret, VECTOR_BODY, headers, now=1_700_000_000)


def test_receiver_helper_verifies_menders_signature_in_constant_time() -> None:
    signature = men_signature(bytes.fromhex("deadbeef"), VECTOR_BODY)
    assert verify_men_signature("deadbeef", VECTOR_BODY, signature)
    assert verify_men_signature("DEADBEEF", VECTOR_BODY, signature.upper())
    assert not verify_men_signature("deadbeef", VECTOR_BODY + b" ", signature)
    assert not verify_men_signature("c0ffee", VECTOR_BODY, signature)


def test_receiver_helper_refuses_stale_and_tampered_standard_webhooks() -> None:
    now = int(time.time())
    headers = webhook_headers("evt-2", VECTOR_BODY, [bytes.fromhex("deadbeef")], now)
    verify_standard_webhook("deadbeef", VECTOR_BODY, headers)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_standard_webhook("deadbeef", VECTOR_BODY, headers, now=now + 301)
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_standard_webhook("deadbeef", VECTOR_BODY.replace(b"2024", b"2025"), headers)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_standard_webhook("deadbeef", VECTOR_BODY, {"webhook-id": "x"})
    replayed = {**headers, "webhook-id": "evt-other"}
    with pytest.raises(WebhookVerificationError):
        verify_standard_webhook("deadbeef", VECTOR_BODY, replayed)


def _verify_cli(*args: str, body: bytes = VECTOR_BODY) -> int:
    return subprocess.run([str(DEVICEHOOKS), "verify", *args], input=body, capture_output=True).returncode


def test_verify_command_exits_0_only_when_the_signature_matches(tmp_path: Path) -> None:
    good = "3ceb75278a4bfd51b144f1f3b7b61e31bacb7ca85fe2aac7323be2b1de13dfdb"
    assert _verify_cli("--secret", "deadbeef", "--signature", good) == 0
    assert _verify_cli("--secret", "deadbeef", "--signature", good, "-") == 0
    body_file = tmp_path / "body.json"
    body_file.write_bytes(VECTOR_BODY)
    assert _verify_cli("--secret", "deadbeef", "--signature", good, str(body_file), body=b"") == 0
    assert _verify_cli("--secret", "deadbeef", "--signature", "00" * 32) == 1
    assert _verify_cli("--secret", "deadbeef", "--signature", good, body=VECTOR_BODY + b"\n") == 1
    assert _verify_cli("--secret", "not-hex", "--signature", good) == 2


def test_verify_command_checks_standard_webhook_signatures() -> None:
    now = int(time.time())
    signature = standard_signature(bytes.fromhex("deadbeef"), "evt-3", now, VECTOR_BODY)
    args = ["--secret", "deadbeef", "--signature", signature, "--webhook-id", "evt-3", "--timestamp", str(now)]
    assert _verify_cli(*args) == 0
    assert _verify_cli(*args[:-2], "--timestamp", str(now - 3600)) == 1
    assert _verify_cli("--secret", "deadbeef", "--signature", signature) == 2


def test_the_development_receiver_prints_each_webhook_and_checks_its_signatures() -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(DEVICEHOOKS), "receive", "--port", str(port), "--secret", "deadbeef"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("receiving webhooks on")
        headers = webhook_headers("evt-9", VECTOR_BODY, [bytes.fromhex("deadbeef")], int(time.time()))
        request = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=VECTOR_BODY, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        assert process.stdout.readline().strip() == "POST /hook  X-Men-Signature valid, webhook-signature valid"
        printed: list[str] = []  # the headers, then the body
        while VECTOR_BODY.decode() not in printed and len(printed) < 20:
            printed.append(process.stdout.readline().strip())
        assert printed[-1] == VECTOR_BODY.decode()
        lowered = [line.lower() for line in printed]  # urllib capitalizes the headers' names
        assert lowered[0] == f"x-men-signature: {headers['X-Men-Signature']}"
        assert f"webhook-signature: {headers['webhook-signature']}".lower() in lowered
    finally:
        process.terminate()
        process.wait(timeout=10)
