"""
The tls-json-style client: C{Client(...)} with C{.on(event, handler)}.

For people coming from the Node.js package tls-json; Twisted applications may
prefer L{txtlsjson.protocol.TLSJSONClientFactory} directly.
"""

from __future__ import annotations

import random
from enum import Enum
from typing import Any, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IConnector, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from txtlsjson.answers import Responder
from txtlsjson.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    InvalidSetting,
    NotConnected,
    TLSJSONError,
)
from txtlsjson.events import EventEmitter, unexpectedEnd
from txtlsjson.observers import Observers
from txtlsjson.protocol import TLSJSONClientFactory, TLSJSONClientProtocol
from txtlsjson.settings import PORT, ClientSettings
from txtlsjson.tls import PathLike, clientTLSOptions
from txtlsjson.wire import JSONObject


class ClientState(Enum):
    """
    Where a L{Client} is in its connection's life.
    """

    #: Not connecting: before L{Client.connect}, after giving up, or after
    #: L{Client.disconnect}.
    IDLE = "idle"
    #: The first attempt is under way; its failure is reported.
    CONNECTING = "connecting"
    #: Waiting for, or making, another attempt after a failure or a lost
    #: connection; refused attempts are not reported until a connection is
    #: made again.
    RECONNECTING = "reconnecting"
    #: A connection is made (authenticated or not yet).
    CONNECTED = "connected"
    #: L{Client.disconnect} is closing the connection; nothing is reported.
    DISCONNECTING = "disconnecting"


class _ClientProtocol(TLSJSONClientProtocol):
    factory: "_ClientFactory"

    def authenticated(self) -> None:
        self.factory.owner._authenticated()

    def messageReceived(self, message: JSONObject) -> None:
        # emit("message", ...), inlined, as the server's protocol does.
        owner = self.factory.owner
        for handler in owner._handlers.get("message", ()):
            try:
                handler(message)
            except Exception:
                owner._handlerRaised("message", handler)

    def requestReceived(self, request: JSONObject) -> Any:
        res = Responder()
        # emit("request", ...), inlined, as messageReceived does.
        owner = self.factory.owner
        for handler in owner._handlers.get("request", ()):
            try:
                handler(request, res)
            except Exception:
                owner._handlerRaised("request", handler)
        return res.result()

    def errorReceived(self, error: TLSJSONError) -> None:
        self.factory.owner._error(error)

    def connectionClosed(self, reason: Failure) -> None:
        self.factory.owner._connectionLost(self, reason)


class _ClientFactory(TLSJSONClientFactory):
    protocol = _ClientProtocol

    def __init__(self, owner: "Client", password: str, settings: ClientSettings,
                 reactor: Optional[IReactorTime]) -> None:
        super().__init__(password, settings, reactor=reactor)
        self.owner = owner

    def startedConnecting(self, connector: IConnector) -> None:
        self.owner._attemptStarted()

    def connectionMade(self, protocol: TLSJSONClientProtocol) -> None:
        super().connectionMade(protocol)
        self.owner._resumed()

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        rotation = self.owner._rotation
        if rotation is not None:
            if rotation.tryNext():
                return
            connector = rotation
        self.owner._attemptFailed(reason)
        super().clientConnectionFailed(connector, reason)  # type: ignore[no-untyped-call]

    def clientConnectionLost(self, connector: IConnector, reason: Failure) -> None:
        rotation = self.owner._rotation
        super().clientConnectionLost(  # type: ignore[no-untyped-call]
            rotation if rotation is not None else connector, reason)


@implementer(IConnector)
class _Rotation:
    """
    The connector of a client with several server addresses: each attempt
    goes to the next address.  The first round starts at a random one, so
    that a fleet of clients spreads over the servers.
    """

    def __init__(self, client: "Client") -> None:
        self._client = client
        self._next = random.randrange(len(client.addresses))
        # Addresses the first round has still to try before it fails.
        self._untried = len(client.addresses)
        self.current: Optional[IConnector] = None

    @property
    def state(self) -> str:
        """
        The current attempt's state, as Twisted's connectors have one.
        """
        state: str = getattr(self.current, "state", "disconnected")
        return state

    def connect(self) -> None:
        """
        Connect to the next address.
        """
        host, port = self._client.addresses[self._next % len(self._client.addresses)]
        self._next += 1
        self._untried -= 1
        self.current = self._client._connectTo(host, port)

    def tryNext(self) -> bool:
        """
        An attempt failed: in the first round, while an address is left
        untried, try it at once.

        @return: whether an attempt was started.
        """
        if self._untried <= 0 or self._client.state is not ClientState.CONNECTING:
            return False
        self.connect()
        return True

    def authenticated(self) -> None:
        """
        A connection is up: from now on, failures wait for reconnecting.
        """
        self._untried = 0

    def stopConnecting(self) -> None:
        """
        Stop the attempt under way.
        """
        if self.current is not None:
            self.current.stopConnecting()

    def disconnect(self) -> None:
        """
        Close the connection, or stop the attempt.
        """
        if self.current is not None:
            self.current.disconnect()

    def getDestination(self) -> Any:
        """
        Where the current attempt goes.
        """
        return self.current.getDestination() if self.current is not None else None


