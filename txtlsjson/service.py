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

from typing import Any, List, Optional, Sequence, Tuple

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.errors import AuthenticationFailed, AuthenticationTimeout, ListenFailed
from txtlsjson.server import Server


class TLSJSONService(Service):
    """
    Listens with a L{Server} on endpoints when started; stops listening,
    closes every client and fails their pending requests when stopped.

    @ivar server: the L{Server}.
    """

    log = Logger()

    def __init__(
        self,
        server: Server,
        endpoints: Sequence[Tuple[str, IStreamServerEndpoint]],
        exitOnListenFailure: bool = False,
    ) -> None:
        """
        @param server: the server to run.
        @param endpoints: pairs of a description (for messages) and an
            endpoint to listen on.
        @param exitOnListenFailure: on a failure to listen, raise
            C{SystemExit} with a one-line message (for C{twistd -n}) rather
            than L{ListenFailed}.
        """
        self.server = server
        self._endpoints = list(endpoints)
        self._exitOnListenFailure = exitOnListenFailure
        self._listening = False

    def privilegedStartService(self) -> None:
        """
        Listen now, before twistd sheds privileges (for ports below 1024).
        """
        super().privilegedStartService()  # type: ignore[no-untyped-call]
        self._listen()

    def startService(self) -> None:
        """
        Listen, if L{privilegedStartService} did not already.
        """
        super().startService()  # type: ignore[no-untyped-call]
        self._listen()

    def _listen(self) -> None:
        if self._listening:
            return
        self._listening = True
        for description, endpoint in self._endpoints:
            outcome: List[Any] = []
            d = self.server.listenOn(endpoint)
            d.addBoth(outcome.append)
            if not outcome:
                # An endpoint that listens later: report its failure in the
                # log, since nobody is waiting for it.
                d.addErrback(self._lateFailure, description)
                continue
            if isinstance(outcome[0], Failure):
                message = f"cannot listen on {description}: {outcome[0].getErrorMessage()}"
                if self._exitOnListenFailure:
                    raise SystemExit(f"twistd tlsjson: {message}")
                raise ListenFailed(message)
            self.log.info("tls-json server listening on {address}",
                          address=outcome[0].getHost())

    def _lateFailure(self, failure: Failure, description: str) -> None:
        self.log.failure("cannot listen on {description}", failure, description=description)

    def stopService(self) -> "Optional[Deferred[None]]":
        """
        Stop listening and close every connection.

        @return: a Deferred that fires once all of them are closed.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._listening = False
        return self.server.close()


def logServerEvents(server: Server) -> None:
    """
    Log what an operator wants to see of a server through
    C{twisted.logger}: each client authenticated, closed or timed out with
    its id and address, failed password attempts with the address (never
    the password), and protocol errors.
    """
    log = Logger(namespace="txtlsjson.server")

    server.on("authenticated", lambda connectionId, peer: log.info(
        "client {connectionId} authenticated from {peer}", connectionId=connectionId,
        peer=_address(peer)))
    server.on("close", lambda connectionId: log.info(
        "client {connectionId} ({peer}) closed", connectionId=connectionId,
        peer=_address(server.peer(connectionId))))
    server.on("timeout", lambda connectionId: log.warn(
        "client {connectionId} ({peer}) missed a keepalive ping; dropped",
        connectionId=connectionId, peer=_address(server.peer(connectionId))))

    def error(connectionId: int, error: Exception) -> None:
        peer = _address(server.peer(connectionId))
        if isinstance(error, AuthenticationFailed):
            log.warn("failed password attempt from {peer} (client {connectionId})",
                     peer=peer, connectionId=connectionId)
        elif isinstance(error, AuthenticationTimeout):
            log.info("client {connectionId} ({peer}) did not authenticate in time; dropped",
                     connectionId=connectionId, peer=peer)
        else:
            log.warn("client {connectionId} ({peer}): {error}", connectionId=connectionId,
                     peer=peer, error=error)

    server.on("error", error)


def _address(address: Any) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
