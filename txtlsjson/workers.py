"""
C{twistd tlsjson --workers N}: one process binds the listening socket and N
worker processes accept connections on it, each a whole tls-json server.

The parent binds in C{privilegedStartService} (so privileged ports and
twistd's C{-u}/C{-g} work as without workers) and hands the socket to each
worker as its file descriptor 3, which the worker adopts
(C{IReactorSocket.adoptStreamPort}; see L{txtlsjson.worker}).  The kernel
then gives each new connection to one of the workers waiting on it.  The
parent sends each worker its password on its standard input, which stays
open: a worker whose parent is gone sees it close and stops.

A worker that dies is started again after a delay that doubles while it
keeps dying soon after starting (1 s up to 30 s), and the log says so.
Stopping the service (SIGTERM or SIGINT to twistd) stops the restarts and
sends SIGTERM to every worker, which closes its clients as
C{server.close()} does; a worker still running 10 s later is killed.
Every line a worker logs is logged again by the parent, with the worker's
number.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.errors import ListenFailed
from txtlsjson.hangup import OnHangup

if TYPE_CHECKING:
    from txtlsjson.metrics import ServerMetrics
    from txtlsjson.tap import Options

#: The file descriptor a worker finds the listening socket on.
LISTENING_FD = 3

#: The file descriptor on which a worker reports its metrics (with
#: C{--metrics}): a JSON snapshot a line, each time the parent asks (a
#: C{metrics} line on the worker's standard input).
METRICS_FD = 4
#: The longest a scrape waits for the workers' answers.
METRICS_WAIT = 1.0

#: Seconds before a dead worker is started again, doubling while it keeps
#: dying within L{STEADY_AFTER} seconds of starting, up to L{MAX_RESTART_DELAY}.
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STEADY_AFTER = 10.0

#: Seconds a worker has to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0


class _Worker(ProcessProtocol):
    """
    One worker process, seen from the parent: its output relogged, its end
    reported to the pool.
    """

    def __init__(self, pool: "WorkerPool", number: int) -> None:
        self.pool = pool
        self.number = number
        self.pid: Optional[int] = None
        self.startedAt = 0.0
        self.ended: Deferred[None] = Deferred()
        self._partial: Dict[int, bytes] = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        self.pid = getattr(self.transport, "pid", None)

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial.get(childFD, b"") + data).split(b"\n")
        self._partial[childFD] = lines.pop()
        for line in lines:
            if childFD == METRICS_FD:
                self.pool._metricsReceived(self.number, line)
            else:
                self.pool._relog(self.number, line.decode("utf-8", "replace").rstrip("\r"))

    def processEnded(self, reason: Failure) -> None:
        for childFD, rest in self._partial.items():
            if rest and childFD != METRICS_FD:
                self.pool._relog(self.number, rest.decode("utf-8", "replace"))
        self.ended.callback(None)
        self.pool._ended(self, reason)


class _Scrape:
    """
    One scrape of a C{--workers} parent's metrics, waiting for the workers'
    answers.
    """

    __slots__ = ("waiting", "done", "timer")

    def __init__(self, waiting: Set[int]) -> None:
        self.waiting = waiting
        self.done: Deferred[None] = Deferred()
        self.timer: Optional[IDelayedCall] = None


class WorkerPool(Service):
    """
    Runs C{twistd tlsjson} as worker processes sharing one listening socket.
    """

    log = Logger()

    def __init__(self, options: "Options", password: Optional[str], exitOnListenFailure: bool = False,
                 reactor: Any = None, executable: str = sys.executable,
                 metricsEndpoint: Any = None) -> None:
        """
        @param options: the parsed C{twistd tlsjson} options (with C{--port});
            the workers parse the same arguments.
        @param password: the password, sent to each worker on its standard
            input (never on a command line); L{None} with C{--credentials}
            (each worker reads the file, and C{SIGHUP} is passed on to them
            to reload it).
        @param exitOnListenFailure: on a failure to bind, raise
            C{SystemExit} with a one-line message (for C{twistd -n}) rather
            than L{ListenFailed}.
        @param reactor: the reactor; the global one by default.
        @param executable: the Python that runs the workers.
        @param metricsEndpoint: with C{--metrics}, the endpoint to serve every
            worker's metrics on, told apart by a C{worker} label; each
            scrape asks the workers for theirs (L{refreshMetrics}).
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self._reactor = reactor
        self._options = options
        self._password = password
        self._exitOnListenFailure = exitOnListenFailure
        self._executable = executable
        self.count: int = options["workers"]
        self._socket: Optional[socket.socket] = None
        self.workers: Dict[int, _Worker] = {}
        self._restarts: Dict[int, IDelayedCall] = {}
        self._delays: Dict[int, float] = {}
        self._stopping = False
        self._hangup: Optional[OnHangup] = None
        if options["credentials"]:
            self._hangup = OnHangup(reactor, self._passOnHangup)
        #: Each running worker's metrics, as it last reported them.
        self.metrics: Dict[int, "ServerMetrics"] = {}
        # The scrapes waiting for workers' answers.
        self._scrapes: List[_Scrape] = []
        self._metricsService: Any = None
        if metricsEndpoint is not None:
            from txtlsjson.metrics import MetricsCollector
            from txtlsjson.service import metricsService

            collector = MetricsCollector(
                lambda: {str(number): metrics for number, metrics in self.metrics.items()})
            self._metricsService = metricsService(
                options["metrics"], metricsEndpoint, collector, exitOnListenFailure,
                refresh=self.refreshMetrics)

    # -- the service ---------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        Bind the socket now, before twistd sheds privileges.
        """
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._bind()
        if self._metricsService is not None:
            self._metricsService.privilegedStartService()

    def startService(self) -> None:
        """
        Bind (if not done yet) and start the workers.
        """
        super().startService()  # type: ignore[no-untyped-call]
        self._bind()
        if self._metricsService is not None:
            self._metricsService.startService()
        self._stopping = False
        for number in range(1, self.count + 1):
            self._start(number)
        if self._hangup is not None:
            self._hangup.install()

    def _passOnHangup(self) -> None:
        self.log.info("SIGHUP: passing it on to the {count} workers", count=len(self.workers))
        for worker in self.workers.values():
            self._signal(worker, "HUP")

    def stopService(self) -> "Deferred[None]":
        """
        Stop restarting, ask every worker to stop (SIGTERM), kill those
        still running after L{STOP_TIMEOUT} seconds, and close the socket.

        @return: a Deferred that fires once every worker has exited.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        if self._hangup is not None:
            self._hangup.uninstall()
        waiting: List[Deferred[Any]] = []
        if self._metricsService is not None:
            waiting.append(self._metricsService.stopService())
        for scrape in list(self._scrapes):
            self._scraped(scrape)
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        for worker in list(self.workers.values()):
            waiting.append(worker.ended)
            self._signal(worker, "TERM")
            killer = self._reactor.callLater(STOP_TIMEOUT, self._signal, worker, "KILL")
            worker.ended.addCallback(self._cancel, killer)

        def closed(_: object) -> None:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self.log.info("all {count} workers stopped", count=self.count)

        return gatherResults(waiting).addCallback(closed)

    @staticmethod
    def _cancel(result: None, call: IDelayedCall) -> None:
        if call.active():
            call.cancel()

    # -- the socket ------------------------------------------------------------

    @property
    def address(self) -> Any:
        """
        The bound address, as C{(host, port)}; L{None} before binding.
        """
        return None if self._socket is None else self._socket.getsockname()

    def _bind(self) -> None:
        if self._socket is not None:
            return
        from txtlsjson.server import DEFAULT_BACKLOG

        interface = self._options["interface"]
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((interface, self._options["port"]))
            sock.listen(DEFAULT_BACKLOG)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            message = (f"cannot listen on TLS port {interface or '*'}:{self._options['port']}: "
                       f"{e.strerror}")
            if self._exitOnListenFailure:
                raise SystemExit(f"twistd tlsjson: {message}") from None
            raise ListenFailed(message) from None
        self._socket = sock
        host, port = sock.getsockname()[:2]
        self.log.info("tls-json server listening on {host}:{port} (port={port}) with "
                      "{count} workers", host=host, port=port, count=self.count)

    # -- the workers -------------------------------------------------------------

    def _start(self, number: int) -> None:
        assert self._socket is not None
        self._restarts.pop(number, None)
        worker = _Worker(self, number)
        config = {"number": number, "password": self._password,
                  "arguments": self._options.arguments, "fd": LISTENING_FD,
                  "family": int(self._socket.family)}
        childFDs: Dict[int, Any] = {0: "w", 1: "r", 2: "r", LISTENING_FD: self._socket.fileno()}
        if self._metricsService is not None:
            childFDs[METRICS_FD] = "r"
            config["metricsFD"] = METRICS_FD
        transport = self._reactor.spawnProcess(
            worker, self._executable, [self._executable, "-m", "txtlsjson.worker"],
            env=dict(os.environ), childFDs=childFDs)
        transport.write(json.dumps(config).encode("utf-8") + b"\n")
        worker.startedAt = self._reactor.seconds()
        self.workers[number] = worker
        self.log.info("worker {number} started (pid {pid})", number=number, pid=worker.pid)

    def refreshMetrics(self) -> "Deferred[None]":
        """
        Ask every running worker for its counts (a C{metrics} line on its
        standard input).

        @return: a Deferred that fires once all have answered (or ended), or
            after L{METRICS_WAIT} seconds with what has come: a worker late
            to answer keeps the counts it sent last.
        """
        scrape = _Scrape(set(self.workers))
        if not scrape.waiting:
            return succeed(None)
        scrape.timer = self._reactor.callLater(METRICS_WAIT, self._scraped, scrape)
        self._scrapes.append(scrape)
        for number in scrape.waiting:
            self.workers[number].transport.write(b"metrics\n")  # type: ignore[union-attr]
        return scrape.done

    def _answered(self, number: int) -> None:
        """
        Worker C{number} answered (or ended): the scrapes waiting for no one
        else go on.
        """
        for scrape in list(self._scrapes):
            scrape.waiting.discard(number)
            if not scrape.waiting:
                self._scraped(scrape)

    def _scraped(self, scrape: "_Scrape") -> None:
        self._scrapes.remove(scrape)
        if scrape.timer is not None and scrape.timer.active():
            scrape.timer.cancel()
        scrape.done.callback(None)

    def _metricsReceived(self, number: int, line: bytes) -> None:
        from txtlsjson.metrics import ServerMetrics

        try:
            self.metrics[number] = ServerMetrics.fromSnapshot(json.loads(line))
        except ValueError as e:
            self.log.warn("worker {number} sent metrics that are not: {error}", number=number,
                          error=e)
        self._answered(number)

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
            # Its counts start again with the next one.
            self.metrics.pop(worker.number, None)
            self._answered(worker.number)
        if self._stopping:
            self.log.info("worker {number} (pid {pid}) stopped", number=worker.number,
                          pid=worker.pid)
            return
        lived = self._reactor.seconds() - worker.startedAt
        delay = FIRST_RESTART_DELAY
        if lived < STEADY_AFTER:
            delay = min(MAX_RESTART_DELAY, 2 * self._delays.get(worker.number, delay / 2))
        self._delays[worker.number] = delay
        self.log.warn("worker {number} (pid {pid}) ended ({why}) after {lived:.1f} s; "
                      "starting it again in {delay:g} s", number=worker.number,
                      pid=worker.pid, why=reason.getErrorMessage(), lived=lived, delay=delay)
        self._restarts[worker.number] = self._reactor.callLater(delay, self._start,
                                                                worker.number)

    def _signal(self, worker: _Worker, name: str) -> None:
        try:
            worker.transport.signalProcess(name)  # type: ignore[union-attr]
        except Exception:  # it has exited already
            pass

    def _relog(self, number: int, line: str) -> None:
        if line:
            self.log.info("[worker {number}] {line}", number=number, line=line)