class Client(EventEmitter):
    """
    A tls-json client, reconnecting at a constant interval if asked to.

    Events (register with L{on}):
      - C{authenticated()}: the server accepted the password (once per
        connection).
      - C{message(message)}: an application message from the server.
      - C{request(request, res)}: a request; answer with C{res.send(obj)},
        now or later, once (see L{txtlsjson.answers}).
      - C{close()}: the connection is gone.  While reconnecting, failed
        attempts emit no C{close} (and refused connections no C{error})
        until a connection is made again.
      - C{error(error)}: a L{TLSJSONError}.
      - C{reconnectAttempt()}: a reconnection attempt starts.

    A refused password (L{AuthenticationFailed}) stops reconnecting: it would
    not start working by itself.

    @ivar factory: the L{TLSJSONClientFactory} underneath.
    @ivar settings: the L{ClientSettings}.
    @ivar state: the L{ClientState}.
    """

    events = frozenset({"authenticated", "message", "request", "close", "error",
                        "reconnectAttempt"})

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        ca: Optional[Sequence[PathLike]] = None,
        clientCertificate: Optional[PathLike] = None,
        clientKey: Optional[PathLike] = None,
        tlsOptions: Any = None,
        servers: Sequence[Tuple[str, int]] = (),
        bindAddress: Optional[Tuple[str, int]] = None,
        settings: Optional[ClientSettings] = None,
        reactor: Optional[IReactorTime] = None,
        **overrides: Any,
    ) -> None:
        """
        @param host: the server's host name or address.  The server
            certificate must name it in its subjectAltName.
        @param port: the server's TCP port.
        @param password: the password.
        @param ca: PEM files of the CA certificates to trust (for a
            self-signed server, its certificate); the system's by default.
        @param clientCertificate: for mutual TLS, a PEM client certificate.
        @param clientKey: its private key (default: in C{clientCertificate}).
        @param tlsOptions: instead of C{ca} and the client certificate, any
            Twisted client connection creator (e.g. from
            L{txtlsjson.tls.clientTLSOptions} with another host name).
        @param servers: more server addresses, as C{(host, port)}: each
            attempt goes to the next address -- the first round starting
            at a random one, so that a fleet of clients spreads over the
            servers -- and C{connect} fails only once every address has.
            Reconnecting goes on to the next one.
        @param bindAddress: the local (host, port) to connect from, if not
            the system's choice.
        @param settings: the L{ClientSettings}; the defaults if L{None}.
        @param reactor: the reactor; the global one by default.
        @param overrides: settings by name, replacing those of C{settings}:
            C{Client(host, port, password, reconnectInterval=2)}.
        @raise TLSConfigurationError: if a file is missing or invalid.
        @raise InvalidSetting: for a bad host, port or password, an unknown
            setting or a value out of range.
        """
        super().__init__()
        self.addresses: List[Tuple[str, int]] = [(host, port), *servers]
        for serverHost, serverPort in self.addresses:
            if not isinstance(serverHost, str) or not serverHost:
                raise InvalidSetting(f"host must be a non-empty string, not {serverHost!r}")
            PORT.check("port", serverPort)
        self.settings = ClientSettings.fromOverrides(settings, overrides)
        # One set of TLS options per host name (each is verified by its own).
        self._tlsOptions: Dict[str, Any] = {}
        for serverHost, _ in self.addresses:
            if serverHost not in self._tlsOptions:
                self._tlsOptions[serverHost] = tlsOptions if tlsOptions is not None else \
                    clientTLSOptions(serverHost, ca, clientCertificate, clientKey)
        self.host = host
        self.port = port
        self._rotation: Optional[_Rotation] = None
        self._bindAddress = bindAddress
        self.factory = _ClientFactory(self, password, self.settings, reactor)
        self._reactor: Any = self.factory.clock
        self.state = ClientState.IDLE
        self._waiting: Observers[None] = Observers()

    # -- the connection's life -------------------------------------------

    def connect(self) -> "Deferred[None]":
        """
        Start connecting (and reconnecting, with a C{reconnectInterval}).

        @return: a Deferred that fires once the client is authenticated; or
            fails with L{ConnectionFailed} (no reconnecting), with
            L{AuthenticationFailed}, or with L{NotConnected} if
            L{disconnect} is called first.
        """
        if self.state is ClientState.IDLE:
            factory = self.factory
            factory.continueTrying = factory.reconnectInterval > 0
            factory.delay = factory.initialDelay
            self.state = ClientState.CONNECTING
            if len(self.addresses) == 1:
                self._connectTo(self.host, self.port)
            else:
                self._rotation = _Rotation(self)
                self._rotation.connect()
        return self.whenAuthenticated()

    def _connectTo(self, host: str, port: int) -> IConnector:
        connector: IConnector = self._reactor.connectSSL(
            host, port, self.factory, self._tlsOptions[host],
            timeout=self.settings.connectTimeout, bindAddress=self._bindAddress)
        return connector

    def whenAuthenticated(self) -> "Deferred[None]":
        """
        @return: a new Deferred that fires when the client is authenticated
            and its C{authenticated} handlers have run (at once if it is),
            failing as L{connect}'s does.  Cancelling it stops the wait, not
            the connecting (see L{disconnect}).
        """
        if self.isAuthenticated:
            return succeed(None)
        if self.state is ClientState.IDLE or self.state is ClientState.DISCONNECTING:
            return fail(NotConnected("not connecting; call connect()"))
        return self._waiting.whenFired()

    def disconnect(self) -> "Deferred[None]":
        """
        Stop reconnecting and close the connection.  Pending requests errback
        with C{ConnectionLost}.

        @return: a Deferred that fires once the connection is closed.
        """
        self.state = ClientState.DISCONNECTING
        self.factory.stopTrying()
        self._waiting.fail(NotConnected("client disconnected before it authenticated"))
        protocol = self.factory.client
        closed = protocol.close() if protocol is not None else succeed(None)

        def done(result: object) -> object:
            self.state = ClientState.IDLE
            return result

        return closed.addBoth(done)

    @property
    def isAuthenticated(self) -> bool:
        """
        Whether the client is connected and authenticated.
        """
        protocol = self.factory.client
        return protocol is not None and protocol.isAuthenticated

    # -- sending -------------------------------------------------------------

    def send(self, message: JSONObject) -> None:
        """
        Send a message.  If not authenticated, an C{error} event reports
        L{NotConnected}, as tls-json does.

        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; nothing was sent.
        """
        # sendOrReport's body and the protocol's send, inline, straight to
        # the session (the protocol is this module's, which adds nothing to
        # sending): each call would cost a message sent through this API a
        # few percent more (RESULTS.rst).
        protocol = self.factory.client
        try:
            session = None if protocol is None else protocol.session
            if session is None:
                raise NotConnected()
            session.send(message)
        except NotConnected as e:
            self.emit("error", e)

    def request(self, request: JSONObject) -> "Deferred[JSONObject]":
        """
        Send a request.

        @return: a Deferred that fires with the response or fails with
            L{NotConnected}, L{InvalidOutgoingMessage}, L{RequestTimeout} or
            L{ConnectionLost}.
        """
        # Straight to the session, as send.
        protocol = self.factory.client
        session = None if protocol is None else protocol.session
        if session is None:
            return fail(NotConnected())
        return session.request(request)

    # -- from the factory and protocol -----------------------------------

    def _attemptStarted(self) -> None:
        if self.state is ClientState.RECONNECTING:
            self.emit("reconnectAttempt")

    def _resumed(self) -> None:
        self.state = ClientState.CONNECTED

    def _attemptFailed(self, reason: Failure) -> None:
        if self.state is ClientState.DISCONNECTING:
            return
        error = ConnectionFailed(reason)
        reconnecting = self.state is ClientState.RECONNECTING
        if not (reconnecting and reason.check(ConnectionRefusedError)):
            self.emit("error", error)
        if not reconnecting:
            self.emit("close")
        self._afterLoss(error)

    def _authenticated(self) -> None:
        if self._rotation is not None:
            self._rotation.authenticated()
        # Handlers first: what awaits connect() finds them done, as a Node
        # user expects (there, connect resolves in the same emit).
        self.emit("authenticated")
        self._waiting.fire(None)

    def _error(self, error: TLSJSONError) -> None:
        self.emit("error", error)
        if isinstance(error, AuthenticationFailed):
            self._waiting.fail(error)

    def _connectionLost(self, protocol: TLSJSONClientProtocol, reason: Failure) -> None:
        disconnecting = self.state is ClientState.DISCONNECTING
        error = unexpectedEnd(reason, protocol.closeReason)
        if error is not None and not disconnecting:
            self.emit("error", error)
        self.emit("close")
        if not disconnecting:
            self._afterLoss(error or NotConnected("connection closed before authentication"))

    def _afterLoss(self, error: Exception) -> None:
        """
        An attempt failed or a connection ended: reconnect, or give up.
        """
        if self.factory.continueTrying:
            self.state = ClientState.RECONNECTING
        else:
            self.state = ClientState.IDLE
            self._waiting.fail(error)
