"""The ``devicehooks`` command, run through its ``main``: help, and one-line errors with their exit codes."""

from __future__ import annotations

import errno
import http.client
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from devicehooks.delivery.signing import men_signature, webhook_headers
from devicehooks.errors import ConfigError
from devicehooks_dev import cli
from devicehooks_dev.local import stack as local_stack

BODY = b'{"id":"0b0e9f6c-5d6a-4d53-9d3c-1c1c1c1c1c1c","type":"device-provisioned","data":{"id":"dev-1"}}'
SECRET = "deadbeef"
COMMANDS = ("local", "token", "verify", "receive", "redrive", "publish-ui")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ---------------------------------------------------------------- help


def test_the_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command} " in out or f"    {command}\n" in out, command


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_describes_itself_with_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    usage, _, rest = out.partition("\n\n")
    assert usage.startswith(f"usage: devicehooks {command}")
    description = rest.split("\n\n", 1)[0]
    assert len(description) > 80 and not description.startswith("options:"), description
    assert "example" in out


# ---------------------------------------------------------------- redrive


def test_redrive_without_a_stack_or_a_local_stack_says_how_to_name_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "redrive", "--queue", "dispatch")
    assert code == 2
    assert err.startswith("devicehooks redrive: say where the queues are: --stack NAME")
    assert "--local URL" in err and err.count("\n") == 1


def test_redrive_of_a_local_stack_that_does_not_answer_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code, _, err = _run(capsys, "redrive", "--local", url, "--queue", "delivery")
    assert code == 1
    assert err.startswith(f"devicehooks redrive: cannot reach the local stack at {url}")
    assert "is devicehooks local running?" in err and err.count("\n") == 1


def test_redrive_takes_a_stack_or_a_local_stack_not_both(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["redrive", "--stack", "s", "--local", "http://127.0.0.1:8080"])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


# ---------------------------------------------------------------- verify


def test_verify_of_a_missing_file_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "body.json"
    code, _, err = _run(capsys, "verify", "--secret", SECRET, "--signature", "00", str(missing))
    assert code == 2
    assert err == f"devicehooks verify: cannot read {missing}: No such file or directory\n"


def test_verify_matches_the_exact_body(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(BODY)
    signature = men_signature(bytes.fromhex(SECRET), BODY)
    code, _, err = _run(capsys, "verify", "--secret", SECRET, "--signature", signature, str(tmp_path / "body.json"))
    assert (code, err) == (0, "signature matches\n")


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_verify_hints_at_a_final_newline_the_request_did_not_have(
    ending: bytes, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "body.json").write_bytes(BODY + ending)
    signature = men_signature(bytes.fromhex(SECRET), BODY)
    code, _, err = _run(capsys, "verify", "--secret", SECRET, "--signature", signature, str(tmp_path / "body.json"))
    assert code == 1
    assert err.startswith("signature does NOT match\nhint: it matches the body without its final newline")
    assert "--save" in err


def test_verify_hints_at_a_final_newline_for_standard_webhook_signatures_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    now = int(time.time())
    headers = webhook_headers("evt-1", BODY, [bytes.fromhex(SECRET)], now)
    (tmp_path / "body.json").write_bytes(BODY + b"\n")
    args = ["--webhook-id", "evt-1", "--timestamp", str(now), str(tmp_path / "body.json")]
    code, _, err = _run(capsys, "verify", "--secret", SECRET, "--signature", headers["webhook-signature"], *args)
    assert code == 1
    assert "hint: it matches the body without its final newline" in err


def test_verify_gives_no_hint_when_the_newline_is_not_the_difference(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "body.json").write_bytes(BODY + b"\n")
    code, _, err = _run(capsys, "verify", "--secret", SECRET, "--signature", "00" * 32, str(tmp_path / "body.json"))
    assert (code, err) == (1, "signature does NOT match\n")


def test_verify_with_a_secret_that_is_not_hex_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "body.json").write_bytes(BODY)
    code, _, err = _run(capsys, "verify", "--secret", "xyz", "--signature", "00", str(tmp_path / "body.json"))
    assert (code, err) == (2, "devicehooks verify: the secret is not a hexadecimal string\n")


# ---------------------------------------------------------------- receive


def test_receive_on_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = _run(capsys, "receive", "--port", str(port))
    assert code == 1
    assert err == (
        f"devicehooks receive: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another receiver running? choose another --port)\n"
    )


def test_a_port_out_of_range_is_refused_by_the_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["receive", "--port", "70000"])
    assert exited.value.code == 2
    assert "a port is 0 to 65535, not 70000" in capsys.readouterr().err


