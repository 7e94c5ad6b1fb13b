"""
The session rules of one tls-json connection, free of I/O.

A session takes received lines and application calls in, and hands encoded
lines, a request to drop the connection, and application callbacks out:

  - the password step (L{ServerSession} checks it, L{ClientSession} sends it);
  - dispatch of authenticated lines, in the Node peer's order: a truthy
    C{requestId} is a request; else a truthy C{responseId} a response; else
    C{__ping} (client) / C{__pong} (server) is keepalive; else a message;
  - request ids and pending requests (L{PendingRequests});
  - the timers: authentication timeout and keepalive pings (server), and
    dead-server detection (client).

Sessions talk to the connection through L{ISessionTransport} and to the
application through L{ISessionObserver}; the Twisted protocols in
L{txtlsjson.protocol} provide both.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Callable, List, Optional, Protocol, cast

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.codec import (
    SHORT_LINE,
    SHORT_LINE_ERRORS,
    decodeLine,
    decodeShortLine,
    encodeLine,
    encodeMessageLine,
    lineTooLong,
)
from txtlsjson.credentials import ANONYMOUS, Identity
from txtlsjson.pieced import LONG_STRING, OutgoingLine, encodeLongMessage
from txtlsjson.settings import ClientSettings, ConnectionSettings, ServerSettings
from txtlsjson.wire import (
    AUTHENTICATED_LINE,
    INCORRECT_PASSWORD_LINE,
    PING,
    PONG,
    REQUEST_ID,
    RESPONSE_ID,
    TOO_MANY_ATTEMPTS_LINE,
    IncomingLine,
    JSONObject,
    isTruthy,
    isValidId,
    pingLine,
    pongLine,
)
from txtlsjson.errors import (
    AuthenticationFailed,
    AuthenticationTimeout,
    AuthenticatorFailed,
    ConnectionLost,
    IdleTimeout,
    InvalidMessage,
    InvalidOutgoingMessage,
    KeepAliveTimeout,
    NotConnected,
    TLSJSONError,
    TooManyAttempts,
    UnknownResponse,
)
from txtlsjson.requests import PendingRequests
from txtlsjson.throttle import PasswordPacer


class SessionState(Enum):
    """
    The states of a connection: the password step, then authenticated; closing
    once this side has decided to drop the connection (nothing more is read or
    sent), closed once it is gone.  There is no way back.
    """

    AWAITING_AUTHENTICATION = "awaiting authentication"
    AUTHENTICATED = "authenticated"
    CLOSING = "closing"
    CLOSED = "closed"


#: The state the hot paths test for.  Looked up through the class, an Enum
#: member takes a slow path (EnumType's __getattr__) that costs more than
#: some of those paths' own work.
_AUTHENTICATED = SessionState.AUTHENTICATED


class ISessionTransport(Protocol):
    """
    What a session needs from its connection.
    """

    def writeLine(self, line: OutgoingLine) -> None:
        """
        Send one encoded message, its trailing newline included: bytes, or
        a L{PiecedLine} to send piece after piece.
        """

    def pauseReading(self) -> None:
        """
        Stop reading from the peer until L{resumeReading}.
        """

    def resumeReading(self) -> None:
        """
        Read from the peer again.
        """

    def dropConnection(self, reason: TLSJSONError, flush: bool) -> None:
        """
        Close the connection because of C{reason}.  With C{flush}, what was
        written is sent first; without, the connection is aborted at once (for
        a peer that may be dead or hostile).  The session learns of the close
        through L{Session.connectionLost}.
        """


class IServerSessionTransport(ISessionTransport, Protocol):
    """
    What a server session needs from its connection: also who a client is.
    """

    def authenticate(self, password: str) -> Any:
        """
        Ask the server's authenticator about C{password}: the client's
        L{Identity}, or a name, to accept it, L{None} to refuse it; or a
        Deferred or coroutine resulting in one (see
        L{txtlsjson.credentials}).
        """


class ISessionObserver(Protocol):
    """
    What a session reports to the application.
    """

    def sessionAuthenticated(self) -> None:
        """
        The password step succeeded.
        """

    def messageReceived(self, message: JSONObject) -> None:
        """
        An application message arrived.
        """

    def sessionRequest(self, requestId: int, request: JSONObject) -> None:
        """
        Request C{requestId} arrived; answer it with L{Session.respond}
        (see L{txtlsjson.answers}).
        """

    def errorReceived(self, error: TLSJSONError) -> None:
        """
        Something went wrong that the application should know of: bad input
        from the peer, a failed password, a timeout.
        """


#: A key's absence, where C{None} would be a JSON null.
_ABSENT = object()


def _ignoreCancellation(failure: Failure) -> None:
    failure.trap(CancelledError)


def _cancel(call: Optional[IDelayedCall]) -> None:
    if call is not None and call.active():
        call.cancel()


class Session:
    """
    The role-independent part of a connection's rules.

    @ivar state: the L{SessionState}.
    @ivar requests: this side's outstanding requests.
    @ivar maxLineLength: the longest line this side sends or accepts, in
        bytes; sending a longer message fails locally.
    """

    log = Logger()

    #: The keepalive key this side answers or checks, set by the subclasses.
    _keepAliveKey: str
    #: Whether a lone C{password} after authentication is dropped unread
    #: rather than delivered (the server's rule).
    _refusesPasswords = False

    def __init__(
        self,
        transport: ISessionTransport,
        observer: ISessionObserver,
        clock: IReactorTime,
        settings: ConnectionSettings,
    ) -> None:
        """
        @param transport: writes lines and closes the connection.
        @param observer: hears what the application should hear.
        @param clock: runs the timers.
        @param settings: the connection's settings.
        """
        self.state = SessionState.AWAITING_AUTHENTICATION
        self.requests = PendingRequests(clock, settings.requestTimeout)
        self.maxLineLength = settings.maxLineLength
        self._transport = transport
        self._observer = observer
        self._clock = clock
        # Lines that arrived while a password check was waiting; None when
        # no check is waiting.
        self._held: Optional[List[IncomingLine]] = None
        # How application messages are encoded: whole, until a line longer
        # than LONG_STRING has been sent; from then on each message is
        # looked at for a long string to encode as it is sent, which costs
        # a little on every message (see encodeLongMessage).
        self._encodeMessage: Callable[..., OutgoingLine] = encodeMessageLine
        # Outgoing lines longer than this are looked at (_longLine): over
        # the limit, or long enough to change how messages are encoded.
        # One comparison a line, where there would be two.
        self._watchAbove = min(self.maxLineLength + 1, LONG_STRING)

    # -- outgoing ---------------------------------------------------------

    def _longLine(self, line: OutgoingLine) -> None:
        """
        Look at an outgoing line longer than C{_watchAbove}.

        @raise InvalidOutgoingMessage: if it is over the limit; it is not
            to be sent.
        """
        if len(line) > self.maxLineLength + 1:
            raise lineTooLong(line, self.maxLineLength)
        if len(line) > LONG_STRING:
            self._encodeMessage = encodeLongMessage

    def send(self, message: JSONObject) -> None:
        """
        Send an application message.

        @raise NotConnected: if the session is not authenticated.
        @raise InvalidOutgoingMessage: if the message cannot be sent as it is
            (L{ReservedKeyError} for a reserved key); nothing was sent.
        """
        if self.state is not _AUTHENTICATED:
            raise NotConnected()
        line = self._encodeMessage(message)
        if len(line) > self._watchAbove:
            self._longLine(line)
        self._transport.writeLine(line)

    def request(self, request: JSONObject) -> "Deferred[JSONObject]":
        """
        Send a request and return a Deferred for its response.

        Never raises: every failure (not authenticated, an invalid object,
        timeout, connection lost) arrives through the Deferred.
        """
        if self.state is not _AUTHENTICATED:
            return fail(NotConnected())
        requests = self.requests
        try:
            line = self._encodeMessage(request, REQUEST_ID, requests.nextId)
            if len(line) > self._watchAbove:
                self._longLine(line)
        except InvalidOutgoingMessage:
            return fail()
        self._transport.writeLine(line)
        return requests.issue()

    # -- incoming ---------------------------------------------------------

    def lineReceived(self, line: IncomingLine) -> None:
        """
        Process one received line.  A line that is blank (or only a
        C{\\r}) is skipped, as the Node peer's line splitter does.

        Authenticated lines are dispatched in the Node peer's order: a
        truthy C{requestId} is a request; else a truthy C{responseId} a
        response; else the keepalive key (C{__ping} on the client, C{__pong}
        on the server); else an application message.
        """
        if self.state is not _AUTHENTICATED:
            self._lineBeforeAuthentication(line)
            return
        # The hot path: decoding and dispatch inline, the common cases
        # first and cheaply.
        try:
            message = decodeShortLine(line) if len(line) < SHORT_LINE else None
        except SHORT_LINE_ERRORS:
            message = None
        if type(message) is not dict:
            # Long, or not an object to the short lines' decoder:
            # decodeLine decides, and says why.
            try:
                message = decodeLine(line)
            except InvalidMessage as e:
                if line.strip():
                    self._badLine(e)
                return
        requestId = message.get(REQUEST_ID, _ABSENT)
        if requestId is not _ABSENT:
            if isValidId(requestId):
                del message[REQUEST_ID]
                self._observer.sessionRequest(requestId, message)
                return
            if isTruthy(requestId):
                self._invalidId(REQUEST_ID, requestId)
                return
        elif "responseId" not in message and "__ping" not in message and "__pong" not in message:
            # No key of RESERVED_KEYS (requestId is absent; the others are
            # spelled out: half the cost of RESERVED_KEYS.isdisjoint).  An
            # application message (the Node peer's last case), unless it is
            # a second password step.
            if len(message) == 1 and self._refusesPasswords and type(message.get("password")) is str:
                self._secondPassword()
                return
            self._observer.messageReceived(message)
            return
        responseId = message.get(RESPONSE_ID, _ABSENT)
        if responseId is not _ABSENT and (
                responseId if type(responseId) is int else isTruthy(responseId)):
            del message[RESPONSE_ID]
            if not self.requests.resolve(responseId, message):
                self._observer.errorReceived(
                    UnknownResponse(f"response to unknown request id {responseId!r}")
                )
            return
        key = self._keepAliveKey
        if key in message:
            self._keepAlive(message[key])
            return
        if requestId is not _ABSENT or responseId is not _ABSENT:
            # A falsy id: the Node peer never sends one, and no reading of it
            # is safe, so it is neither delivered nor answered.
            found = REQUEST_ID if requestId is not _ABSENT else RESPONSE_ID
            self._invalidId(found, message[found])
            return
        # A reserved key that means nothing on this side (the other side's
        # keepalive key): an application message, as to the Node peer.
        self._observer.messageReceived(message)

    def _secondPassword(self) -> None:
        """
        A second password step: never handed to the application, which
        might log it.
        """
        self._observer.errorReceived(InvalidMessage(
            "a password after authentication; dropped unread"))

    def _lineBeforeAuthentication(self, line: IncomingLine) -> None:
        """
        The password step: rare, so it may take the slow road.
        """
        if self.state is SessionState.CLOSING or self.state is SessionState.CLOSED:
            return
        if self._held is not None:
            self._held.append(line)
            return
        message = self._decode(line)
        if message is not None:
            self._authenticate(message)

    def _decode(self, line: IncomingLine) -> Optional[JSONObject]:
        """
        Decode a line; report a bad one, skip a blank one (L{None} for both).
        """
        try:
            return decodeLine(line)
        except InvalidMessage as e:
            if line.strip():
                self._badLine(e)
            return None

    def _badLine(self, error: InvalidMessage) -> None:
        """
        Report an undecodable line.  Authenticated peers keep their
        connection; the subclasses decide for the password step.
        """
        self._observer.errorReceived(error)

    def _invalidId(self, key: str, value: object) -> None:
        self._observer.errorReceived(
            InvalidMessage(
                f"{key} must be an integer from 1 to 2**53-1, not {value!r}; line dropped"
            )
        )

    def heard(self) -> None:
        """
        Bytes arrived from the peer, whether or not they complete a line.
        """

    def _keepAlive(self, value: object) -> None:
        raise NotImplementedError()

    def _authenticate(self, message: JSONObject) -> None:
        raise NotImplementedError()

    def respond(self, requestId: int, response: JSONObject) -> None:
        """
        Send the response to the peer's request C{requestId}.

        @raise NotConnected: if the connection is no longer authenticated
            (the requester's side fails the request with "connection lost").
        @raise InvalidOutgoingMessage: if the response cannot be sent as it
            is; nothing was sent.
        """
        if self.state is not _AUTHENTICATED:
            raise NotConnected()
        line = self._encodeMessage(response, RESPONSE_ID, requestId)
        if len(line) > self._watchAbove:
            self._longLine(line)
        self._transport.writeLine(line)

    def _becomeAuthenticated(self) -> None:
        self.state = SessionState.AUTHENTICATED
        self._observer.sessionAuthenticated()

    def _drop(self, reason: TLSJSONError, flush: bool = False) -> None:
        """
        Report C{reason} and close the connection.
        """
        if self.state is SessionState.CLOSING or self.state is SessionState.CLOSED:
            return
        self._observer.errorReceived(reason)
        self._close(reason, flush)

    def _close(self, reason: TLSJSONError, flush: bool = False) -> None:
        """
        Close the connection because of C{reason}, without reporting it.
        """
        if self.state is SessionState.CLOSING or self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSING
        self._stopTimers()
        self._transport.dropConnection(reason, flush)

    def lineTooLong(self, error: TLSJSONError) -> None:
        """
        The framing found a line over the limit: report it and close.
        """
        self._drop(error)

    def peerNotReading(self, error: TLSJSONError) -> None:
        """
        The transport reports a peer that stopped reading while too much
        waited for it: report it and abort.
        """
        self._drop(error)

    def connectionMade(self) -> None:
        """
        The connection is up (TLS may still be negotiating); start the
        password step.
        """

    def connectionLost(self) -> None:
        """
        The connection is gone: stop every timer and errback every pending
        request with L{ConnectionLost}.
        """
        self.state = SessionState.CLOSED
        self._stopTimers()
        self.requests.failAll(ConnectionLost())

    def _stopTimers(self) -> None:
        pass


class ServerSession(Session):
    """
    The server side: checks the password, drops clients that do not
    authenticate in time, and pings authenticated clients.
    """

    _keepAliveKey = PONG
    _refusesPasswords = True

    def __init__(
        self,
        transport: IServerSessionTransport,
        observer: ISessionObserver,
        clock: IReactorTime,
        settings: ServerSettings,
        onKeepAliveTimeout: Callable[[], None],
        throttle: Optional[PasswordPacer] = None,
        peerKey: str = "",
    ) -> None:
        """
        @param transport: the connection, which also says who a client is
            (L{IServerSessionTransport.authenticate}).
        @param settings: the server's settings: C{authTimeout},
            C{keepAliveInterval} and C{keepAliveTimeout} apply here.
        @param onKeepAliveTimeout: called when a pong did not come in time,
            before the connection is dropped.
        @param throttle: paces password checks per peer address; none by
            default.
        @param peerKey: this peer's key in C{throttle} (its address, see
            L{addressKey<txtlsjson.throttle.addressKey>}).
        """
        super().__init__(transport, observer, clock, settings)
        self._authTimeout = settings.authTimeout
        self._keepAliveInterval = settings.keepAliveInterval
        self._keepAliveTimeout = settings.keepAliveTimeout
        self._onKeepAliveTimeout = onKeepAliveTimeout
        self._throttle = throttle
        self._peerKey = peerKey
        self._attempt: Optional[Deferred[Any]] = None
        #: Who the client is, once authenticated.
        self.identity: Optional[Identity] = None
        self._authTimer: Optional[IDelayedCall] = None
        self._pingTimer: Optional[IDelayedCall] = None
        self._pongTimer: Optional[IDelayedCall] = None
        self._lastPing = 0

    def connectionMade(self) -> None:
        """
        Start the authentication timer.
        """
        if self._authTimeout > 0:
            self._authTimer = self._clock.callLater(self._authTimeout, self._authTimedOut)

    def _authTimedOut(self) -> None:
        self._authTimer = None
        self._drop(AuthenticationTimeout(
            f"client did not authenticate within {self._authTimeout} seconds"))

    def _badLine(self, error: InvalidMessage) -> None:
        if self.state is SessionState.AUTHENTICATED:
            self._observer.errorReceived(error)
        else:
            self._drop(error)

    def _authenticate(self, message: JSONObject) -> None:
        password = message.get("password")
        _cancel(self._authTimer)
        self._authTimer = None
        if self._throttle is None:
            self._check(password, paced=False)
            return
        try:
            attempt = self._throttle.attempt(self._peerKey)
        except TooManyAttempts as e:
            self._transport.writeLine(TOO_MANY_ATTEMPTS_LINE)
            self._drop(AuthenticationFailed(str(e)), flush=True)
            return
        if not attempt.called:
            # Answer later, in turn; meanwhile read nothing more.
            self._hold(attempt)
        attempt.addCallback(lambda _: self._check(password, paced=True))
        attempt.addErrback(_ignoreCancellation)

    def _hold(self, waiting: "Deferred[Any]") -> None:
        """
        Read nothing more until C{waiting} fires: lines that arrive are kept
        in order, and delivered once the client is accepted.
        """
        if self._held is None:
            self._held = []
            self._transport.pauseReading()
        self._attempt = waiting

    def _check(self, password: object, paced: bool) -> None:
        """
        Ask the authenticator about C{password}, now or, if it answers
        later, holding the client's lines until it does.

        @param paced: whether the throttle is waiting to hear the outcome.
        """
        self._attempt = None
        if not isinstance(password, str):
            self._verdict(None, paced)
            return
        try:
            verdict = cast(IServerSessionTransport, self._transport).authenticate(password)
        except Exception:
            self._failed(Failure(), paced)
            return
        if isinstance(verdict, Deferred) or hasattr(verdict, "__await__"):
            checking: Deferred[Any] = ensureDeferred(verdict)
            self._hold(checking)
            if self._authTimeout > 0:
                # An authenticator that never answers (a database hung)
                # must not hold the connection for ever.
                self._authTimer = self._clock.callLater(
                    self._authTimeout, self._authenticatorTimedOut, checking, paced)
            checking.addCallbacks(self._verdict, self._failed, callbackArgs=(paced,),
                                  errbackArgs=(paced,))
            return
        self._verdict(verdict, paced)

    def _authenticatorTimedOut(self, checking: "Deferred[Any]", paced: bool) -> None:
        self._authTimer = None
        self._settle(paced, succeeded=False)
        self.log.error("the authenticator did not answer within {timeout} seconds; dropping "
                       "the client", timeout=self._authTimeout)
        self._drop(AuthenticatorFailed(
            f"the authenticator did not answer within {self._authTimeout} seconds"))
        checking.cancel()

    def _settle(self, paced: bool, succeeded: bool) -> Optional[List[IncomingLine]]:
        """
        The password check is over: stop its timer, read again, tell the
        throttle (if it paced the check) how it went, and take the lines
        kept meanwhile.
        """
        _cancel(self._authTimer)
        self._authTimer = None
        self._attempt = None
        held, self._held = self._held, None
        if held is not None:
            # Read again either way, and before answering (a transport being
            # closed may not resume): a refused peer's close must be read for
            # the close to complete.
            self._transport.resumeReading()
        if paced:
            assert self._throttle is not None
            self._throttle.finished(self._peerKey, succeeded)
        return held

    def _failed(self, failure: Failure, paced: bool) -> None:
        """
        The authenticator raised or failed: log it, drop the client without
        telling it its password was wrong (a tls-json client tries again).
        """
        if failure.check(CancelledError):
            # The connection is gone, or the check timed out: nothing to answer.
            return
        self._settle(paced, succeeded=False)
        self.log.failure("the authenticator failed; dropping the client", failure)
        self._drop(AuthenticatorFailed(f"the authenticator failed: {failure.getErrorMessage()}"))

    def _verdict(self, verdict: object, paced: bool) -> None:
        """
        Answer the client: accepted as C{verdict} (an L{Identity}, or a
        name), or refused (L{None}, or anything false).
        """
        if isinstance(verdict, str):
            verdict = Identity(name=verdict) if verdict else None
        elif verdict is not None and not isinstance(verdict, Identity):
            verdict = ANONYMOUS if verdict else None
        held = self._settle(paced, succeeded=verdict is not None)
        if verdict is None:
            self._transport.writeLine(INCORRECT_PASSWORD_LINE)
            self._drop(AuthenticationFailed(), flush=True)
            return
        self.identity = verdict
        self._transport.writeLine(AUTHENTICATED_LINE)
        if self._keepAliveInterval > 0:
            self._pingTimer = self._clock.callLater(self._keepAliveInterval, self._ping)
        self._becomeAuthenticated()
        if held:
            for line in held:
                self.lineReceived(line)

    def _ping(self) -> None:
        # Never 0: the Node client answers only a truthy __ping.
        self._lastPing += 1
        self._pingTimer = None
        self._transport.writeLine(pingLine(self._lastPing))
        self._pongTimer = self._clock.callLater(self._keepAliveTimeout, self._pongTimedOut)

    def _keepAlive(self, value: object) -> None:
        if type(value) is not int or value != self._lastPing or self._pongTimer is None:
            # A stale or unsolicited pong proves nothing; it is ignored.
            return
        _cancel(self._pongTimer)
        self._pongTimer = None
        self._pingTimer = self._clock.callLater(self._keepAliveInterval, self._ping)

    def _pongTimedOut(self) -> None:
        self._pongTimer = None
        self._onKeepAliveTimeout()
        self._close(KeepAliveTimeout(f"no pong within {self._keepAliveTimeout} seconds"))

    def _stopTimers(self) -> None:
        for timer in (self._authTimer, self._pingTimer, self._pongTimer):
            _cancel(timer)
        self._authTimer = self._pingTimer = self._pongTimer = None
        attempt, self._attempt = self._attempt, None
        if attempt is not None:
            attempt.cancel()


class ClientSession(Session):
    """
    The client side: sends the password, answers pings, and drops a server
    that has been silent for too long.
    """

    _keepAliveKey = PING

    def __init__(
        self,
        transport: ISessionTransport,
        observer: ISessionObserver,
        clock: IReactorTime,
        password: str,
        settings: ClientSettings,
    ) -> None:
        """
        @param password: the password to send.
        @param settings: the client's settings: C{idleTimeout} applies
            here (C{0} disables the check).
        """
        super().__init__(transport, observer, clock, settings)
        self._password = password
        self._idleTimeout = settings.idleTimeout
        self._idleTimer: Optional[IDelayedCall] = None
        self._lastHeard = 0.0

    def connectionMade(self) -> None:
        """
        Send the password and start watching for silence.
        """
        self._transport.writeLine(encodeLine({"password": self._password}))
        if self._idleTimeout > 0:
            self._lastHeard = self._clock.seconds()
            self._idleTimer = self._clock.callLater(self._idleTimeout, self._checkIdle)

    def heard(self) -> None:
        """
        Note the time: the server is alive.
        """
        if self._idleTimer is not None:
            # One clock read per chunk; the timer itself is only moved when
            # it fires, so a busy connection costs no timer churn.
            self._lastHeard = self._clock.seconds()

    def _checkIdle(self) -> None:
        silent = self._clock.seconds() - self._lastHeard
        if silent >= self._idleTimeout:
            self._idleTimer = None
            self._drop(IdleTimeout(
                f"nothing heard from the server for {self._idleTimeout} seconds"))
        else:
            self._idleTimer = self._clock.callLater(self._idleTimeout - silent, self._checkIdle)

    def _badLine(self, error: InvalidMessage) -> None:
        self._observer.errorReceived(error)

    def _authenticate(self, message: JSONObject) -> None:
        if message.get("authenticated") is True:
            self._becomeAuthenticated()
        elif "error" in message:
            error = message["error"]
            self._drop(AuthenticationFailed(error if isinstance(error, str) else repr(error)))
        else:
            self._observer.errorReceived(InvalidMessage(
                "expected the server's answer to the password; line dropped"))

    def _keepAlive(self, value: object) -> None:
        if type(value) is int:
            self._transport.writeLine(pongLine(value))
        else:
            self._observer.errorReceived(InvalidMessage(
                f"__ping must be an integer, not {value!r}; line dropped"))

    def _stopTimers(self) -> None:
        _cancel(self._idleTimer)
        self._idleTimer = None
