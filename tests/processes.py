"""
Running the project's commands as real processes from tests, bounded in
time.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

#: No test process may run longer than this.
PROCESS_LIMIT = 30.0

REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass
class Outcome:
    """
    What a finished process printed and its exit code.
    """

    out: str
    err: str
    code: Optional[int]
    signal: Optional[int] = None


@dataclass
class RunningProcess(ProcessProtocol):
    """
    Collects a process's output; lets a test wait for text to appear.
    """

    stdin: Optional[bytes] = None
    limit: float = PROCESS_LIMIT
    out: List[bytes] = field(default_factory=list)
    err: List[bytes] = field(default_factory=list)
    ended: "Deferred[Outcome]" = field(default_factory=Deferred)
    _waiters: List[Any] = field(default_factory=list)

    def connectionMade(self) -> None:
        if self.stdin is not None:
            self.transport.write(self.stdin)  # type: ignore[union-attr]
            self.transport.closeStdin()  # type: ignore[union-attr]
        self._killer = reactor.callLater(self.limit, self._kill)

    def _kill(self) -> None:
        self.transport.signalProcess("KILL")  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)
        self._check()

    def text(self) -> str:
        return b"".join(self.out).decode() + b"".join(self.err).decode()

    def waitFor(self, text: str, timeout: float = 10.0) -> "Deferred[None]":
        """
        @return: a Deferred that fires once C{text} has been printed (on
            stdout or stderr), failing after C{timeout} seconds.
        """
        d: Deferred[None] = Deferred()
        self._waiters.append((text, d))
        self._check()
        return d.addTimeout(timeout, reactor)

    def _check(self) -> None:
        current = self.text()
        for waiter in list(self._waiters):
            if waiter[0] in current:
                self._waiters.remove(waiter)
                if not waiter[1].called:
                    waiter[1].callback(None)

    def processEnded(self, reason: Failure) -> None:
        if self in _running:
            _running.remove(self)
        if self._killer.active():
            self._killer.cancel()
        for _, d in self._waiters:
            if not d.called:
                d.errback(AssertionError(f"process ended first; it printed:\n{self.text()}"))
        self._waiters = []
        value: Any = reason.value
        self.ended.callback(Outcome(
            b"".join(self.out).decode(), b"".join(self.err).decode(),
            getattr(value, "exitCode", None), getattr(value, "signal", None)))

    def signal(self, name: str) -> None:
        """
        Send signal C{name} ("TERM", "CONT", ...), unless the process ended.
        """
        if self.ended.called:
            return
        self.transport.signalProcess(getattr(signal, f"SIG{name}"))  # type: ignore[union-attr]


def spawn(argv: Sequence[str], stdin: Optional[bytes] = None,
          env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
          limit: float = PROCESS_LIMIT) -> RunningProcess:
    """
    Start C{argv} (its first item an executable path); it is killed if it
    runs longer than C{limit} seconds.
    """
    environment = dict(os.environ)
    environment.pop("TLSJSON_PASSWORD", None)
    environment.update(env or {})
    process = RunningProcess(stdin=stdin, limit=limit)
    reactor.spawnProcess(
        process, argv[0], list(argv), env=environment, path=str(cwd or REPOSITORY))
    _running.append(process)
    return process


#: The processes started and not ended yet.
_running: List[RunningProcess] = []


def killLeftovers() -> List[str]:
    """
    Kill (SIGKILL) every process a test started and left running -- a test
    that failed half-way must not leave a server behind.

    @return: what was killed, for the record.
    """
    killed = []
    for process in list(_running):
        if not process.ended.called:
            process.signal("KILL")
            killed.append(repr(process.transport))
    return killed


def tlsjson(*args: str, stdin: Optional[bytes] = None,
            env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None) -> RunningProcess:
    """
    Start the C{tlsjson} command (as C{python -m txtlsjson}).
    """
    return spawn([sys.executable, "-m", "txtlsjson", *args], stdin=stdin, env=env, cwd=cwd)


def twistd(*args: str, env: Optional[Dict[str, str]] = None,
           cwd: Optional[Path] = None, limit: float = PROCESS_LIMIT) -> RunningProcess:
    """
    Start the real C{twistd} of this Python environment.
    """
    executable = Path(sys.executable).parent / "twistd"
    return spawn([str(executable), *args], env=env, cwd=cwd, limit=limit)
