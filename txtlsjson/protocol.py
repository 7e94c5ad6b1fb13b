"""
The Twisted-native layer: C{LineReceiver} protocols and their factories.

The protocols are glue: C{dataReceived} frames bytes into lines
(L{LineBuffer}), C{lineReceived} hands each to a L{Session} (which holds
every protocol rule), the session writes through L{OutgoingLines} (pacing
and backpressure), and requests are answered by L{txtlsjson.answers}.
Subclass them and override the hooks (L{TLSJSONProtocol.authenticated},
L{TLSJSONProtocol.messageReceived}, L{TLSJSONProtocol.requestReceived},
L{TLSJSONProtocol.errorReceived}, L{TLSJSONProtocol.connectionClosed}) to
write an application.

TLS is not done here: listen with C{reactor.listenSSL} or an C{ssl:} endpoint
and connect with C{reactor.connectSSL}, giving them the options from
L{txtlsjson.tls}.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Set, cast

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, ITransport
from twisted.internet.protocol import ReconnectingClientFactory, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from txtlsjson.answers import answerRequest
from txtlsjson.errors import (
    AuthenticationFailed,
    InvalidOutgoingMessage,
    LineTooLong,
    NotConnected,
    TLSJSONError,
)
from txtlsjson.framing import LineBuffer
from txtlsjson.observers import Observers
from txtlsjson.outgoing import OutgoingLines
from txtlsjson.pieced import OutgoingLine, PiecedLine
from txtlsjson.session import _AUTHENTICATED, ClientSession, ServerSession, Session
from txtlsjson.settings import (
    UNAUTHENTICATED_MAX_LINE_LENGTH,
    ClientSettings,
    ConnectionSettings,
    ServerSettings,
    checkPassword,
)
from txtlsjson.throttle import AuthenticationThrottle, addressKey
from txtlsjson.wire import DELIMITER, IncomingLine, JSONObject

#: Seconds a connection closed with L{TLSJSONProtocol.close} may take to
#: send what waits before it is aborted (a dead peer never acknowledges).
FLUSH_TIMEOUT = 5.0


def _defaultReactor(reactor: Optional[IReactorTime]) -> Any:
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        return globalReactor
    return reactor


class TLSJSONProtocol(LineReceiver):
    """
    One tls-json connection, either side.  Use L{TLSJSONServerProtocol} or
    L{TLSJSONClientProtocol}.

    As a C{LineReceiver}: each received line goes to L{lineReceived} (a
    subclass may override it and call up); C{MAX_LENGTH} is the longest
    line accepted now, in bytes -- 64 KiB until the password step is done,
    then the C{maxLineLength} setting -- and L{lineLengthExceeded} is
    called past it; L{sendLine} writes a raw line.  The buffering is not C{LineReceiver}'s
    (which re-searches its whole buffer on every chunk): its cost is linear
    in the bytes received.  Raw mode is not supported.

    @ivar session: the connection's L{Session}; L{None} until connected.
    @ivar writeLine: writes one encoded message, its newline included (the
        session's transport): straight to the transport, or, once connected
        with C{maxBufferedBytes} set, through the connection's
        L{OutgoingLines}, which paces long lines and drops a peer that
        stopped reading.
    @ivar closeReason: why this side dropped the connection, if it did (a
        L{TLSJSONError}); L{None} if the peer or the network closed it.
    """

    delimiter = DELIMITER
    log = Logger()
    factory: "_Factory"
    session: Optional[Session] = None
    closeReason: Optional[TLSJSONError] = None
    _abortTimer: Optional[IDelayedCall] = None
    _outgoing: Optional[OutgoingLines] = None

    def __init__(self) -> None:
        self._authenticatedObservers: Observers[None] = Observers()
        self._closedObservers: Observers[None] = Observers()
        self._closed = False
        self._lines = LineBuffer()
        # Where dataReceived hands each line: lineReceived, or the session
        # itself when lineReceived is not overridden (one call less a line).
        self._deliver: Callable[[IncomingLine], None] = self.lineReceived
        self.writeLine: Callable[[OutgoingLine], None] = self._writeToTransport

    # -- LineReceiver's contract -------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        """
        Frame received bytes into lines and hand each to L{lineReceived}.
        """
        session = self.session
        if session is None:
            return
        session.heard()
        deliver = self._deliver
        try:
            lines = self._lines.feed(data, self.MAX_LENGTH)
        except LineTooLong as e:
            for line in e.lines:
                deliver(line)
            self.lineLengthExceeded(e.line)
            return
        outgoing = self._outgoing
        if len(lines) > 1 and outgoing is not None:
            # Answers to a batch of requests go out as one write.
            outgoing.batch(deliver, lines)
        else:
            for line in lines:
                deliver(line)

    def lineReceived(self, line: IncomingLine) -> None:
        """
        Hand one line (bytes, or a bytearray for one that arrived over
        several chunks) to the session.  Overrides must call this.
        """
        if self.session is not None:
            self.session.lineReceived(line)

    def lineLengthExceeded(self, line: IncomingLine) -> None:
        """
        A line longer than C{MAX_LENGTH} arrived (C{line} is as much of it
        as had): report L{LineTooLong} and drop the connection, since the
        stream cannot be resynchronised.
        """
        if self.session is not None:
            self.session.lineTooLong(LineTooLong(
                f"line exceeds the limit of {self.MAX_LENGTH} bytes"))

    def sendLine(self, line: bytes) -> None:
        """
        Write one raw line, the delimiter added, through the connection's
        pacing.  The session's rules do not see it: this is for lines
        encoded by the caller.

        @raise InvalidOutgoingMessage: if C{line} holds the delimiter.
        """
        if line.find(DELIMITER) != -1:
            raise InvalidOutgoingMessage("a line must not contain the delimiter")
        self.writeLine(line + DELIMITER)

    def clearLineBuffer(self) -> bytes:
        """
        Forget the start of a line not yet complete.

        @return: its bytes.
        """
        return self._lines.clear()

    # -- the session's transport ---------------------------------------

    def _writeToTransport(self, line: OutgoingLine) -> None:
        transport: Any = self.transport
        if isinstance(line, PiecedLine):
            transport.writeSequence(line.pieces())
        else:
            transport.write(line)

    def pauseReading(self) -> None:
        """
        Stop reading from the peer (the session is waiting on something).
        """
        self._transport.pauseProducing()

    def resumeReading(self) -> None:
        """
        Read from the peer again.
        """
        self._transport.resumeProducing()

    def dropConnection(self, reason: TLSJSONError, flush: bool) -> None:
        """
        Close the connection on the session's behalf.
        """
        if self.closeReason is None:
            self.closeReason = reason
        if flush:
            self.close()
        else:
            self._transport.abortConnection()

    @property
    def _transport(self) -> Any:
        return self.transport

    # -- Twisted's side --------------------------------------------------

    def _buildSession(self) -> Session:
        raise NotImplementedError()

    def connectionMade(self) -> None:
        """
        Disable Nagle's algorithm (small requests would otherwise wait for
        the previous segment's ACK) and start the session.
        """
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except OSError:
                pass
        session = self.session = self._buildSession()
        self.MAX_LENGTH = min(UNAUTHENTICATED_MAX_LINE_LENGTH, session.maxLineLength)
        if type(self).lineReceived is TLSJSONProtocol.lineReceived:
            self._deliver = session.lineReceived
        limit = self.factory.settings.maxBufferedBytes
        if limit > 0 and self.transport is not None:
            self._outgoing = OutgoingLines.register(self.transport, limit, session.peerNotReading)
            if self._outgoing is not None:
                # The session's lines go straight to it: one call less each.
                self.writeLine = self._outgoing.writeLine
        session.connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Stop the session's timers, errback its pending requests with
        L{ConnectionLost<txtlsjson.errors.ConnectionLost>}, call
        L{connectionClosed}, and then fire the L{whenClosed} observers.
        Overrides must call this; L{connectionClosed} is the simpler hook.
        """
        if self._closed:
            return
        self._closed = True
        if self._abortTimer is not None and self._abortTimer.active():
            self._abortTimer.cancel()
        self._abortTimer = None
        if self._outgoing is not None:
            self._outgoing.unregister()
            self._outgoing = None
        if self.session is not None:
            self.session.connectionLost()
        self._authenticatedObservers.fail(NotConnected("connection closed before authentication"))
        self.connectionClosed(reason)
        self._closedObservers.fire(None)

    # -- the session's observer ------------------------------------------

    def sessionAuthenticated(self) -> None:
        """
        The session authenticated: lift the line limit to the configured one,
        fire the L{whenAuthenticated} observers and call L{authenticated}.
        """
        assert self.session is not None
        self.MAX_LENGTH = self.session.maxLineLength
        self._authenticatedObservers.fire(None)
        self.authenticated()

    def sessionRequest(self, requestId: int, request: JSONObject) -> None:
        """
        The session received request C{requestId}: answer it by the one
        path of L{txtlsjson.answers} (which calls L{requestReceived}).
        Not a hook: override L{requestReceived}.
        """
        answerRequest(self, requestId, request)

    # -- the application's API -----------------------------------------

    @property
    def isAuthenticated(self) -> bool:
        """
        Whether the connection is up and authenticated.
        """
        session = self.session
        return session is not None and session.state is _AUTHENTICATED

    def send(self, message: JSONObject) -> None:
        """
        Send an application message (a dict).  The caller's dict is not
        modified.

        @raise NotConnected: if not authenticated (yet, or any more).
        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; L{ReservedKeyError<txtlsjson.errors.ReservedKeyError>} if it
            holds a reserved key.  Nothing was sent.
        """
        session = self.session
        if session is None:
            raise NotConnected()
        session.send(message)

    def request(self, request: JSONObject) -> "Deferred[JSONObject]":
        """
        Send a request (a dict) and return a Deferred that fires with the
        response (its C{responseId} removed).

        The Deferred fails with L{NotConnected}, L{InvalidOutgoingMessage},
        L{RequestTimeout<txtlsjson.errors.RequestTimeout>} or
        L{ConnectionLost<txtlsjson.errors.ConnectionLost>}; cancelling it
        forgets the request.  This method never raises.
        """
        session = self.session
        if session is None:
            return fail(NotConnected())
        return session.request(request)

    def whenAuthenticated(self) -> "Deferred[None]":
        """
        @return: a new Deferred that fires when the connection authenticates
            (at once if it has), or fails with L{NotConnected} if it closes
            first.
        """
        if self.isAuthenticated:
            return succeed(None)
        if self._closed:
            return fail(NotConnected())
        return self._authenticatedObservers.whenFired()

    def close(self) -> "Deferred[None]":
        """
        Close the connection cleanly, sending what waits first, and abort it
        if that has not completed within L{FLUSH_TIMEOUT} seconds.

        @return: a Deferred that fires once the connection is closed.
        """
        closed = self.whenClosed()
        if not self._closed and self._abortTimer is None:
            transport = self._transport
            # Scheduled first: loseConnection may call connectionLost at once,
            # which must find the timer to cancel it.
            self._abortTimer = self.factory.clock.callLater(
                FLUSH_TIMEOUT, transport.abortConnection)
            if self._outgoing is not None:
                # What waits for the transport to drain goes now: the
                # transport writes out what it has before it closes.
                self._outgoing.flush()
            transport.loseConnection()
        return closed

    def whenClosed(self) -> "Deferred[None]":
        """
        @return: a new Deferred that fires once the connection is closed.
        """
        if self._closed:
            return succeed(None)
        return self._closedObservers.whenFired()

    # -- hooks -------------------------------------------------------------

    def authenticated(self) -> None:
        """
        Hook: the password step succeeded; L{send} and L{request} work now.
        """

    def messageReceived(self, message: JSONObject) -> None:
        """
        Hook: an application message arrived.
        """

    def requestReceived(self, request: JSONObject) -> Any:
        """
        Hook: a request arrived (its C{requestId} removed).

        @return: the response: a dict, or a Deferred or coroutine resulting
            in one.  L{None} sends no response (the requester will time
            out).  If the hook raises or its result fails, the failure is
            logged and no response is sent; a response that cannot be sent
            goes to L{errorReceived} (see L{txtlsjson.answers}).
        """
        return None

    def connectionClosed(self, reason: Failure) -> None:
        """
        Hook: the connection is gone (called once); pending requests have
        been failed already, L{whenClosed} observers fire after this.

        @param reason: why, as Twisted reports it; L{closeReason} says if
            this side dropped the connection, and why.
        """

    def errorReceived(self, error: TLSJSONError) -> None:
        """
        Hook: something went wrong on this connection -- bad input from the
        peer (the line was dropped), a refused password, a timeout, an
        answer that could not be sent.  By default it is logged.
        """
        self.log.warn("{peer}: {error}", peer=peerOf(self), error=error)


def peerOf(protocol: TLSJSONProtocol) -> "IAddress | str":
    """
    The peer's address of C{protocol}'s connection, or a placeholder when
    the transport cannot tell.
    """
    transport: Optional[ITransport] = protocol.transport
    try:
        assert transport is not None
        return transport.getPeer()
    except Exception:
        return "<unknown peer>"


class TLSJSONServerProtocol(TLSJSONProtocol):
    """
    The server side of a connection: it checks the password, drops clients
    that do not authenticate within C{authTimeout}, and pings authenticated
    clients every C{keepAliveInterval}.
    """

    factory: "TLSJSONServerFactory"

    def _buildSession(self) -> Session:
        factory = self.factory
        peer = peerOf(self)
        return ServerSession(self, self, factory.clock, factory._password, factory.settings,
                             onKeepAliveTimeout=self.keepAliveTimedOut,
                             throttle=factory.throttle,
                             peerKey=addressKey(str(getattr(peer, "host", peer))))

    def connectionMade(self) -> None:
        """
        Join the factory's connections, then start as every protocol does.
        """
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Leave the factory's connections, then end as every protocol does.
        """
        self.factory.connections.discard(self)
        super().connectionLost(reason)

    def keepAliveTimedOut(self) -> None:
        """
        Hook: the client did not answer a ping in time; the connection is
        being dropped.
        """
        self.log.info("{peer}: no pong within {timeout} seconds; dropping",
                      peer=peerOf(self), timeout=self.factory.settings.keepAliveTimeout)


class TLSJSONClientProtocol(TLSJSONProtocol):
    """
    The client side of a connection: it sends the password, answers pings,
    and drops a server it has not heard from for C{idleTimeout} seconds.
    """

    factory: "TLSJSONClientFactory"

    def _buildSession(self) -> Session:
        factory = self.factory
        return ClientSession(self, self, cast(IReactorTime, factory.clock), factory._password,
                             factory.settings)

    def connectionMade(self) -> None:
        """
        Tell the factory, then start (the password goes out first).
        """
        self.factory.connectionMade(self)
        super().connectionMade()

    def sessionAuthenticated(self) -> None:
        """
        Tell the factory (which restarts its retry count), then the hooks.
        """
        self.factory.protocolAuthenticated(self)
        super().sessionAuthenticated()

    def dropConnection(self, reason: TLSJSONError, flush: bool) -> None:
        """
        Drop the connection; a refused password also stops reconnecting.
        """
        if isinstance(reason, AuthenticationFailed):
            # Retrying a refused password only feeds the server's
            # brute-force defences; it will not start working by itself.
            self.factory.stopTrying()
        super().dropConnection(reason, flush)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Tell the factory it has no connection, then end as every protocol
        does.
        """
        self.factory.protocolClosed(self)
        super().connectionLost(reason)


class _Factory(Protocol):
    """
    What a protocol needs of its factory.
    """

    @property
    def settings(self) -> ConnectionSettings:
        """
        The connection's settings.
        """

    @property
    def clock(self) -> Any:
        """
        The reactor that runs the timers.
        """


class TLSJSONServerFactory(ServerFactory):
    """
    Builds L{TLSJSONServerProtocol}s sharing one password and one
    L{ServerSettings}.

    @ivar settings: the L{ServerSettings}.
    @ivar connections: the live protocols (authenticated or not).
    @ivar clock: the reactor used for every timer.
    @ivar throttle: the L{AuthenticationThrottle} pacing password checks.
    """

    # Twisted types Factory.protocol with a factory attribute of its own
    # type, which a protocol naming its real factory does not match.
    protocol = TLSJSONServerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, password: str, settings: Optional[ServerSettings] = None, *,
                 reactor: Optional[IReactorTime] = None, **overrides: Any) -> None:
        """
        @param password: the password clients must send.
        @param settings: the settings; the defaults if L{None}.
        @param reactor: provides the timers; the global reactor by default.
        @param overrides: settings by name, replacing those of C{settings}
            (C{requestTimeout=5}; see L{ServerSettings}).
        @raise InvalidSetting: for an unknown setting or a value out of
            range.
        """
        self._password = checkPassword(password).encode("utf-8")
        self.settings = ServerSettings.fromOverrides(settings, overrides)
        self.clock = _defaultReactor(reactor)
        self.throttle = AuthenticationThrottle(
            self.clock, baseDelay=self.settings.authFailureDelay,
            maxDelay=self.settings.authFailureMaxDelay)
        self.connections: Set[TLSJSONServerProtocol] = set()

    def __repr__(self) -> str:
        # Never show the password.
        return f"<{type(self).__name__} with {len(self.connections)} connection(s)>"

    def logPrefix(self) -> str:
        """
        The name listening ports log this factory by.
        """
        return "tls-json server"

    def closeConnections(self) -> "Deferred[None]":
        """
        Close every connection; their pending requests errback with
        C{ConnectionLost}.

        @return: a Deferred that fires once all of them are closed.
        """
        closing = [p.close() for p in list(self.connections)]
        return gatherResults(closing).addCallback(lambda _: None)


