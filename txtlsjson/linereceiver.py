"""
The adapter between Twisted and a L{Session}: a C{LineReceiver} that frames
received bytes into lines for the session, writes the session's lines at the
pace the peer reads them, and closes the connection for it.

L{txtlsjson.protocol.TLSJSONProtocol} adds the application's API and hooks.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from txtlsjson.errors import InvalidOutgoingMessage, LineTooLong, NotConnected, TLSJSONError
from txtlsjson.fasttls import fastTLS
from txtlsjson.framing import LineBuffer
from txtlsjson.observers import Observers
from txtlsjson.outgoing import OutgoingLines
from txtlsjson.pieced import OutgoingLine, PiecedLine
from txtlsjson.session import Session
from txtlsjson.settings import UNAUTHENTICATED_MAX_LINE_LENGTH, ConnectionSettings
from txtlsjson.wire import DELIMITER, IncomingLine

#: Seconds a connection closed with L{SessionLineReceiver.close} may take
#: to send what waits before it is aborted (a dead peer never
#: acknowledges).
FLUSH_TIMEOUT = 5.0


class ConnectionFactory(Protocol):
    """
    What a connection needs of its factory.
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


class SessionLineReceiver(LineReceiver):
    """
    A C{LineReceiver} that runs a L{Session}: the session's transport.

    Each received line goes to L{lineReceived} (a subclass may override it
    and call up); C{MAX_LENGTH} is the longest line accepted now, in bytes
    -- 64 KiB until the password step is done, then the C{maxLineLength}
    setting -- and L{lineLengthExceeded} is called past it; L{sendLine}
    writes a raw line.  The buffering is not C{LineReceiver}'s (which
    re-searches its whole buffer on every chunk): its cost is linear in the
    bytes received.  Raw mode is not supported, and C{pauseProducing}
    stops reading from the transport without holding back the lines of a
    chunk already received (the session holds lines itself while it waits
    on a password check).

    @ivar session: the connection's L{Session}; L{None} until connected.
    @ivar writeLine: writes one encoded message, its newline included:
        straight to the transport, or, once connected with
        C{maxBufferedBytes} set, through the connection's L{OutgoingLines},
        which paces long lines and drops a peer that stopped reading.
    @ivar closeReason: why this side dropped the connection, if it did (a
        L{TLSJSONError}); L{None} if the peer or the network closed it.
    """

    delimiter = DELIMITER
    log = Logger()
    factory: ConnectionFactory
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
        if outgoing is not None and lines:
            # What the lines are answered with goes out as one write, at
            # once.
            outgoing.batch(self, deliver, lines)
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
        the previous segment's ACK), put Twisted's TLS transport on its
        cheap path (L{fastTLS}) and start the session.
        """
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            try:
                setNoDelay(True)
            except OSError:
                pass
        fastTLS(self.transport)
        session = self.session = self._buildSession()
        self.MAX_LENGTH = min(UNAUTHENTICATED_MAX_LINE_LENGTH, session.maxLineLength)
        if type(self).lineReceived is SessionLineReceiver.lineReceived:
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
        L{ConnectionLost<txtlsjson.errors.ConnectionLost>} (and the
        C{whenAuthenticated} observers with L{NotConnected}), call
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

    def connectionClosed(self, reason: Failure) -> None:
        """
        Hook: the connection is gone (called once); pending requests have
        been failed already, L{whenClosed} observers fire after this.

        @param reason: why, as Twisted reports it; L{closeReason} says if
            this side dropped the connection, and why.
        """
