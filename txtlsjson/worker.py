"""
One worker of C{twistd tlsjson --workers N}: C{python -m txtlsjson.worker},
started by L{txtlsjson.workers.WorkerPool}, never by hand.

It reads one line of JSON from its standard input -- its number, the
password, the C{twistd tlsjson} arguments and the listening socket's file
descriptor -- builds the same server a single process would, accepts
connections on the inherited socket, and logs to its standard output for
the parent to relog.  It stops on SIGTERM or SIGINT (closing its clients as
C{server.close()} does) and when its standard input closes: its parent is
gone.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, Callable, Dict, Optional, TextIO

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import FileLogObserver, Logger, eventAsText, globalLogBeginner
from zope.interface import implementer

log = Logger(namespace="txtlsjson.worker")


@implementer(IReadDescriptor)
class _ParentWatch:
    """
    Reads the worker's standard input, which its parent holds open: end of
    file means the parent is gone, and the worker stops.
    """

    def __init__(self, reactor: Any, askedForMetrics: Optional[Callable[[], None]] = None) -> None:
        """
        @param askedForMetrics: called for each C{metrics} line the parent
            sends (with C{--metrics}).
        """
        self._reactor = reactor
        self._askedForMetrics = askedForMetrics

    def fileno(self) -> int:
        """
        Standard input.
        """
        return 0

    def doRead(self) -> None:
        """
        Read what the parent sent (requests for metrics, one a line); at its
        end, stop.
        """
        data = os.read(0, 4096)
        if not data:
            self.connectionLost(None)
            return
        if self._askedForMetrics is not None:
            for _ in range(data.count(b"\n")):
                self._askedForMetrics()

    def connectionLost(self, reason: Any) -> None:
        """
        The parent is gone: stop the reactor (which closes the server).
        """
        self._reactor.removeReader(self)
        if self._reactor.running:
            log.warn("the parent process is gone; stopping")
            self._reactor.stop()

    def logPrefix(self) -> str:
        """
        How the reactor names this reader in its log.
        """
        return "parent"


def _dieWithParent() -> None:
    """
    On Linux, ask for SIGTERM when the parent dies (besides watching
    standard input, which a frozen parent would keep open).
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _readConfig(stdin: TextIO) -> Dict[str, Any]:
    line = stdin.readline()
    if not line:
        raise SystemExit("txtlsjson.worker: no configuration on standard input "
                         "(started by twistd tlsjson --workers, not by hand)")
    config: Dict[str, Any] = json.loads(line)
    return config


def main() -> None:
    """
    Run one worker until it is told to stop.
    """
    _dieWithParent()
    config = _readConfig(sys.stdin)
    globalLogBeginner.beginLoggingTo(
        [FileLogObserver(sys.stdout, lambda event: (eventAsText(
            event, includeTimestamp=False, includeSystem=False) or "") + "\n")],
        redirectStandardIO=False)

    from twisted.internet import reactor

    from txtlsjson.tap import Options, buildServer
    from txtlsjson.tls import serverTLSOptions

    options = Options()
    options.parseOptions(config["arguments"])
    tlsOptions = serverTLSOptions(options["cert"], options["key"], options["chain"],
                                  options["client-ca"] or None)
    server = buildServer(options, config["password"], tlsOptions)
    if options["credentials"]:
        from txtlsjson.hangup import OnHangup
        from txtlsjson.service import reloadCredentials

        # The parent passes its SIGHUP on to each worker.
        OnHangup(reactor, lambda: reloadCredentials(server)).install()
    askedForMetrics = None
    if "metricsFD" in config and server.metrics is not None:
        askedForMetrics = _metricsReporter(server.metrics, config["metricsFD"])
    fd = config["fd"]

    def listening(port: Any) -> None:
        os.close(fd)  # adopted: the port holds its own copy
        log.info("worker {number} (pid {pid}) accepting on {address}",
                 number=config["number"], pid=os.getpid(), address=port.getHost())

    def failed(failure: Any) -> None:
        log.failure("worker {number} cannot accept on its socket", failure,
                    number=config["number"])
        reactor.stop()

    server.listenOnSocket(fd, config["family"]).addCallbacks(listening, failed)
    reactor.addSystemEventTrigger("before", "shutdown", server.close)
    reactor.addReader(_ParentWatch(reactor, askedForMetrics))
    reactor.run()


def _metricsReporter(metrics: Any, fd: int) -> Callable[[], None]:
    """
    What answers the parent's request for metrics: C{metrics} as a JSON line
    on C{fd}.
    """
    def report() -> None:
        try:
            os.write(fd, json.dumps(metrics.snapshot()).encode("ascii") + b"\n")
        except OSError:  # the parent is gone; _ParentWatch stops this worker
            pass

    return report


if __name__ == "__main__":
    main()