class TLSJSONClientFactory(ReconnectingClientFactory):
    """
    Builds L{TLSJSONClientProtocol}s, and reconnects at a constant interval.

    Use it with C{reactor.connectSSL(host, port, factory, tlsOptions)}
    (C{ReconnectingClientFactory} needs a connector; endpoints do not give
    one).  The first connection attempt is retried too.  C{stopTrying()}
    stops reconnecting and cancels an attempt under way, but does not close
    an established connection (use the protocol's C{close()}).

    @ivar settings: the L{ClientSettings}.
    @ivar reconnectInterval: seconds between a lost or failed connection and
        the next attempt; C{0}: never reconnect.
    @ivar client: the current connection's protocol, if any.
    """

    protocol = TLSJSONClientProtocol  # type: ignore[assignment]  # as the server's
    factor = 1.0
    jitter = 0.0
    noisy = False

    def __init__(self, password: str, settings: Optional[ClientSettings] = None, *,
                 reactor: Optional[IReactorTime] = None, **overrides: Any) -> None:
        """
        @param password: the password to authenticate with.
        @param settings: the settings; the defaults if L{None}.
        @param reactor: provides the timers; the global reactor by default.
        @param overrides: settings by name, replacing those of C{settings}
            (C{reconnectInterval=5}; see L{ClientSettings}).
        @raise InvalidSetting: for an unknown setting or a value out of
            range.
        """
        self._password = checkPassword(password)
        self.settings = ClientSettings.fromOverrides(settings, overrides)
        self.reconnectInterval = self.settings.reconnectInterval
        self.initialDelay = self.delay = self.reconnectInterval
        # Twisted's maxDelay is an int (3600) that takes a float as well.
        self.maxDelay = self.reconnectInterval  # type: ignore[assignment]
        self.continueTrying = self.reconnectInterval > 0
        self.clock = _defaultReactor(reactor)
        self.client: Optional[TLSJSONClientProtocol] = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} reconnectInterval={self.reconnectInterval}>"

    def connectionMade(self, protocol: TLSJSONClientProtocol) -> None:
        """
        A connection (TCP; TLS may still be negotiating) was made.
        """
        self.client = protocol

    def protocolAuthenticated(self, protocol: TLSJSONClientProtocol) -> None:
        """
        A connection authenticated: restart the retry count.  After
        L{stopTrying}, this does not resume reconnecting (C{resetDelay} on its
        own would).
        """
        if self.continueTrying:
            self.resetDelay()

    def protocolClosed(self, protocol: TLSJSONClientProtocol) -> None:
        """
        A connection closed.
        """
        if self.client is protocol:
            self.client = None
