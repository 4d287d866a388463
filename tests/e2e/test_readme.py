"""README.md's shell snippets, run as a newcomer would, against a real local stack.

Every fenced ```sh / ```bash block of the README is run, in order, by bash with ``set -euo pipefail``
in a scratch directory whose ``.venv`` is the project's, the variables a block sets (``TOKEN``,
``ID``, ``EVENT``) kept for the next ones, as the README's terminal keeps them. Each must exit 0,
and say what the README says it says. What the README asks for around them is done as it says:
the development receiver (``devicehooks receive ... --save bodies``, from the README's own text) runs
beside them, and the ``verify`` step gets the ``X-Men-Signature`` and body file that receiver
printed and saved, and must find the signature matches.

Two things differ from a terminal, and only these: the stack listens on a free port rather than
8080 (``http://localhost:8080`` in a block is replaced by the stack's address), and the receiver on
a free port rather than 9000 (``127.0.0.1:9000``, likewise); another session's stack or receiver
may hold those ports on a shared machine. The blocks that cannot run here are in :data:`SKIPPED`,
each with the reason; a new block runs unless it is added there.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devicehooks_dev.local.process import BIN, RunningStack, start_stack, stop_stack
from tests.conftest import ROOT

README = ROOT / "README.md"
# a line of a block that cannot run here -> why
SKIPPED = {
    "make run": "starts the stack in the foreground and the whole suite (make test): this test starts a stack itself",
    "make build": "sam build and sam deploy build and deploy to an AWS account",
    "publish-ui --stack": "uploads the UI to a deployed stack's bucket on AWS",
}
# the README's signature check, with the placeholders it tells the reader to fill in
VERIFY = "devicehooks verify"
# what a block's output must hold: the README says each of these comes back
EXPECTED = {
    "integrations \\": ["HTTP/1.1 201", '"description":"my receiver"'],
    "tenants/acme/devices \\": ["HTTP/1.1 202"],
    "/inventory \\": ['"scopes":["deviceauth","inventory"]', "HTTP/1.1 202"],
    "/redeliver \\": ['"integration_ids"', '"count"'],
}


def _blocks(text: str) -> list[str]:
    """The README's fenced sh/bash blocks, in order."""
    return [m[1] for m in re.finditer(r"^```(?:sh|bash)\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)]


def _skipped(block: str) -> str | None:
    return next((why for line, why in SKIPPED.items() if line in block), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, Path]]:
    """A stack of its own (the README's tenant "acme" and its first webhook are this test's), and
    the development key it signs with (start_stack keeps it in the stack's directory)."""
    workdir = tmp_path_factory.mktemp("readme-stack")
    running = start_stack(workdir)
    yield running, workdir / "dev-key.pem"
    stop_stack(running)


class Terminal:
    """A scratch directory where blocks run one after the other, the variables they set kept."""

    def __init__(self, workdir: Path, env: dict[str, str], replace: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.replace = replace
        self.state = workdir / ".readme-state"
        self.state.write_text("")

    def run(self, block: str) -> subprocess.CompletedProcess[str]:
        for old, new in self.replace.items():
            block = block.replace(old, new)
        names = sorted(set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", block, re.MULTILINE)))
        keep = f"\ndeclare -p {' '.join(names)} >> {shlex.quote(str(self.state))}\n" if names else "\n"
        script = f"set -euo pipefail\nsource {shlex.quote(str(self.state))}\n{block}{keep}"
        return subprocess.run(
            ["bash", "-c", script], cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=120
        )


def test_every_shell_snippet_of_the_readme_runs_against_the_local_stack(
    stack: tuple[RunningStack, Path], tmp_path: Path
) -> None:
    running, key = stack
    text = README.read_text()
    blocks = _blocks(text)
    assert len(blocks) >= 6, "the README's shell blocks were not found"
    assert any(VERIFY in b for b in blocks), "the README no longer shows devicehooks verify"
    for line in SKIPPED:
        assert any(line in b for b in blocks), f"SKIPPED names a block the README no longer has: {line}"

    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(BIN.parent)  # the README runs .venv/bin/devicehooks from the root
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DEVICEHOOKS_", "AWS_"))},
        # devicehooks token signs with the stack's development key
        "DEVICEHOOKS_DEV_KEY_FILE": str(key),
    }
    terminal = Terminal(workdir, env, {"http://localhost:8080": running.url, "127.0.0.1:9000": f"127.0.0.1:{port}"})

    # the receiver, as the README's text says to start it (in "a third terminal")
    found = re.search(r"\(`(\.venv/bin/devicehooks receive [^`]*)`\)", text)
    assert found, "the README no longer says how to start the receiver"
    command = found[1].replace("--port 9000", f"--port {port}")
    assert f"--port {port}" in command, command
    receiver = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed: list[str] = []

    def pump() -> None:
        assert receiver.stdout is not None
        for line in receiver.stdout:
            printed.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        _wait(lambda: any("receiving webhooks on" in line for line in printed), "the receiver listens")
        ran = 0
        for number, block in enumerate(blocks, 1):
            if _skipped(block):
                continue
            if VERIFY in block:
                block = _fill_in_verify(block, printed)
            result = terminal.run(block)
            where = f"README block {number}:\n{block}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            assert result.returncode == 0, where
            for marker, wanted in EXPECTED.items():
                if marker in block:
                    for said in wanted:
                        assert said in result.stdout, f"{said!r} not in the output of {where}"
            if VERIFY in block:
                assert "signature matches" in result.stderr, where
            ran += 1
        assert ran == len(blocks) - sum(1 for b in blocks if _skipped(b))
        # every request the receiver got was signed as the README says (both signatures valid)
        verdicts = [line for line in printed if line.startswith("POST ")]
        assert verdicts, "".join(printed)
        assert all("X-Men-Signature valid, webhook-signature valid" in line for line in verdicts), "".join(printed)
    finally:
        receiver.terminate()
        receiver.wait(10)


def _fill_in_verify(block: str, printed: list[str]) -> str:
    """The verify step with the X-Men-Signature the receiver printed and the body it saved, in place
    of ``<X-Men-Signature>`` and ``bodies/<webhook-id>.json``, as the README tells the reader."""
    _wait(lambda: any("body saved to" in line for line in printed), "the receiver saves a body")
    lines = "".join(printed).splitlines()
    signature = next(line.split(":", 1)[1].strip() for line in lines if line.strip().startswith("X-Men-Signature:"))
    webhook_id = next(line.split(":", 1)[1].strip() for line in lines if line.strip().startswith("webhook-id:"))
    assert "<X-Men-Signature>" in block and "<webhook-id>" in block, block
    return block.replace("<X-Men-Signature>", signature).replace("<webhook-id>", webhook_id)


def _wait(probe: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not probe():
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline} s: {what}")
        time.sleep(0.1)
