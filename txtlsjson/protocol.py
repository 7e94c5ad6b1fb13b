"""
The Twisted-native layer: C{LineReceiver} protocols and their factories.

The protocols are thin adapters: they frame bytes with L{LineBuffer}, hand
lines to a L{Session} (which holds every protocol rule), and turn the
session's output into writes on the transport.  Subclass them and override
the hooks (L{TLSJSONProtocol.authenticated}, L{TLSJSONProtocol.messageReceived},
L{TLSJSONProtocol.requestReceived}, L{TLSJSONProtocol.errorReceived},
C{connectionLost}) to write an application.

TLS is not done here: listen with C{reactor.listenSSL} or an C{ssl:} endpoint
and connect with C{reactor.connectSSL}, giving them the options from
L{txtlsjson.tls}.
"""

from __future__ import annotations

from inspect import isawaitable
from typing import TYPE_CHECKING, Any, Coroutine, List, Optional, Set, cast

from twisted.internet.defer import Deferred, ensureDeferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ReconnectingClientFactory, ServerFactory, connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from txtlsjson.codec import JSONObject, PiecedLine
from txtlsjson.errors import (
    AuthenticationFailed,
    InvalidOutgoingMessage,
    LineTooLong,
    NotConnected,
    TLSJSONError,
)
from txtlsjson.framing import LineBuffer
from txtlsjson.outgoing import AnyLine, OutgoingLines
from txtlsjson.session import _AUTHENTICATED, ClientSession, ServerSession, Session
from txtlsjson.throttle import AuthenticationThrottle, addressKey

if TYPE_CHECKING:
    from twisted.internet.interfaces import IAddress

#: Default longest line, in bytes, either side accepts or sends.
DEFAULT_MAX_LINE_LENGTH = 32 * 1024 * 1024

#: Default limit of what may wait for a peer that stopped reading, on top
#: of the transport's own buffer (see L{OutgoingLines}).  It counts what is
#: written while the transport is full and what waits behind a long message
#: being paced, so it stays well above L{DEFAULT_MAX_LINE_LENGTH}: a healthy
#: peer sent a burst of large messages is not mistaken for a stalled one.
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024

#: Longest line accepted before authentication: only the password step
#: happens then, so an unauthenticated peer cannot make the server buffer
#: more than this.
UNAUTHENTICATED_MAX_LINE_LENGTH = 64 * 1024

#: Seconds a connection closed with a final message (a refused password) may
#: take to flush it before it is aborted.
FLUSH_TIMEOUT = 5.0


def awaitableAsDeferred(result: Any) -> Any:
    """
    A coroutine (or other awaitable) returned by an application hook, as a
    Deferred; any other result as it is.
    """
    if isawaitable(result) and not isinstance(result, Deferred):
        return ensureDeferred(cast("Coroutine[Any, Any, Any]", result))
    return result


def _defaultReactor(reactor: Optional[IReactorTime]) -> Any:
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        return globalReactor
    return reactor


def _checkTimes(**times: float) -> None:
    for name, value in times.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")


