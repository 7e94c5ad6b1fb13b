"""
A Twisted service that runs a L{Server} on endpoints, for twistd and for
applications that compose services::

    from twisted.application.service import Application
    from twisted.internet.endpoints import serverFromString

    server = Server(password)
    server.on("request", lambda id, request, res: res.send(request))
    service = TLSJSONService(server, [("port 8888", serverFromString(
        reactor, "ssl:8888:privateKey=server.key:certKey=server.crt"))])
    service.setServiceParent(application)
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.errors import AuthenticationFailed, AuthenticationTimeout, CredentialsError, ListenFailed
from txtlsjson.hangup import OnHangup
from txtlsjson.server import Server


def _noted(result: Any, outcome: List[Any]) -> Any:
    """
    Note C{result} in C{outcome} and pass it on (a listening port to stop
    later, a failure for a later errback).
    """
    outcome.append(result)
    return result


class _ListensWhenStarted:
    """
    A service that listens as it starts: in C{privilegedStartService}, before
    twistd sheds privileges (for ports below 1024), or else in
    C{startService}.  Its C{_listen} must do nothing the second time.
    """

    log = Logger()
    #: On a failure to listen, raise C{SystemExit} with one line (for
    #: C{twistd -n}) rather than L{ListenFailed}.
    _exitOnListenFailure = False

    def _listen(self) -> None:
        raise NotImplementedError()

    def _listened(self, listening: "Deferred[Any]", description: str, what: str) -> Any:
        """
        See how listening on C{description} went: a port listening now is
        logged (as C{what} on its address) and returned; a failure now is
        raised with one line; an endpoint that listens later gives L{None},
        and its failure, if it fails, goes to the log.
        """
        outcome: List[Any] = []
        listening.addBoth(_noted, outcome)
        if not outcome:
            listening.addErrback(self._lateFailure, description)
            return None
        if isinstance(outcome[0], Failure):
            listening.addErrback(lambda failure: None)  # reported here
            message = f"cannot listen on {description}: {outcome[0].getErrorMessage()}"
            if self._exitOnListenFailure:
                raise SystemExit(f"twistd tlsjson: {message}")
            raise ListenFailed(message)
        self.log.info("{what} on {address}", what=what, address=outcome[0].getHost())
        return outcome[0]

    def _lateFailure(self, failure: Failure, description: str) -> None:
        self.log.failure("cannot listen on {description}", failure, description=description)

    def privilegedStartService(self) -> None:
        """
        Listen now, before twistd sheds privileges.
        """
        super().privilegedStartService()  # type: ignore[misc]
        self._listen()

    def startService(self) -> None:
        """
        Listen, if L{privilegedStartService} did not already.
        """
        super().startService()  # type: ignore[misc]
        self._listen()


class TLSJSONService(_ListensWhenStarted, MultiService):
    """
    Listens with a L{Server} on endpoints when started; stops listening,
    closes every client and fails their pending requests when stopped.
    Services added to it (a metrics endpoint) start and stop with it.

    @ivar server: the L{Server}.
    """

    log = Logger()

    def __init__(
        self,
        server: Server,
        endpoints: Sequence[Tuple[str, IStreamServerEndpoint]],
        exitOnListenFailure: bool = False,
        reloadOnHangup: bool = False,
    ) -> None:
        """
        @param server: the server to run.
        @param endpoints: pairs of a description (for messages) and an
            endpoint to listen on.
        @param exitOnListenFailure: on a failure to listen, raise
            C{SystemExit} with a one-line message (for C{twistd -n}) rather
            than L{ListenFailed}.
        @param reloadOnHangup: while running, reload the server's
            credentials on each C{SIGHUP} (L{reloadCredentials}).
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.server = server
        self._endpoints = list(endpoints)
        self._exitOnListenFailure = exitOnListenFailure
        self._listening = False
        self._hangup: Optional[OnHangup] = None
        if reloadOnHangup:
            self._hangup = OnHangup(server.factory.clock, lambda: reloadCredentials(server))

    def startService(self) -> None:
        """
        Listen (if not done yet), and handle C{SIGHUP} if asked to.
        """
        super().startService()
        if self._hangup is not None:
            self._hangup.install()

    def _listen(self) -> None:
        if self._listening:
            return
        self._listening = True
        for description, endpoint in self._endpoints:
            self._listened(self.server.listenOn(endpoint), description, "tls-json server listening")

    def stopService(self) -> "Optional[Deferred[None]]":
        """
        Stop listening and close every connection.

        @return: a Deferred that fires once all of them are closed.
        """
        children = maybeDeferred(super().stopService)
        self._listening = False
        if self._hangup is not None:
            self._hangup.uninstall()
        return gatherResults([children, self.server.close()]).addCallback(lambda _: None)


