"""
The write side of a connection: encoded lines handed to the transport at
the pace the peer reads them.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Iterator, List, Optional, Union

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from txtlsjson.codec import PiecedLine
from txtlsjson.errors import SlowConsumer

#: An encoded line: bytes, or the pieces of a long message (see
#: L{txtlsjson.codec.encodeLongMessage}).
AnyLine = Union[bytes, PiecedLine]

#: Lines longer than this are handed to the transport a piece of this size
#: at a time.  Just above Twisted's TLS small-write aggregation threshold
#: (64,000 bytes), so that each piece is encrypted and passed on at once,
#: and the size of the TCP transport's buffer, which each piece fills.
#: Measured on 127.0.0.1 (a 16 MiB request and its answer): 41-47 ms with
#: 64 KiB pieces, 60-62 ms with 256 KiB, 62-76 ms with 1 MiB and 66-89 ms
#: written whole; the benchmark suite puts 64 and 256 KiB within its noise.
CHUNK_SIZE = 64 * 1024


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
      - collects the short lines given to L{holdLine} (the answers to a
        batch of requests) and writes them together on L{release};
      - refuses a write (reporting L{SlowConsumer}) once more than C{limit}
        bytes wait beyond the transport's buffer: written while it was full
        and not drained since, or queued behind a long line.  The long line
        being handed over does not count: it was accepted whole.

    @ivar paused: whether the transport's buffer is full.
    """

    # One per connection, so kept small: slots, and no queue until needed.
    __slots__ = ("_write", "_limit", "_slowConsumer", "_chunkSize", "paused", "_pending",
                 "_long", "_longLeft", "_queue", "_queued", "_held", "_heldBytes")

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
        self._queue: Optional[Deque[AnyLine]] = None
        self._queued = 0
        # Lines collected by holdLine, and their bytes.
        self._held: Optional[List[bytes]] = None
        self._heldBytes = 0

    def holdLine(self, line: AnyLine) -> None:
        """
        Collect a short line, to be written with the others collected until
        L{release}: a batch of requests answered within one C{dataReceived}
        then costs the TLS transport one write, not one per answer.  When
        the lines collected reach the size of a piece, or a long line comes,
        they are written at once.
        """
        if len(line) <= self._chunkSize:
            held = self._held
            if held is None:
                held = self._held = []
            held.append(line)  # type: ignore[arg-type]  # short: bytes
            self._heldBytes += len(line)
            if self._heldBytes >= self._chunkSize:
                self.release()
        else:
            self.release()
            self.writeLine(line)

    def release(self) -> None:
        """
        Write the lines collected by L{holdLine}.
        """
        held = self._held
        if held:
            self._held, self._heldBytes = None, 0
            self.writeLine(held[0] if len(held) == 1 else b"".join(held))

    def writeLine(self, line: AnyLine) -> None:
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
            self._write(line)  # type: ignore[arg-type]  # short: bytes

    def _slow(self, waiting: int) -> SlowConsumer:
        return SlowConsumer(
            f"peer is not reading: {waiting} bytes wait beyond the transport's buffer, "
            f"over maxBufferedBytes ({self._limit}); dropped")

    def _startLong(self, line: AnyLine) -> None:
        """
        Make C{line} the long line being handed over.
        """
        if type(line) is PiecedLine:
            self._long = line.pieces()
        else:
            chunkSize = self._chunkSize
            self._long = (line[start:start + chunkSize]  # type: ignore[index]
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
            if len(line) > self._chunkSize:
                self._startLong(line)
            else:
                self._write(line)  # type: ignore[arg-type]  # short: bytes

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
