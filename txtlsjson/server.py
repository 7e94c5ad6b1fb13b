"""
The tls-json-style server: C{Server(...)} with C{.on(event, handler)}.

For people coming from the Node.js package tls-json; Twisted applications may
prefer L{txtlsjson.protocol.TLSJSONServerFactory} directly.
"""

from __future__ import annotations

import socket
from time import perf_counter
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IAddress, IListeningPort, IReactorTime, IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from txtlsjson.answers import Responder, answerTimedRequest
from txtlsjson.credentials import Authenticator, Identity
from txtlsjson.errors import (
    AuthenticationFailed,
    ClusterUnavailable,
    LineTooLong,
    NotConnected,
    SlowConsumer,
    TLSJSONError,
)
from txtlsjson.events import EventEmitter, sendOrReport, unexpectedEnd
from txtlsjson.manyclients import ManyClients
from txtlsjson.metrics import ServerMetrics, TimedPendingRequests, meterWire
from txtlsjson.pacing import ClusterPacer
from txtlsjson.protocol import TLSJSONServerFactory, TLSJSONServerProtocol, peerOf
from txtlsjson.rooms import Rooms
from txtlsjson.session import Session
from txtlsjson.settings import ServerSettings
from txtlsjson.throttle import AuthenticationThrottle
from txtlsjson.tls import PathLike, serverTLSOptions
from txtlsjson.wire import JSONObject

if TYPE_CHECKING:
    from txtlsjson.cluster import Cluster


class _ServerProtocol(TLSJSONServerProtocol):
    factory: "_ServerFactory"
    connectionId: int

    def connectionMade(self) -> None:
        self.connectionId = self.factory.server._register(self)
        super().connectionMade()

    def authenticated(self) -> None:
        self.factory.server.emit("authenticated", self.connectionId, peerOf(self))

    def messageReceived(self, message: JSONObject) -> None:
        # emit("message", ...), inlined: on the path of every message
        # received, its call and argument tuple cost a tenth of the path
        # (benchmarks/RESULTS.rst).
        server = self.factory.server
        for handler in server._handlers.get("message", ()):
            try:
                handler(self.connectionId, message)
            except Exception:
                server._handlerRaised("message", handler)

    def requestReceived(self, request: JSONObject) -> Any:
        res = Responder()
        # emit("request", ...), inlined, as messageReceived does.
        server = self.factory.server
        for handler in server._handlers.get("request", ()):
            try:
                handler(self.connectionId, request, res)
            except Exception:
                server._handlerRaised("request", handler)
        return res.result()

    def errorReceived(self, error: TLSJSONError) -> None:
        self.factory.server.emit("error", self.connectionId, error)

    def keepAliveTimedOut(self) -> None:
        super().keepAliveTimedOut()
        self.factory.server.emit("timeout", self.connectionId)

    def connectionClosed(self, reason: Failure) -> None:
        server = self.factory.server
        error = unexpectedEnd(reason, self.closeReason)
        if error is not None:
            server.emit("error", self.connectionId, error)
        try:
            # Still registered, so that close handlers can ask for the peer.
            server.emit("close", self.connectionId)
        finally:
            server._unregister(self)


