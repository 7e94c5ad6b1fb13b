"""
Lines are handed to the transport at the pace it drains: long lines in
pieces, the lines behind them in order, and a peer that stops reading is
reported before what waits for it exceeds the limit.  In-memory only.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, List

import pytest
from twisted.internet.task import Clock

from txtlsjson.errors import SlowConsumer
from txtlsjson.outgoing import OutgoingLines, sendAtOnce

from .conftest import PKI
from .helpers import authenticatedClient, authenticatedServer, inMemoryOverTLS

CHUNK = 10


class FillingTransport:
    """
    Records writes; after each one its buffer counts as full (the producer
    is paused) until L{drain} -- as a TCP transport behaves when every
    write exceeds its buffer size.
    """

    def __init__(self, fillsUp: bool = True) -> None:
        self.written: List[bytes] = []
        self.fillsUp = fillsUp
        self.slow: List[SlowConsumer] = []
        self.outgoing = OutgoingLines(self.write, 100, self.slow.append, chunkSize=CHUNK)

    def write(self, data: bytes) -> None:
        self.written.append(data)
        if self.fillsUp:
            self.outgoing.pauseProducing()

    def drain(self) -> None:
        self.outgoing.resumeProducing()


def test_shortLinesAtOnce() -> None:
    """
    Lines up to the chunk size are written at once, whole, in order.
    """
    transport = FillingTransport(fillsUp=False)
    transport.outgoing.writeLine(b"a" * CHUNK)
    transport.outgoing.writeLine(b"b\n")
    assert transport.written == [b"a" * CHUNK, b"b\n"]
    assert transport.outgoing.waiting == 0


def test_longLineInPieces() -> None:
    """
    A longer line is handed over one piece per drain of the transport; lines
    written meanwhile wait behind it and follow in order.
    """
    transport = FillingTransport()
    outgoing = transport.outgoing
    line = bytes(range(65, 90)) + b"\n"  # 26 bytes: pieces of 10, 10, 6
    outgoing.writeLine(line)
    outgoing.writeLine(b"next\n")
    assert transport.written == [line[:10]]
    assert outgoing.waiting == 16 + 5
    transport.drain()
    assert transport.written == [line[:10], line[10:20]]
    transport.drain()
    transport.drain()
    assert transport.written == [line[:10], line[10:20], line[20:], b"next\n"]
    assert outgoing.waiting == 0
    # Nothing waits any more: the next line goes at once.
    transport.drain()
    outgoing.writeLine(b"last\n")
    assert transport.written[-1] == b"last\n"


def test_longLinesBehindEachOther() -> None:
    """
    A long line queued behind another is handed over in pieces after it;
    without a transport that fills up, everything goes at once.
    """
    transport = FillingTransport(fillsUp=False)
    first, second = b"x" * 25 + b"\n", b"y" * 15 + b"\n"
    transport.outgoing.writeLine(first)
    transport.outgoing.writeLine(second)
    assert b"".join(transport.written) == first + second
    assert max(map(len, transport.written)) == CHUNK

    transport = FillingTransport()
    transport.outgoing.writeLine(first)
    transport.outgoing.writeLine(second)
    transport.outgoing.writeLine(b"z\n")
    for _ in range(10):
        transport.drain()
    assert b"".join(transport.written) == first + second + b"z\n"


def test_queueOverLimit() -> None:
    """
    Lines queued behind a long one count against the limit; the long line
    itself, accepted whole, does not.  Over the limit the line is not
    queued and the peer is reported as a slow consumer.
    """
    transport = FillingTransport()
    outgoing = transport.outgoing
    outgoing.writeLine(b"x" * 500)
    outgoing.writeLine(b"a" * 60)
    outgoing.writeLine(b"b" * 40)
    assert transport.slow == []
    outgoing.writeLine(b"c")
    assert len(transport.slow) == 1
    assert "101 bytes wait" in str(transport.slow[0])
    assert "maxBufferedBytes (100)" in str(transport.slow[0])
    outgoing.flush()
    assert b"".join(transport.written) == b"x" * 500 + b"a" * 60 + b"b" * 40


def test_flushHandsEverythingOver() -> None:
    """
    L{OutgoingLines.flush} hands what waits to the transport at once, as
    before a clean close.
    """
    transport = FillingTransport()
    transport.outgoing.writeLine(b"x" * 35)
    transport.outgoing.writeLine(b"after")
    transport.outgoing.flush()
    assert transport.written == [b"x" * 10, b"x" * 25, b"after"]
    assert transport.outgoing.waiting == 0


def test_stopProducingDiscards() -> None:
    """
    When the transport goes away, what waits is dropped: nothing is written
    on a later drain.
    """
    transport = FillingTransport()
    transport.outgoing.writeLine(b"x" * 35)
    transport.outgoing.stopProducing()
    assert transport.outgoing.waiting == 0
    transport.drain()
    assert transport.written == [b"x" * 10]


def test_closeSendsWhatWaits() -> None:
    """
    C{close()} on a protocol hands a long message still waiting for the
    transport to drain over before closing, so that it arrives whole.
    """
    clock = Clock()
    protocol, transport = authenticatedClient(clock)
    assert transport.producer is not None
    transport.producer.pauseProducing()
    big = "x" * (600 * 1024)
    protocol.send({"big": big})
    protocol.send({"small": 1})
    assert len(transport.value()) < 600 * 1024
    protocol.close()
    assert transport.lines() == [b'{"big":"%s"}' % big.encode(), b'{"small":1}']
    assert transport.disconnecting


class Writer:
    """
    What a session writes through: its C{writeLine} is the outgoing lines'
    own, or their collector during a batch.
    """

    def __init__(self, outgoing: OutgoingLines) -> None:
        self.writeLine: Any = outgoing.writeLine

    def write(self, line: bytes) -> None:
        self.writeLine(line)


def test_batchLinesWrittenTogether() -> None:
    """
    Short lines written during a C{batch} are collected and written in one
    piece, in order, when it ends; outside a batch C{writeLine} writes at
    once.
    """
    transport = FillingTransport(fillsUp=False)
    outgoing = transport.outgoing
    writer = Writer(outgoing)
    during: List[Any] = []

    def deliver(line: bytes) -> None:
        writer.write(line)
        during.append((list(transport.written), outgoing.waiting))

    outgoing.batch(writer, deliver, [b"a\n", b"b\n", b"c\n"])
    assert during == [([], 2), ([], 4), ([], 6)]
    assert transport.written == [b"a\nb\nc\n"]
    writer.write(b"d\n")
    assert transport.written == [b"a\nb\nc\n", b"d\n"]


def test_batchLinesWrittenAtPieceSize() -> None:
    """
    Lines collected in a batch that reach the piece size are written at
    once, so what is held stays bounded; the batch goes on collecting.
    """
    transport = FillingTransport(fillsUp=False)
    writer = Writer(transport.outgoing)
    transport.outgoing.batch(writer, writer.write, [b"aaaa\n", b"bbbb\n", b"c\n"])
    assert transport.written == [b"aaaa\nbbbb\n", b"c\n"]


def test_longLineInBatch() -> None:
    """
    A long line written in a batch goes after the lines collected before
    it, and the lines after it follow it.
    """
    transport = FillingTransport()
    writer = Writer(transport.outgoing)
    transport.outgoing.batch(writer, writer.write, [b"a\n", b"L" * 24 + b"\n", b"b\n"])
    for _ in range(5):
        transport.drain()
    assert b"".join(transport.written) == b"a\n" + b"L" * 24 + b"\n" + b"b\n"
    assert transport.written[0] == b"a\n"


def test_flushInBatch() -> None:
    """
    L{OutgoingLines.flush} (a close, by a handler in the middle of a batch)
    writes the lines collected too, after what was waiting before them;
    lines written after it in the batch are written at once.
    """
    transport = FillingTransport()
    outgoing = transport.outgoing
    writer = Writer(outgoing)
    outgoing.writeLine(b"x" * 25)

    def deliver(line: bytes) -> None:
        writer.write(line)
        if line == b"held\n":
            outgoing.flush()

    outgoing.batch(writer, deliver, [b"held\n", b"after\n"])
    assert b"".join(transport.written) == b"x" * 25 + b"held\n" + b"after\n"


def test_batchEndsOnError() -> None:
    """
    A delivery that raises ends the batch: what was collected is written,
    and later writes go out at once.
    """
    transport = FillingTransport(fillsUp=False)
    writer = Writer(transport.outgoing)

    def deliver(line: bytes) -> None:
        writer.write(line)
        raise ZeroDivisionError()

    with pytest.raises(ZeroDivisionError):
        transport.outgoing.batch(writer, deliver, [b"a\n", b"b\n"])
    assert transport.written == [b"a\n"]
    writer.write(b"c\n")
    assert transport.written == [b"a\n", b"c\n"]


def test_batchAnsweredInOneWrite() -> None:
    """
    Requests that arrive in one chunk and are answered at once are answered
    with one write to the transport.
    """
    clock = Clock()
    protocol, transport = authenticatedServer(clock)
    protocol.requestReceived = lambda request: {"n": request["n"] + 1}
    transport.io = CountingIO()
    protocol.dataReceived(b'{"n":1,"requestId":1}\n{"n":2,"requestId":2}\n{"n":3,"requestId":3}\n')
    assert transport.io.writes == [
        b'{"n":2,"responseId":1}\n{"n":3,"responseId":2}\n{"n":4,"responseId":3}\n']
    protocol.dataReceived(b'{"n":4,"requestId":4}\n')
    assert transport.io.writes[1:] == [b'{"n":5,"responseId":4}\n']


class CountingIO(BytesIO):
    """
    A StringTransport's buffer that records each write.
    """

    def __init__(self) -> None:
        super().__init__()
        self.writes: List[bytes] = []

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return super().write(data)


# -- writing at once ------------------------------------------------------------


class FakeTCP:
    """
    The parts of Twisted's TCP transport that L{sendAtOnce} uses: a socket
    that takes C{accepts} bytes a send, and a buffer.
    """

    def __init__(self, accepts: int = 1 << 20) -> None:
        self.accepts = accepts
        self.sent: List[bytes] = []
        self.buffered: List[bytes] = []
        self._tempDataLen = 0
        self.dataBuffer = b""
        self.offset = 0
        self.connected = True
        self.disconnecting = False
        self._writeDisconnected = False

    def writeSomeData(self, data: bytes) -> int:
        taken = bytes(data[:self.accepts])
        self.sent.append(taken)
        return len(taken)

    def write(self, data: bytes) -> None:
        self.buffered.append(bytes(data))
        self._tempDataLen += len(data)


def test_sendAtOnceWhenNothingWaits() -> None:
    """
    With nothing in its buffer, the transport sends at once; what the
    socket does not take, and everything after it until the buffer drains,
    goes to the buffer in order.
    """
    tcp = FakeTCP(accepts=3)
    assert sendAtOnce(tcp)
    tcp.write(b"abcdef")
    tcp.write(b"gh")
    assert tcp.sent == [b"abc"] and tcp.buffered == [b"def", b"gh"]
    roomy = FakeTCP()
    sendAtOnce(roomy)
    roomy.write(b"abc")
    roomy.write(b"def")
    assert roomy.sent == [b"abc", b"def"] and roomy.buffered == []


def test_sendAtOnceNotWhileClosing() -> None:
    """
    A closing transport, or one whose TLS is aborting, buffers as before:
    an abort sends nothing more.
    """
    closing = FakeTCP()
    sendAtOnce(closing)
    closing.disconnecting = True
    closing.write(b"x")

    class Aborting:
        def __init__(self) -> None:
            self._aborted = True  # on the instance, as abortConnection sets it

    aborted = FakeTCP()
    sendAtOnce(aborted, Aborting())
    aborted.write(b"y")
    assert closing.sent == aborted.sent == []
    assert closing.buffered == [b"x"] and aborted.buffered == [b"y"]
    assert not sendAtOnce(object())


def test_answersLeaveWithoutWaitingForTheTurn(pki: PKI) -> None:
    """
    Under TLS, the answer to a request goes out as the request is read, not
    at the reactor's next turn; a message sent from outside
    C{dataReceived} still waits for the turn (and is gathered with the
    others written in it).
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    answers: List[Any] = []
    client.request({"n": 1}).addCallback(answers.append)
    clock.advance(0)  # the client's own write, from outside dataReceived
    pump.flush(advanceClock=False)
    assert answers == [{"answer": 1}]
    messages: List[Any] = []
    client.messageReceived = messages.append
    server.send({"later": 1})
    pump.flush(advanceClock=False)
    assert messages == []
    clock.advance(0)
    pump.flush(advanceClock=False)
    assert messages == [{"later": 1}]


def test_gatheredWritesGoFirst(pki: PKI) -> None:
    """
    What TLS gathered before an answer leaves first: a message sent, not
    yet written, then an answer to a request read meanwhile, arrive in that
    order.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    arrived: List[Any] = []
    client.messageReceived = lambda message: arrived.append(("message", message))
    client.request({"n": 2}).addCallback(lambda answer: arrived.append(("answer", answer)))
    server.send({"first": True})
    clock.advance(0)  # sends the client's request; the server's message too
    server.send({"second": True})  # gathered, until the turn
    pump.flush(advanceClock=False)  # the request arrives: the answer goes after "second"
    assert arrived == [("message", {"first": True}), ("message", {"second": True}),
                       ("answer", {"answer": 2})]
