"""
The README's promises: CI runs its test command, and the examples it points
to run as written.
"""

from __future__ import annotations

import re
import socket
import sys
from typing import Any, Dict

from .inreactor import inReactor
from .processes import REPOSITORY, spawn


def readmeCommands() -> list:  # type: ignore[type-arg]
    text = (REPOSITORY / "README.rst").read_text()
    return re.findall(r"^    (python3 -m venv .*)$", text, re.MULTILINE)


def test_ciRunsTheReadmeTestCommand() -> None:
    """
    C{.ci/run} runs exactly the README's test command.
    """
    server, tests = readmeCommands()
    assert "twistd -n tlsjson --dev" in server
    assert "pytest" in tests
    ci = (REPOSITORY / ".ci" / "run").read_text().splitlines()
    assert tests in ci


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


async def _exampleRoundTrip(serverScript: str, expected: list) -> None:  # type: ignore[type-arg]
    port = str(freePort())
    server = spawn([sys.executable, f"examples/{serverScript}", port])
    try:
        await server.waitFor(f"listening on 127.0.0.1:{port}")
        client = await spawn([sys.executable, "examples/client.py", port]).ended
        assert client.code == 0, client
        for line in expected:
            assert line in client.out
    finally:
        server.signal("INT")
        await server.ended


@inReactor
async def test_examples() -> None:
    """
    examples/server.py and examples/client.py talk as the README says.
    """
    await _exampleRoundTrip("server.py", ["server says {'welcome': 0}", "answer: {'sum': 6}"])


@inReactor
async def test_nativeExample() -> None:
    """
    examples/native_server.py serves examples/client.py.
    """
    await _exampleRoundTrip("native_server.py",
                            ["server says {'welcome': 'native'}", "answer: {'sum': 6}"])


def test_testingExample() -> None:
    """
    The README's example of testing an application with
    L{txtlsjson.testing} runs, and its tests pass.
    """
    text = (REPOSITORY / "README.rst").read_text()
    section = text[text.index("Testing your application: ``txtlsjson.testing``"):]
    block = section[section.index("::\n\n") + 4:]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    namespace: Dict[str, Any] = {}
    exec(compile("\n".join(lines), "README.rst", "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_")]
    assert len(tests) == 2
    for test in tests:
        test()