class _MeteredServerProtocol(_ServerProtocol):
    """
    The protocol of a server that counts (see L{txtlsjson.metrics}): it
    counts in the hooks every message passes anyway, so that a message
    costs no call more than without metrics.
    """

    _metrics: ServerMetrics
    #: During a read, when it began (C{perf_counter}); and how many requests
    #: it answered at once (answerTimedRequest counts them).
    _readAt: Optional[float] = None
    _answeredInRead = 0

    def dataReceived(self, data: bytes) -> None:
        self._readAt = readAt = perf_counter()
        try:
            super().dataReceived(data)
        finally:
            self._readAt = None
            answered = self._answeredInRead
            if answered:
                # Their answers went out together at the read's end (the
                # batch): one duration, as many times as they were.
                self._answeredInRead = 0
                self._metrics.answerDurations.observe(perf_counter() - readAt, answered)

    def connectionMade(self) -> None:
        metrics = self._metrics = cast(ServerMetrics, self.factory.metrics)
        metrics.connectionsTotal += 1
        metrics.connectionsOpen += 1
        # The socket's writes are counted by wrapping its write: beneath
        # TLS, after the connection has set up how it writes to the socket
        # (outgoing.sendAtOnce); without TLS, before it takes the
        # transport's write for its own.
        underTLS = isinstance(self.transport, TLSMemoryBIOProtocol)
        if not underTLS:
            meterWire(self, metrics)
        super().connectionMade()
        if underTLS:
            meterWire(self, metrics)

    def _buildSession(self) -> Session:
        session = super()._buildSession()
        session.requests = TimedPendingRequests(
            self.factory.clock, self.factory.settings.requestTimeout, self._metrics)
        return session

    def sessionAuthenticated(self) -> None:
        self._metrics.authentications += 1
        super().sessionAuthenticated()

    def messageReceived(self, message: JSONObject) -> None:
        self._metrics.messagesReceived += 1
        _ServerProtocol.messageReceived(self, message)

    #: Counts and times each request on its way to its answer.
    sessionRequest = answerTimedRequest

    def request(self, request: JSONObject) -> "Deferred[JSONObject]":
        session = self.session
        if session is None:
            return fail(NotConnected())
        sent = session.request(request)
        if not sent.called:  # issued, not refused at once
            self._metrics.requestsSent += 1
        return sent

    def send(self, message: JSONObject) -> None:
        session = self.session
        if session is None:
            raise NotConnected()
        session.send(message)
        self._metrics.messagesSent += 1

    def errorReceived(self, error: TLSJSONError) -> None:
        metrics = self._metrics
        if isinstance(error, AuthenticationFailed):
            metrics.authenticationFailures += 1
        elif isinstance(error, SlowConsumer):
            metrics.slowConsumerDrops += 1
        elif isinstance(error, LineTooLong):
            metrics.lineTooLong += 1
        super().errorReceived(error)

    def keepAliveTimedOut(self) -> None:
        self._metrics.keepAliveTimeouts += 1
        super().keepAliveTimedOut()

    def connectionClosed(self, reason: Failure) -> None:
        self._metrics.connectionsOpen -= 1
        super().connectionClosed(reason)


class _ServerFactory(TLSJSONServerFactory):
    protocol = _ServerProtocol
    metrics: Optional[ServerMetrics] = None

    def __init__(self, server: "Server", password: Optional[str], settings: ServerSettings,
                 authenticator: Optional[Authenticator], reactor: Optional[IReactorTime]) -> None:
        super().__init__(password, settings, authenticator=authenticator, reactor=reactor)
        self.server = server


#: Listen backlog of L{Server.listen} and C{twistd tlsjson --port}.
DEFAULT_BACKLOG = 1024