def _checkSize(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a number of bytes >= 0, not {value!r}")


def _checkPassword(password: object) -> None:
    if not isinstance(password, str) or not password:
        raise ValueError("password must be a non-empty string")


class TLSJSONProtocol(LineReceiver):
    """
    One tls-json connection, either side.  Use L{TLSJSONServerProtocol} or
    L{TLSJSONClientProtocol}.

    @ivar session: the connection's L{Session}, once connected.
    @ivar closeReason: why this side dropped the connection, if it did (a
        L{TLSJSONError}); L{None} if the peer or the network closed it.
    """

    delimiter = b"\n"
    log = Logger()
    #: The connection's session; L{None} until connected.
    session: Session = None  # type: ignore[assignment]
    closeReason: Optional[TLSJSONError] = None
    _abortTimer: Optional[IDelayedCall] = None
    _outgoing: Optional[OutgoingLines] = None

    def __init__(self) -> None:
        self._authenticatedObservers: List[Deferred[None]] = []
        self._closedObservers: List[Deferred[None]] = []
        self._closed = False

    # -- the session's transport ---------------------------------------

    def writeLine(self, line: AnyLine) -> None:
        """
        Write one encoded message, its newline included.

        With C{maxBufferedBytes} set (the default), the connection's
        L{OutgoingLines} takes this method's place once connected: it paces
        long lines and drops a peer that has stopped reading while more than
        C{maxBufferedBytes} wait for it
        (L{SlowConsumer<txtlsjson.errors.SlowConsumer>}); while the lines of
        one C{dataReceived} are handled, its C{holdLine} collects the answers
        into one write.  Without, lines go straight to the transport.
        """
        if type(line) is PiecedLine:
            self.transport.writeSequence(line.pieces())  # type: ignore[union-attr]
        else:
            self.transport.write(line)  # type: ignore[union-attr,arg-type]

    def _bufferingTransport(self) -> Any:
        """
        The transport whose write buffer fills when the peer stops reading:
        under TLS, the TCP transport beneath it.  Registering there, not on
        the TLS transport, matters: the TLS transport would not close
        (C{loseConnection}) while a producer is registered with it.
        """
        transport: Any = self.transport
        if isinstance(transport, TLSMemoryBIOProtocol) and transport.transport is not None:
            return transport.transport
        return transport

    def _registerOutgoing(self, limit: int) -> None:
        outgoing = OutgoingLines(
            self.transport.write, limit,  # type: ignore[union-attr]
            lambda error: self.session.peerNotReading(error))
        try:
            self._bufferingTransport().registerProducer(outgoing, True)
        except (RuntimeError, AttributeError):
            # Someone registered a producer first: leave it alone.
            self.log.debug("no write backpressure on {transport}", transport=self.transport)
            return
        self._outgoing = outgoing
        # The session's lines go straight to it: one call less per message.
        self.writeLine = outgoing.writeLine  # type: ignore[method-assign]

    def _unregisterOutgoing(self) -> None:
        if self._outgoing is not None:
            self._outgoing = None
            try:
                self._bufferingTransport().unregisterProducer()
            except Exception:  # the transport may have let go already
                pass

    def pauseReading(self) -> None:
        """
        Stop reading from the peer (the session is waiting on something).
        """
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeReading(self) -> None:
        """
        Read from the peer again.
        """
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def dropConnection(self, reason: TLSJSONError, flush: bool) -> None:
        """
        Close the connection on the session's behalf.
        """
        if self.closeReason is None:
            self.closeReason = reason
        if flush:
            self.close()
        else:
            self.transport.abortConnection()  # type: ignore[union-attr]

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
        self.session = self._buildSession()
        self._lines = LineBuffer(min(UNAUTHENTICATED_MAX_LINE_LENGTH, self.session.maxLineLength))
        limit = self.factory.maxBufferedBytes  # type: ignore[attr-defined]
        if limit > 0:
            self._registerOutgoing(limit)
        self.session.connectionMade()

    def dataReceived(self, data: bytes) -> None:
        """
        Frame received bytes into lines (linear in the bytes received, unlike
        C{LineReceiver}'s own buffering) and hand them to the session.
        """
        session = self.session
        session.heard()
        try:
            lines = self._lines.feed(data)
        except LineTooLong as e:
            session.linesReceived(e.lines)
            session.lineTooLong(e)
            return
        outgoing = self._outgoing
        if len(lines) > 1 and outgoing is not None:
            # Answers to a batch of requests go out as one write.
            self.writeLine = outgoing.holdLine  # type: ignore[method-assign]
            try:
                session.linesReceived(lines)
            finally:
                self.writeLine = outgoing.writeLine  # type: ignore[method-assign]
                outgoing.release()
        elif lines:
            session.linesReceived(lines)

    def lineReceived(self, line: bytes) -> None:
        """
        Process one line, as C{LineReceiver} does; L{dataReceived} does not
        go through here.
        """
        self.session.linesReceived([line])

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
        self._unregisterOutgoing()
        session = self.session
        if session is not None:
            session.connectionLost()
        authenticated, self._authenticatedObservers = self._authenticatedObservers, []
        for d in authenticated:
            d.errback(NotConnected("connection closed before authentication"))
        self.connectionClosed(reason)
        closed, self._closedObservers = self._closedObservers, []
        for d in closed:
            d.callback(None)

    # -- the session's observer ------------------------------------------

    def sessionAuthenticated(self) -> None:
        """
        The session authenticated: lift the line limit to the configured one
        and call L{authenticated}.
        """
        self._lines.maxLineLength = self.session.maxLineLength
        observers, self._authenticatedObservers = self._authenticatedObservers, []
        for d in observers:
            d.callback(None)
        self.authenticated()

    def sessionRequest(self, requestId: int, request: JSONObject) -> None:
        """
        The session received request C{requestId}: call L{requestReceived}
        and send what it returns, at once or when it resolves.
        """
        try:
            result = self.requestReceived(request)
        except Exception:
            self.log.failure("request handler raised; request {requestId} not answered",
                             requestId=requestId)
            return
        if type(result) is dict:
            self._respond(result, requestId)
            return
        if result is None:
            return
        result = awaitableAsDeferred(result)
        if isinstance(result, Deferred):
            result.addCallbacks(self._respond, self._handlerFailed,
                                callbackArgs=(requestId,), errbackArgs=(requestId,))
            return
        self._respond(result, requestId)

    def _respond(self, response: Optional[JSONObject], requestId: int) -> None:
        if response is None or not self.isAuthenticated:
            # Without a connection the requester's side fails the request
            # with "connection lost": there is nobody to tell.
            return
        try:
            self.session.respond(requestId, response)
        except InvalidOutgoingMessage:
            self.log.failure("response to request {requestId} could not be sent",
                             requestId=requestId)

    def _handlerFailed(self, failure: Failure, requestId: int) -> None:
        self.log.failure("request handler failed; request {requestId} not answered",
                         failure, requestId=requestId)

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
        d: Deferred[None] = Deferred(self._authenticatedObservers.remove)
        self._authenticatedObservers.append(d)
        return d

    def close(self) -> "Deferred[None]":
        """
        Close the connection cleanly, aborting it if the close has not
        completed within L{FLUSH_TIMEOUT} seconds (a dead peer never
        acknowledges).

        @return: a Deferred that fires once the connection is closed.
        """
        closed = self.whenClosed()
        if not self._closed and self._abortTimer is None:
            transport: Any = self.transport
            # Scheduled first: loseConnection may call connectionLost at once,
            # which must find the timer to cancel it.
            self._abortTimer = self.factory.clock.callLater(  # type: ignore[attr-defined]
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
        d: Deferred[None] = Deferred(self._closedObservers.remove)
        self._closedObservers.append(d)
        return d

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
            in one.  C{None} sends no response (the requester will time
            out).  If the hook raises or its result fails, the failure is
            logged and no response is sent.
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
        peer (the line was dropped), a refused password, a timeout.  By
        default it is logged.
        """
        self.log.warn("{peer}: {error}", peer=_peerOf(self), error=error)


def _hostOf(protocol: TLSJSONProtocol) -> str:
    peer = _peerOf(protocol)
    return str(getattr(peer, "host", peer))


def _peerOf(protocol: TLSJSONProtocol) -> "IAddress | str":
    transport: Any = protocol.transport
    try:
        return transport.getPeer()  # type: ignore[no-any-return]
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
        return ServerSession(
            self,
            self,
            factory.clock,
            password=factory._password,
            requestTimeout=factory.requestTimeout,
            maxLineLength=factory.maxLineLength,
            authTimeout=factory.authTimeout,
            keepAliveInterval=factory.keepAliveInterval,
            keepAliveTimeout=factory.keepAliveTimeout,
            onKeepAliveTimeout=self.keepAliveTimedOut,
            throttle=factory.throttle,
            peerKey=addressKey(_hostOf(self)),
        )

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
                      peer=_peerOf(self), timeout=self.factory.keepAliveTimeout)


class TLSJSONClientProtocol(TLSJSONProtocol):
    """
    The client side of a connection: it sends the password, answers pings,
    and drops a server it has not heard from for C{idleTimeout} seconds.
    """

    factory: "TLSJSONClientFactory"

    def _buildSession(self) -> Session:
        factory = self.factory
        return ClientSession(
            self,
            self,
            cast(IReactorTime, factory.clock),
            password=factory._password,
            requestTimeout=factory.requestTimeout,
            maxLineLength=factory.maxLineLength,
            idleTimeout=factory.idleTimeout,
        )

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


class TLSJSONServerFactory(ServerFactory):
    """
    Builds L{TLSJSONServerProtocol}s sharing one password and one set of
    timings.

    @ivar connections: the live protocols (authenticated or not).
    @ivar clock: the reactor used for every timer.
    """

    protocol = TLSJSONServerProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        password: str,
        *,
        requestTimeout: float = 10.0,
        keepAliveInterval: float = 10.0,
        keepAliveTimeout: float = 5.0,
        authTimeout: float = 10.0,
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
        maxBufferedBytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        authFailureDelay: float = 1.0,
        authFailureMaxDelay: float = 16.0,
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param password: the password clients must send.
        @param requestTimeout: seconds a request waits for its response
            (C{0}: forever).
        @param keepAliveInterval: seconds between pings to each
            authenticated client (C{0}: no pings).
        @param keepAliveTimeout: seconds a client has to answer a ping.
        @param authTimeout: seconds a new connection has to authenticate
            (C{0}: forever -- not advisable on a public port).
        @param maxLineLength: the longest message, in bytes, accepted from or
            sent to an authenticated client.
        @param maxBufferedBytes: how much may wait for a client that stopped
            reading, on top of the transport's buffer, before it is dropped
            (C{0}: no limit).
        @param authFailureDelay: after a wrong password from an address (an
            IPv6 one: its /64 network, see
            L{addressKey<txtlsjson.throttle.addressKey>}), the next answer
            to that address waits this long, doubling with
            each further failure; checks from one address go one at a time
            (C{0}: no wait).
        @param authFailureMaxDelay: the longest such wait.
        @param reactor: provides the timers; the global reactor by default.
        """
        _checkPassword(password)
        _checkTimes(requestTimeout=requestTimeout, keepAliveInterval=keepAliveInterval,
                    keepAliveTimeout=keepAliveTimeout, authTimeout=authTimeout,
                    authFailureDelay=authFailureDelay, authFailureMaxDelay=authFailureMaxDelay)
        _checkSize(maxBufferedBytes=maxBufferedBytes)
        if keepAliveInterval > 0 and keepAliveTimeout <= 0:
            raise ValueError("keepAliveTimeout must be > 0 when keepAliveInterval is set")
        if maxLineLength < 1:
            raise ValueError(f"maxLineLength must be a positive number of bytes, not {maxLineLength!r}")
        self._password = password.encode("utf-8")
        self.requestTimeout = requestTimeout
        self.keepAliveInterval = keepAliveInterval
        self.keepAliveTimeout = keepAliveTimeout
        self.authTimeout = authTimeout
        self.maxLineLength = maxLineLength
        self.maxBufferedBytes = maxBufferedBytes
        self.clock = _defaultReactor(reactor)
        self.throttle = AuthenticationThrottle(
            self.clock, baseDelay=authFailureDelay, maxDelay=authFailureMaxDelay)
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

    @ivar reconnectInterval: seconds between a lost or failed connection and
        the next attempt; C{0}: never reconnect.
    @ivar client: the current connection's protocol, if any.
    """

    protocol = TLSJSONClientProtocol  # type: ignore[assignment]
    factor = 1.0
    jitter = 0.0
    noisy = False

    def __init__(
        self,
        password: str,
        *,
        reconnectInterval: float = 0.0,
        requestTimeout: float = 10.0,
        idleTimeout: float = 30.0,
        maxLineLength: int = DEFAULT_MAX_LINE_LENGTH,
        maxBufferedBytes: int = DEFAULT_MAX_BUFFERED_BYTES,
        reactor: Optional[IReactorTime] = None,
    ) -> None:
        """
        @param password: the password to authenticate with.
        @param reconnectInterval: seconds to wait before each reconnection
            attempt; C{0} never reconnects.
        @param requestTimeout: seconds a request waits for its response
            (C{0}: forever).
        @param idleTimeout: seconds of total silence after which the server
            is taken for dead and the connection dropped (C{0}: never).  Keep
            it above the server's keepalive interval plus timeout (10 + 5 s
            by default).
        @param maxLineLength: the longest message, in bytes, accepted or sent.
        @param maxBufferedBytes: how much may wait for a server that stopped
            reading before the connection is dropped (C{0}: no limit).
        @param reactor: provides the timers; the global reactor by default.
        """
        _checkPassword(password)
        _checkTimes(reconnectInterval=reconnectInterval, requestTimeout=requestTimeout,
                    idleTimeout=idleTimeout)
        _checkSize(maxBufferedBytes=maxBufferedBytes)
        if maxLineLength < 1:
            raise ValueError(f"maxLineLength must be a positive number of bytes, not {maxLineLength!r}")
        self._password = password
        self.reconnectInterval = reconnectInterval
        self.initialDelay = self.delay = self.maxDelay = reconnectInterval  # type: ignore[assignment]
        self.continueTrying = reconnectInterval > 0
        self.requestTimeout = requestTimeout
        self.idleTimeout = idleTimeout
        self.maxLineLength = maxLineLength
        self.maxBufferedBytes = maxBufferedBytes
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
