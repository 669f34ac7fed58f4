"""Every command shown in examples/README.md, run as a user would, must print what it shows."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WFE = str(Path(sys.executable).with_name("wfe"))
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


def documented() -> list[tuple[str, str, bool]]:
    """(command, expected output, needs the static file server) for each README block."""
    cases = []
    for block in BLOCK.findall((ROOT / "examples" / "README.md").read_text()):
        lines = block.splitlines()
        commands = [i for i, line in enumerate(lines) if line.startswith("$ wfe ")]
        assert len(commands) == 1, block
        index = commands[0]
        cases.append(
            (lines[index][2:], "\n".join(lines[index + 1 :]).strip(), "http.server" in block)
        )
    return cases


@pytest.fixture(scope="module")
def file_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(ROOT / "examples" / "data"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:  # poll until it accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_every_example_file_is_documented() -> None:
    shown = " ".join(command for command, _, _ in documented())
    for path in sorted((ROOT / "examples").glob("*.*")):
        if path.suffix in {".json", ".yaml"}:
            assert f"examples/{path.name}" in shown, path.name


@pytest.mark.parametrize(("command", "expected", "needs_server"), documented())
def test_documented_command_prints_the_documented_output(
    command: str, expected: str, needs_server: bool, request: pytest.FixtureRequest
) -> None:
    argv = [WFE, *shlex.split(command)[1:]]
    if needs_server:
        argv += ["--input", f"base_url={request.getfixturevalue('file_server')}"]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if argv[1] == "validate":  # the verdict is on stderr; exit 1 when there are problems
        assert proc.returncode == (0 if expected.startswith("✓") else 1)
        assert proc.stderr.strip() == expected
    else:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == json.loads(expected)
        assert proc.stdout.strip() == expected