class Server(EventEmitter, ManyClients):
    """
    A tls-json server.

    Events (register with L{on}):
      - C{authenticated(id, peer)}: client C{id} sent the right password;
        C{peer} is its address, and L{identity} says who it is.
      - C{message(id, message)}: an application message from client C{id}.
      - C{request(id, request, res)}: a request; answer with C{res.send(obj)},
        now or later, once (see L{txtlsjson.answers}).
      - C{close(id)}: the connection C{id} is gone -- exactly once per
        connection, whatever the cause, authenticated or not.
      - C{error(id, error)}: a L{TLSJSONError} about connection C{id}.
      - C{timeout(id)}: client C{id} did not answer a keepalive ping; it is
        dropped (C{close} follows).

    @ivar factory: the L{TLSJSONServerFactory} underneath.
    @ivar settings: the L{ServerSettings}.
    @ivar metrics: the L{ServerMetrics} it counts into, or L{None}.
    """

    events = frozenset({"authenticated", "message", "request", "close", "error", "timeout"})

    def __init__(
        self,
        password: Optional[str] = None,
        *,
        authenticator: Optional[Authenticator] = None,
        certificate: Optional[PathLike] = None,
        privateKey: Optional[PathLike] = None,
        chain: Sequence[PathLike] = (),
        clientCA: Optional[Sequence[PathLike]] = None,
        tlsOptions: Any = None,
        settings: Optional[ServerSettings] = None,
        cluster: "Optional[Cluster]" = None,
        metrics: Optional[ServerMetrics] = None,
        reactor: Optional[IReactorTime] = None,
        **overrides: Any,
    ) -> None:
        """
        @param password: the password clients must send (one for all); or
            give C{authenticator}.
        @param authenticator: decides who a client is from its password (and
            certificate), instead of one shared password: a
            L{CredentialsFile<txtlsjson.credentials.CredentialsFile>} for
            per-client secrets, or any callable described in
            L{txtlsjson.credentials}.
        @param certificate: PEM file of the server certificate (and chain).
        @param privateKey: PEM file of its unencrypted private key.
        @param chain: further PEM files of intermediate certificates.
        @param clientCA: for mutual TLS, PEM files of the CAs that client
            certificates must chain to.
        @param tlsOptions: instead of the files, any Twisted server context
            factory (e.g. L{twisted.internet.ssl.CertificateOptions}).  With
            neither, only L{listenOn} with an endpoint that does TLS itself
            can be used.
        @param settings: the L{ServerSettings}; the defaults if L{None}.
        @param cluster: a L{Cluster<txtlsjson.cluster.Cluster>} to join: ids
            become unique across its nodes, and send, request, rooms and
            broadcast reach clients on any node.  The server joins it when
            it starts listening, in the background, and leaves it on
            L{close}.
        @param metrics: a L{ServerMetrics} to count into (see
            L{txtlsjson.metrics}); without one the server counts nothing,
            at no cost.
        @param reactor: the reactor; the global one by default.
        @param overrides: settings by name, replacing those of C{settings}:
            C{Server(password, ..., requestTimeout=5)}.
        @raise TLSConfigurationError: if a file is missing or invalid.
        @raise InvalidSetting: for a missing password (or both a password and
            an authenticator), an unknown setting or a value out of range.
        @raise ValueError: for a certificate without its key.
        """
        super().__init__()
        if tlsOptions is None and (certificate is not None or privateKey is not None):
            if certificate is None or privateKey is None:
                raise ValueError("give both certificate and privateKey (PEM files)")
            tlsOptions = serverTLSOptions(certificate, privateKey, chain, clientCA)
        self._tlsOptions = tlsOptions
        self.settings = ServerSettings.fromOverrides(settings, overrides)
        self.factory = _ServerFactory(self, password, self.settings, authenticator, reactor)
        self.metrics = metrics
        if metrics is not None:
            self.factory.metrics = metrics
            self.factory.protocol = _MeteredServerProtocol
        self._reactor: Any = self.factory.clock
        self._connections: Dict[int, _ServerProtocol] = {}
        self._rooms: Rooms[int] = Rooms()
        self.cluster = cluster
        if cluster is not None:
            cluster.attach(self)
            # One node paces each address's password attempts for all.
            cluster.pacer = ClusterPacer(cluster, cast(AuthenticationThrottle,
                                                       self.factory.throttle))
            self.factory.throttle = cluster.pacer
        self._nextId = 0
        self._listeningPorts: List[IListeningPort] = []

    def _register(self, protocol: _ServerProtocol) -> int:
        if self.cluster is not None:
            connectionId = self.cluster.newConnectionId()
        else:
            connectionId = self._nextId
            self._nextId += 1
        self._connections[connectionId] = protocol
        return connectionId

    def _unregister(self, protocol: _ServerProtocol) -> None:
        self._connections.pop(protocol.connectionId, None)
        self._rooms.forget(protocol.connectionId)

    def listen(self, port: int = 0, interface: str = "",
               backlog: int = DEFAULT_BACKLOG) -> "Deferred[IListeningPort]":
        """
        Start accepting TLS connections on a TCP port.

        @param port: the TCP port; C{0} picks a free one (see L{port}).
        @param interface: the address to bind; all by default.
        @param backlog: how many connections the kernel may hold for
            accepting (capped by C{net.core.somaxconn}); many clients
            reconnecting at once after a restart need more than Twisted's
            default of 50.
        @return: a Deferred that fires with the listening port, or fails
            (e.g. C{CannotListenError} for a port in use).
        """
        if self._tlsOptions is None:
            return fail(TLSJSONError(
                "no certificate: give certificate and privateKey (or tlsOptions) "
                "to Server(), or listen through an ssl: endpoint with listenOn()"))
        endpoint = SSL4ServerEndpoint(self._reactor, port, self._tlsOptions, backlog=backlog,
                                      interface=interface)
        return self.listenOn(endpoint)

    def listenOn(self, endpoint: IStreamServerEndpoint) -> "Deferred[IListeningPort]":
        """
        Start accepting connections on any Twisted server endpoint, such as
        one from C{serverFromString(reactor, "ssl:8888:privateKey=...")}.
        The endpoint must provide TLS itself (unless TLS is terminated in
        front of this server).

        @return: a Deferred that fires with the listening port.
        """
        def listening(port: IListeningPort) -> IListeningPort:
            self._listening(port)
            return port

        return endpoint.listen(self.factory).addCallback(listening)

    def _listening(self, port: IListeningPort) -> None:
        self._listeningPorts.append(port)
        if self.cluster is not None:
            self.cluster.start()

    def listenOnSocket(self, fileno: int, addressFamily: int = socket.AF_INET
                       ) -> "Deferred[IListeningPort]":
        """
        Start accepting TLS connections on a listening socket made
        elsewhere -- inherited from a parent process that bound it, as
        C{twistd tlsjson --workers} does (C{IReactorSocket.adoptStreamPort}).
        The socket is duplicated; the caller may close its descriptor.

        @param fileno: the listening socket's file descriptor.
        @param addressFamily: C{AF_INET} or C{AF_INET6}.
        @return: a Deferred that fires with the listening port.
        """
        if self._tlsOptions is None:
            return fail(TLSJSONError(
                "no certificate: give certificate and privateKey (or tlsOptions) to Server()"))
        factory = TLSMemoryBIOFactory(self._tlsOptions, False, self.factory)
        factory.noisy = False
        try:
            port: IListeningPort = self._reactor.adoptStreamPort(fileno, addressFamily, factory)
        except Exception:
            return fail()
        self._listening(port)
        return succeed(port)

    @property
    def port(self) -> Optional[int]:
        """
        The TCP port of the first listening port, or L{None} when not
        listening.
        """
        if not self._listeningPorts:
            return None
        host = self._listeningPorts[0].getHost()
        return host.port if isinstance(host, (IPv4Address, IPv6Address)) else None

    @property
    def listeningPorts(self) -> List[IListeningPort]:
        """
        Every port this server listens on.
        """
        return list(self._listeningPorts)

    def close(self) -> "Deferred[None]":
        """
        Stop listening and close every connection; their pending requests
        errback with C{ConnectionLost}.

        @return: a Deferred that fires when the ports and all connections
            are closed.
        """
        waiting: List[Deferred[Any]] = []
        ports, self._listeningPorts = self._listeningPorts, []
        for port in ports:
            stopped = port.stopListening()
            if isinstance(stopped, Deferred):
                waiting.append(stopped)
        waiting.append(self.factory.closeConnections())
        if self.cluster is not None:
            waiting.append(self.cluster.stop())
        return gatherResults(waiting).addCallback(lambda _: None)

    @property
    def clients(self) -> List[int]:
        """
        The ids of the authenticated connections.
        """
        return [i for i, p in self._connections.items() if p.isAuthenticated]

    def identity(self, connectionId: int) -> Optional[Identity]:
        """
        Who client C{connectionId} is, once authenticated: its credential's
        name, or its certificate's subject with mutual TLS (see
        L{Identity}); L{None} if it is not (yet) authenticated here.
        """
        protocol = self._connections.get(connectionId)
        return None if protocol is None else protocol.identity

    def reloadCredentials(self) -> List[int]:
        """
        Read the credentials file again, keeping connected clients, and
        close the connections of clients whose credential was removed (each
        reported as an C{error} event, L{CredentialRevoked}, then C{close}).
        C{twistd tlsjson --credentials} calls this on C{SIGHUP}.

        @return: the ids of the connections being closed.
        @raise CredentialsError: if the server has no credentials file, or
            it cannot be read now (the credentials already loaded then stay
            in force).
        """
        return [cast(_ServerProtocol, protocol).connectionId
                for protocol in self.factory.reloadCredentials()]

    def peer(self, connectionId: int) -> Optional[IAddress]:
        """
        The address of connection C{connectionId}, or L{None} if unknown.
        """
        protocol = self._connections.get(connectionId)
        if protocol is None or protocol.transport is None:
            return None
        return protocol.transport.getPeer()

    def send(self, connectionId: int, message: JSONObject) -> None:
        """
        Send a message to client C{connectionId} -- in a cluster, on
        whichever node holds it.  If it is not connected and authenticated,
        an C{error} event reports L{NotConnected} (for another node's
        client, when that node answers; L{ClusterUnavailable} while NATS
        is unreachable).

        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; nothing was sent.
        """
        protocol = self._connections.get(connectionId)
        cluster = self.cluster
        if protocol is None and cluster is not None and not cluster.isLocal(connectionId):
            try:
                cluster.send(connectionId, message)
            except (NotConnected, ClusterUnavailable) as e:
                self.emit("error", connectionId, e)
            return
        sendOrReport(self, protocol, message, connectionId)

    def request(self, connectionId: int, request: JSONObject) -> "Deferred[JSONObject]":
        """
        Send a request to client C{connectionId} -- in a cluster, on
        whichever node holds it.

        @return: a Deferred that fires with the response, or fails with
            L{NotConnected}, L{InvalidOutgoingMessage}, L{RequestTimeout},
            L{ConnectionLost} or (NATS unreachable)
            L{ClusterUnavailable<txtlsjson.errors.ClusterUnavailable>}.
        """
        cluster = self.cluster
        if (connectionId not in self._connections and cluster is not None
                and not cluster.isLocal(connectionId)):
            return cluster.request(connectionId, request, self.settings.requestTimeout)
        return self._requestLocal(connectionId, request)

    def _sendLocal(self, connectionId: int, message: JSONObject) -> None:
        """
        Send to a client of this node, for the cluster.

        @raise NotConnected: if it is not connected and authenticated.
        """
        protocol = self._connections.get(connectionId)
        if protocol is None:
            raise NotConnected(f"connection {connectionId} is not connected")
        protocol.send(message)

    def _writeLocal(self, connectionId: int, line: bytes) -> bool:
        """
        Write an encoded message line to a client of this node, for the
        cluster (another node encoded and checked it).

        @return: whether the client is connected and authenticated.
        """
        protocol = self._connections.get(connectionId)
        if protocol is None or not protocol.isAuthenticated:
            return False
        protocol.writeLine(line)
        if self.metrics is not None:
            self.metrics.messagesSent += 1
        return True

    def _requestLocal(self, connectionId: int, request: JSONObject) -> "Deferred[JSONObject]":
        protocol = self._connections.get(connectionId)
        if protocol is None:
            return fail(NotConnected())
        # The session fails the request if it is not authenticated (yet).
        return protocol.request(request)
