"""
The write side of a connection: encoded lines handed to the transport at
the pace the peer reads them.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, TypeVar

from twisted.internet.interfaces import IPushProducer, ITransport
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from txtlsjson.errors import SlowConsumer
from txtlsjson.fasttls import encrypt, fastState
from txtlsjson.pieced import OutgoingLine, PiecedLine

#: Lines longer than this are handed to the transport a piece of this size
#: at a time.  Just above Twisted's TLS small-write aggregation threshold
#: (64,000 bytes), so that each piece is encrypted and passed on at once,
#: and the size of the TCP transport's buffer, which each piece fills;
#: smaller and larger pieces measured slower (C{benchmarks/RESULTS.rst}).
CHUNK_SIZE = 64 * 1024

_Item = TypeVar("_Item")


#: What L{_SendAtOnce} reads of Twisted's TCP transport: class defaults
#: until Twisted first sets them on the instance, so set there by
#: L{sendAtOnce}.  (CPython specializes reading an attribute the instance
#: holds; one it finds on the class instead is read the slow way, each
#: time.)
_TCP_STATE = ("_tempDataLen", "offset", "dataBuffer", "connected", "disconnecting",
              "_writeDisconnected")


class _SendAtOnce:
    """
    The C{write} L{sendAtOnce} gives a transport: one small object a
    connection (an idle connection's memory counts).
    """

    __slots__ = ("_transport", "_write", "_above")

    def __init__(self, transport: Any, above: Any) -> None:
        self._transport = transport
        # Someone else's write, if they replaced the class's; else the
        # class's own, called through the class (no bound method kept).
        write = transport.write
        self._write = None if getattr(write, "__func__", None) is type(transport).write else write
        # The TLS transport's instance dictionary: its attributes are slow
        # to read as attributes (see txtlsjson.fasttls).
        self._above: Optional[Dict[str, Any]] = None if above is None else vars(above)

    def __call__(self, data: bytes) -> None:
        transport = self._transport
        above = self._above
        if (not transport._tempDataLen and transport.offset == len(transport.dataBuffer)
                and transport.connected and not transport.disconnecting
                and not transport._writeDisconnected
                and (above is None or not above.get("_aborted", False))):
            sent = transport.writeSomeData(data)
            if type(sent) is int:
                if sent == len(data):
                    return
                data = data[sent:]
        if self._write is None:
            type(transport).write(transport, data)
        else:
            self._write(data)


def sendAtOnce(transport: Any, above: Any = None) -> bool:
    """
    Have Twisted's TCP C{transport} send what it is given at once when
    nothing waits in its buffer, as libuv's C{uv_try_write} does, instead of
    buffering it until the reactor reports the socket writable (one more
    reactor turn, and two C{epoll_ctl} calls, per write).  Only what the
    socket does not take is buffered, by the transport's own C{write}, so
    producers, backpressure and closing work as before.

    This belongs in Twisted (its C{FileDescriptor.write}); it lives here,
    on the transports of txtlsjson's own connections, until it is there.

    @param above: the TLS protocol over C{transport}, if any: while it
        aborts the connection, writes wait as before (and are discarded
        with the connection), so that an abort sends nothing more.
    @return: whether C{transport} is one this applies to.
    """
    try:
        transport.write, transport.writeSomeData
        for name in _TCP_STATE:
            setattr(transport, name, getattr(transport, name))
    except AttributeError:
        return False
    transport.write = _SendAtOnce(transport, above)
    return True


def bufferingTransport(transport: Any) -> Any:
    """
    The transport whose write buffer fills when the peer stops reading:
    under TLS, the TCP transport beneath C{transport}.  A producer must be
    registered there, not on the TLS transport: the TLS transport would not
    close (C{loseConnection}) while a producer is registered with it.
    """
    if isinstance(transport, TLSMemoryBIOProtocol) and transport.transport is not None:
        return transport.transport
    return transport


@implementer(IPushProducer)
class OutgoingLines:
    """
    Writes encoded lines to a transport while watching the buffer beneath
    it.

    Registered as a streaming producer with the transport whose buffer
    fills when the peer stops reading (under TLS, the TCP transport), it
    learns when that buffer is full (paused) and when it has drained
    (resumed), and:

      - hands a line to the transport at once, unless it is longer than
        C{chunkSize}: such a line is handed over a piece at a time (a
        L{PiecedLine} in the pieces it is encoded in), the next piece when
        the buffer has drained, and lines written meanwhile wait behind it
        in order.  TLS then encrypts one piece while the peer decrypts the
        one before, and the TCP transport never joins megabytes of
        ciphertext into one more buffer;
      - during L{batch}, collects the short lines written (the answers to a
        batch of requests) and writes them together at its end;
      - refuses a write (reporting L{SlowConsumer}) once more than C{limit}
        bytes wait beyond the transport's buffer: written while it was full
        and not drained since, or queued behind a long line.  The long line
        being handed over does not count: it was accepted whole.

    @ivar paused: whether the transport's buffer is full.
    """

    # One per connection, so kept small: slots, and no queue until needed.
    __slots__ = ("_write", "_tls", "_tlsState", "_limit", "_slowConsumer", "_chunkSize", "paused",
                 "_pending", "_long", "_longLeft", "_queue", "_queued", "_held", "_heldBytes",
                 "_registeredWith")

    log = Logger()

    def __init__(self, write: Callable[[bytes], None], limit: int,
                 slowConsumer: Callable[[SlowConsumer], None],
                 chunkSize: int = CHUNK_SIZE) -> None:
        """
        @param write: hands bytes to the transport (under TLS, the TLS
            transport's C{write}, which encrypts them).
        @param limit: the most bytes that may wait beyond the transport's
            buffer.
        @param slowConsumer: called, instead of writing, with the error for
            a write over the limit.
        @param chunkSize: lines longer than this are handed over in pieces
            of this size; a L{PiecedLine}, always longer (its long strings
            alone are L{LONG_STRING<txtlsjson.codec.LONG_STRING>} or more),
            in the pieces it is encoded in.
        """
        self._write = write
        # Under Twisted's TLS, the TLS transport (see _writeNow).
        self._tls: Optional[TLSMemoryBIOProtocol] = None
        # Its instance dictionary, if it is on fasttls's cheap path.
        self._tlsState: Optional[Dict[str, Any]] = None
        self._limit = limit
        self._slowConsumer = slowConsumer
        self._chunkSize = chunkSize
        self.paused = False
        # Bytes written while paused, since the buffer last drained.
        self._pending = 0
        # The pieces of the long line being handed over, and how many of
        # its bytes have not been.
        self._long: Optional[Iterator[bytes]] = None
        self._longLeft = 0
        # Lines waiting behind it (a deque once there are any), and their
        # bytes.
        self._queue: Optional[Deque[OutgoingLine]] = None
        self._queued = 0
        # During a batch, the short lines collected (a list, empty until
        # one is), and their bytes; None outside a batch.
        self._held: Optional[List[bytes]] = None
        self._heldBytes = 0
        # The transport registered with, by register().
        self._registeredWith: Any = None

    @classmethod
    def register(cls, transport: ITransport, limit: int,
                 slowConsumer: Callable[[SlowConsumer], None]) -> "Optional[OutgoingLines]":
        """
        Make the writer of C{transport}'s lines, registered as a streaming
        producer with the transport beneath it (see
        L{bufferingTransport}).

        @return: the writer, or L{None} if someone else registered a
            producer there first (their producer is left alone, and lines
            should then go straight to C{transport.write}).
        """
        outgoing = cls(transport.write, limit, slowConsumer)
        beneath = bufferingTransport(transport)
        try:
            beneath.registerProducer(outgoing, True)
        except (RuntimeError, AttributeError):
            cls.log.debug("no write backpressure on {transport}", transport=transport)
            return None
        outgoing._registeredWith = beneath
        if isinstance(transport, TLSMemoryBIOProtocol) and hasattr(transport, "_aggregator"):
            outgoing._tls = transport
            outgoing._tlsState = fastState(transport)
        sendAtOnce(beneath, transport if beneath is not transport else None)
        return outgoing

    def unregister(self) -> None:
        """
        Stop being the transport's producer, as the connection ends.
        """
        beneath, self._registeredWith = self._registeredWith, None
        if beneath is not None:
            try:
                beneath.unregisterProducer()
            except Exception:  # the transport may have let go already
                pass

    def batch(self, owner: Any, deliver: Callable[[_Item], None], items: Iterable[_Item]) -> None:
        """
        Call C{deliver} with each of C{items} (the lines of one
        C{dataReceived}), collecting the short lines written meanwhile into
        one write at the end: a batch of requests then costs the TLS
        transport one write, not one per answer, and that write goes at
        once (see L{_writeNow}), not at the end of the reactor turn.
        Collected lines are written early once they reach the size of a
        piece, or when a long line comes.

        @param owner: what the writers call C{writeLine} on (the session's
            transport): for the batch, its C{writeLine} is this object's
            collector, so that C{writeLine} itself costs nothing extra
            outside batches.
        """
        self._held = []
        previous = owner.writeLine
        owner.writeLine = self._collect
        try:
            for item in items:
                deliver(item)
        finally:
            owner.writeLine = previous
            held, self._held, self._heldBytes = self._held, None, 0
            if held:
                data = held[0] if len(held) == 1 else b"".join(held)
                if self.paused or self._long is not None or self._queue:
                    self.writeLine(data)
                else:
                    # Now, not at the end of the reactor turn: these are the
                    # answers to what was just read.
                    self._writeNow(data)

    def _writeNow(self, data: bytes) -> None:
        """
        Write C{data} without waiting for the end of the reactor turn:
        under Twisted's TLS, which gathers small writes until then, what it
        has gathered (written earlier) goes first, then C{data}, encrypted
        at once.  For the answers to what a C{dataReceived} delivered: they
        are gathered already (L{batch}), and waiting would cost every round
        trip a reactor turn.  (Twisted's C{_aggregator} is private: this
        belongs in Twisted, as a way to flush.)
        """
        tls = self._tls
        state = self._tlsState
        if state is not None:
            # On fasttls's cheap path: the same, read from its dictionary.
            if not state["disconnecting"]:
                state["_aggregator"].flush()
                encrypt(tls, state, data)
                return
        elif tls is not None and not tls.disconnecting:
            tls._aggregator.flush()
            # The class's own write, which encrypts now (and drops what
            # comes after the connection is lost); a BufferingTLSTransport's
            # instance write goes through the aggregator.
            TLSMemoryBIOProtocol.write(tls, data)
            return
        self._write(data)

    def _collect(self, line: OutgoingLine) -> None:
        """
        C{writeLine} during a batch: collect a short line, write a long one
        after what was collected.
        """
        held = self._held
        if held is None:  # flushed (closed) in the middle of the batch
            self.writeLine(line)
            return
        if type(line) is bytes and len(line) <= self._chunkSize:
            held.append(line)
            self._heldBytes += len(line)
            if self._heldBytes < self._chunkSize:
                return
            line = b""
        self._held, self._heldBytes = [], 0
        if held:
            self.writeLine(held[0] if len(held) == 1 else b"".join(held))
        if line:
            self.writeLine(line)

    def writeLine(self, line: OutgoingLine) -> None:
        """
        Write one line, at once or after those before it -- unless more
        than the limit would then wait, in which case the line is dropped
        and C{slowConsumer} is called.
        """
        if self._long is not None or self._queue:
            self._queued += len(line)
            if self._queued > self._limit:
                self._slowConsumer(self._slow(self._queued))
                return
            if self._queue is None:
                self._queue = deque()
            self._queue.append(line)
            return
        if self.paused:
            self._pending += len(line)
            if self._pending > self._limit:
                self._slowConsumer(self._slow(self._pending))
                return
        if len(line) > self._chunkSize:
            self._startLong(line)
            self._handOver()
        else:
            # Short, so bytes: a PiecedLine is always longer than a piece.
            # (Said to the type checker this way: a check would cost every
            # message a little.)
            self._write(line)  # type: ignore[arg-type]

    def _slow(self, waiting: int) -> SlowConsumer:
        return SlowConsumer(
            f"peer is not reading: {waiting} bytes wait beyond the transport's buffer, "
            f"over maxBufferedBytes ({self._limit}); dropped")

    def _startLong(self, line: OutgoingLine) -> None:
        """
        Make C{line} the long line being handed over.
        """
        if isinstance(line, PiecedLine):
            self._long = line.pieces()
        else:
            chunkSize = self._chunkSize
            self._long = (line[start:start + chunkSize]
                          for start in range(0, len(line), chunkSize))
        self._longLeft = len(line)

    def _handOver(self) -> None:
        """
        Hand over pieces of the long line, then the lines queued behind it,
        until the transport is full or nothing waits.
        """
        while not self.paused:
            pieces = self._long
            if pieces is not None:
                piece = next(pieces, None)
                if piece is None:
                    self._long = None
                else:
                    self._longLeft -= len(piece)
                    self._write(piece)
                continue
            queue = self._queue
            if not queue:
                self._queue = None
                return
            line = queue.popleft()
            self._queued -= len(line)
            if type(line) is bytes and len(line) <= self._chunkSize:
                self._write(line)
            else:
                self._startLong(line)

    @property
    def waiting(self) -> int:
        """
        @return: how many bytes are held here, not yet handed to the
            transport.
        """
        return self._longLeft + self._queued + self._heldBytes

    def flush(self) -> None:
        """
        Hand everything held to the transport at once, as before a clean
        close: the transport then writes it out before closing.
        """
        long, self._long, self._longLeft = self._long, None, 0
        queue, self._queue, self._queued = self._queue, None, 0
        held, self._held, self._heldBytes = self._held, None, 0
        if long is not None:
            self._write(b"".join(long))
        for line in queue or ():
            self._write(line if type(line) is bytes else bytes(line))
        if held:
            self._write(b"".join(held))

    # -- IPushProducer, called by the transport ----------------------------

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full.
        """
        self.paused = True

    def resumeProducing(self) -> None:
        """
        The transport's buffer has drained: hand over what waits.
        """
        self.paused = False
        self._pending = 0
        self._handOver()

    def stopProducing(self) -> None:
        """
        The transport is going away: what is held will never be sent.
        """
        self.paused = False
        self._long, self._longLeft = None, 0
        self._queue, self._queued = None, 0
        self._held, self._heldBytes = None, 0