class ListeningService(_ListensWhenStarted, Service):
    """
    Listens with a factory on one endpoint while running -- the
    C{--metrics} web server, say.  A failure to listen raises
    C{SystemExit} with one line (for C{twistd -n}) or L{ListenFailed}.
    """

    log = Logger()

    def __init__(self, description: str, endpoint: IStreamServerEndpoint, factory: Any,
                 exitOnListenFailure: bool = False) -> None:
        """
        @param description: what it serves where, for messages.
        """
        self._description = description
        self._endpoint = endpoint
        self._factory = factory
        self._exitOnListenFailure = exitOnListenFailure
        #: The endpoint's Deferred for the listening port, while listening.
        self._listening: "Optional[Deferred[Any]]" = None

    def _listen(self) -> None:
        if self._listening is not None:
            return
        listening = self._listening = self._endpoint.listen(self._factory)
        try:
            self._listened(listening, self._description, self._description)
        except BaseException:
            self._listening = None
            raise

    def stopService(self) -> "Deferred[None]":
        """
        Stop listening.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        listening, self._listening = self._listening, None
        if listening is None:
            return succeed(None)
        return listening.addCallback(lambda port: port and port.stopListening())


def metricsService(description: str, endpoint: IStreamServerEndpoint, metrics: Any,
                   exitOnListenFailure: bool = False,
                   refresh: "Optional[Callable[[], Deferred[None]]]" = None) -> ListeningService:
    """
    The service serving C{metrics} (a L{ServerMetrics<txtlsjson.metrics.ServerMetrics>}
    or a L{MetricsCollector<txtlsjson.metrics.MetricsCollector>}) for
    Prometheus on C{endpoint}, C{--metrics}'s C{description}; see
    L{txtlsjson.metrics.metricsResource} for C{refresh}.
    """
    from txtlsjson.metrics import metricsSite

    return ListeningService(f"Prometheus metrics ({description})", endpoint,
                            metricsSite(metrics, refresh=refresh),
                            exitOnListenFailure=exitOnListenFailure)


def reloadCredentials(server: Server) -> None:
    """
    Reload C{server}'s credentials file (L{Server.reloadCredentials}) and
    log the outcome: how many clients it now holds and which connections
    were closed, or, if the file is bad, that the credentials already
    loaded stay in force and why.
    """
    log = Logger(namespace="txtlsjson.server")
    authenticator = server.factory.authenticator
    try:
        closed = server.reloadCredentials()
    except CredentialsError as e:
        log.error("credentials not reloaded, the previous ones stay in force: {error}", error=e)
        return
    log.info("credentials reloaded from {path}: {count} client(s); {closed} connection(s) "
             "of revoked clients closed", path=getattr(authenticator, "path", authenticator),
             count=len(getattr(authenticator, "names", ())), closed=len(closed))


def logServerEvents(server: Server) -> None:
    """
    Log what an operator wants to see of a server through
    C{twisted.logger}: each client authenticated, closed or timed out with
    its id, its address and who it is (its credential's name or its
    certificate's subject, when it has one), failed password attempts with
    the address (never the password), and protocol errors.
    """
    log = Logger(namespace="txtlsjson.server")

    def who(connectionId: int) -> str:
        address = _address(server.peer(connectionId))
        identity = server.identity(connectionId)
        if identity is None or (identity.name is None and identity.subject is None):
            return address
        return f"{identity} at {address}"

    def authenticated(connectionId: int, peer: Any) -> None:
        identity = server.identity(connectionId)
        named = identity is not None and (identity.name is not None or identity.subject is not None)
        log.info("client {connectionId} authenticated from {peer}{asWho}", connectionId=connectionId,
                 peer=_address(peer), asWho=f" as {identity}" if named else "")

    server.on("authenticated", authenticated)
    server.on("close", lambda connectionId: log.info(
        "client {connectionId} ({who}) closed", connectionId=connectionId, who=who(connectionId)))
    server.on("timeout", lambda connectionId: log.warn(
        "client {connectionId} ({who}) missed a keepalive ping; dropped",
        connectionId=connectionId, who=who(connectionId)))

    def error(connectionId: int, error: Exception) -> None:
        if isinstance(error, AuthenticationFailed):
            log.warn("failed password attempt from {peer} (client {connectionId})",
                     peer=_address(server.peer(connectionId)), connectionId=connectionId)
        elif isinstance(error, AuthenticationTimeout):
            log.info("client {connectionId} ({who}) did not authenticate in time; dropped",
                     connectionId=connectionId, who=who(connectionId))
        else:
            log.warn("client {connectionId} ({who}): {error}", connectionId=connectionId,
                     who=who(connectionId), error=error)

    server.on("error", error)


def _address(address: Any) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