def test_receive_prints_the_headers_and_saves_the_body_exactly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    port = _free_port()
    saved = tmp_path / "bodies"
    argv = ["receive", "--port", str(port), "--secret", SECRET, "--save", str(saved), "--count", "1"]
    codes: list[int] = []
    receiver = threading.Thread(target=lambda: codes.append(cli.main(argv)))
    receiver.start()
    headers = webhook_headers("evt-7", BODY + b"\n", [bytes.fromhex(SECRET)], int(time.time()))
    deadline = time.monotonic() + 10
    while True:  # http.client keeps the headers' names as written (urllib capitalizes them)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("POST", "/hook", body=BODY + b"\n", headers=headers)
            assert connection.getresponse().status == 200
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            connection.close()
    receiver.join(timeout=10)
    assert not receiver.is_alive() and codes == [0]
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    lines = out.splitlines()
    at = lines.index("POST /hook  X-Men-Signature valid, webhook-signature valid")
    assert lines[at + 1 : at + 5] == [  # the signature headers first, then the others
        f"  X-Men-Signature: {headers['X-Men-Signature']}",
        "  webhook-id: evt-7",
        f"  webhook-timestamp: {headers['webhook-timestamp']}",
        f"  webhook-signature: {headers['webhook-signature']}",
    ]
    assert f"  Content-Type: {headers['Content-Type']}" in lines
    assert f"  (body saved to {saved / 'evt-7.json'}: {len(BODY) + 1} bytes, exactly as received)" in lines
    assert (saved / "evt-7.json").read_bytes() == BODY + b"\n"  # its final newline was sent: it is kept
    verified = ["verify", "--secret", SECRET, "--signature", headers["X-Men-Signature"], str(saved / "evt-7.json")]
    assert _run(capsys, *verified)[:3:2] == (0, "signature matches\n")


# ---------------------------------------------------------------- local


class _RefusedStack:
    """Stands in for the local stack: its start finds a function's setting invalid."""

    stopped = False

    def __init__(self, **_: Any) -> None:
        pass

    def start(self) -> None:
        raise ConfigError("invalid configuration: DEVICEHOOKS_DELIVERY_TIMEOUT: must be more than 0")

    def stop(self) -> None:
        _RefusedStack.stopped = True


class _BusyStack(_RefusedStack):
    """Stands in for the local stack: its port is taken."""

    def start(self) -> None:
        raise OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE))


class _NoStack:
    def __init__(self, **_: Any) -> None:
        raise AssertionError("the stack was started with an invalid setting")


def test_local_refuses_max_integrations_out_of_range_before_starting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_stack, "LocalStack", _NoStack)
    monkeypatch.setenv("DEVICEHOOKS_MAX_INTEGRATIONS", "150")
    code, _, err = _run(capsys, "local", "--port", "0")
    assert code == 2
    assert err == (
        "devicehooks local: invalid configuration: DEVICEHOOKS_MAX_INTEGRATIONS: must be at least 1 and at most 99, "
        "not 150\n"
    )


def test_local_reports_a_setting_the_stack_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_stack, "LocalStack", _RefusedStack)
    code, _, err = _run(capsys, "local", "--port", "0")
    assert code == 2 and _RefusedStack.stopped
    assert err == "devicehooks local: invalid configuration: DEVICEHOOKS_DELIVERY_TIMEOUT: must be more than 0\n"


def test_local_on_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_stack, "LocalStack", _BusyStack)
    before = signal.getsignal(signal.SIGINT)
    code, _, err = _run(capsys, "local", "--port", "8080")
    assert code == 1
    assert err == (
        "devicehooks local: cannot start: 127.0.0.1:8080 is in use (another devicehooks local? "
        "--port or DEVICEHOOKS_PORT chooses another)\n"
    )
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C is left as it was


def test_local_with_a_port_variable_that_is_no_port_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_stack, "LocalStack", _NoStack)
    monkeypatch.setenv("DEVICEHOOKS_PORT", "eighty")
    code, _, err = _run(capsys, "local")
    assert (code, err) == (2, "devicehooks local: DEVICEHOOKS_PORT: not a port number: 'eighty'\n")


# ---------------------------------------------------------------- publish-ui


def test_publish_ui_of_a_missing_directory_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "publish-ui", "--stack", "s", "--dir", str(tmp_path / "nope"))
    assert (code, err) == (2, f"devicehooks publish-ui: {tmp_path / 'nope'} is not a directory\n")
