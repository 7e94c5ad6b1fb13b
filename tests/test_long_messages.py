"""
Messages carrying a long string are encoded as they are sent, a piece at a
time (L{txtlsjson.pieced.PiecedLine}), once a connection has sent one long
line: the bytes on the wire and the errors are those of the message encoded
whole, with either codec.  In memory only; the integration and Node interop
tests send such messages over real TLS.
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable, Dict, Iterator, List

import pytest
from twisted.internet.task import Clock

from txtlsjson import codec, pieced, session
from txtlsjson.codec import encodeMessageLine
from txtlsjson.errors import InvalidMessage, InvalidOutgoingMessage
from txtlsjson.pieced import LONG_STRING, PiecedLine, encodeLongMessage
from txtlsjson.wire import REQUEST_ID, RESPONSE_ID

from .helpers import authenticatedClient, authenticatedServer
from .test_codec_equivalence import STRINGS, digits, involvesKnownDifference, randomValue, same
from .test_outgoing import CHUNK, FillingTransport

#: Each codec's whole-message and string encoders, to compare the pieced
#: line with the whole one under both whatever TXTLSJSON_CODEC says.
CODECS = {"json": (codec._encodeStandard, codec._encodeStringStandard),
          "fast": (codec._encodeFast, codec._encodeStringFast)}


@pytest.fixture(params=sorted(CODECS))
def smallPieces(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """
    Use one codec, with strings and lines "long" from 20 characters and
    strings encoded 7 at a time: pieces then cut through escapes and
    multi-byte characters.
    """
    encodeAny, encodeString = CODECS[request.param]
    monkeypatch.setattr(codec, "_encodeAny", encodeAny)
    monkeypatch.setattr(pieced, "encodeString", encodeString)
    monkeypatch.setattr(pieced, "LONG_STRING", 20)
    monkeypatch.setattr(session, "LONG_STRING", 20)
    monkeypatch.setattr(pieced, "_STRING_PIECE", 7)
    return request.param  # type: ignore[no-any-return]


def outcome(function: Callable[..., Any], *args: Any) -> Any:
    try:
        line = function(*args)
    except (InvalidMessage, InvalidOutgoingMessage) as e:
        return ("error", type(e), str(e))
    return ("ok", bytes(line), len(line))


ENCODABLE = [s for s in STRINGS if s not in ("\ud800", "\udfff")]


def longString(rng: random.Random) -> str:
    """
    A string of 20 characters or more (of escapes, multi-byte characters
    and plain ones), one time in twenty with a lone surrogate.
    """
    text = "".join(rng.choice(ENCODABLE) for _ in range(rng.randint(12, 30))) + "x" * 20
    return text + "\ud800" if rng.random() < 0.05 else text


def test_piecedLinesIdentical(smallPieces: str) -> None:
    """
    Over 3,000 generated messages (a third pieced) with long strings among other values,
    with and without an id, the pieced line has the bytes and length of
    the whole one, or the same error (lone surrogates, NaN, unencodable
    values -- in the long strings or beside them).

    With the fast codec, where the whole line falls back to the standard
    library (see L{codec.CODEC}), the pieced line may do so for only part
    of it: a float may then be written in the other notation (the same
    value and digits), and a UUID or Enum member encoded rather than
    refused -- the differences between the codecs, documented.
    """
    rng = random.Random(2611)
    pieced = errors = notations = 0
    for _ in range(3000):
        message = {}
        for index in range(rng.randint(1, 5)):
            key = rng.choice(STRINGS) + str(index)
            message[key] = longString(rng) if rng.random() < 0.5 else randomValue(rng)
        idKey = rng.choice([None, REQUEST_ID, RESPONSE_ID])
        if smallPieces == "fast" and involvesKnownDifference(message):
            continue
        expected = outcome(encodeMessageLine, message, idKey, 42)
        actual = outcome(encodeLongMessage, message, idKey, 42)
        if actual != expected and smallPieces == "fast":
            assert actual[0] == expected[0] == "ok", message
            assert same(json.loads(actual[1]), json.loads(expected[1])), message
            assert digits(actual[1]) == digits(expected[1]), message
            notations += 1
        else:
            assert actual == expected, message
        if expected[0] == "ok" and any(type(v) is str and len(v) >= 20 for v in message.values()):
            assert type(encodeLongMessage(message, idKey, 42)) is PiecedLine
            pieced += 1
        errors += expected[0] == "error"
    assert pieced > 800 and errors > 100 and notations < pieced / 10


def test_withoutLongStringsWhole(smallPieces: str) -> None:
    """
    A message whose long strings are nested, or whose strings are all
    short, is encoded whole, as bytes.
    """
    messages: List[Dict[str, Any]] = [
        {"a": "short"}, {"nested": {"s": "x" * 50}}, {"list": ["x" * 50]}, {}]
    for message in messages:
        assert encodeLongMessage(message, REQUEST_ID, 1) == encodeMessageLine(
            message, REQUEST_ID, 1)


def test_encodedAsSent(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Making a L{PiecedLine} encodes its long string once, piece by piece, to
    measure it; its pieces are encoded again as they are asked for, each of
    L{pieced._STRING_PIECE} characters: 64 KiB of ASCII.
    """
    encoded: List[int] = []
    encodeString = codec.encodeString

    def counting(text: str) -> bytes:
        encoded.append(len(text))
        return encodeString(text)

    monkeypatch.setattr(pieced, "encodeString", counting)
    data = "x" * (LONG_STRING + 1000)
    line = encodeLongMessage({"op": "len", "data": data}, REQUEST_ID, 7)
    assert isinstance(line, PiecedLine)
    pieceCount = -(-len(data) // (64 * 1024))
    assert len(encoded) == pieceCount + 1  # the key, then each piece
    pieces: Iterator[bytes] = line.pieces()
    assert next(pieces) == b'{"op":"len","data":"'
    assert next(pieces) == b"x" * 64 * 1024
    assert len(encoded) == pieceCount + 2
    rest = list(pieces)
    assert len(encoded) == 2 * pieceCount + 1
    assert rest[-1] == b'","requestId":7}\n'
    assert len(line) == len(data) + len(b'{"op":"len","data":"","requestId":7}\n')
    assert bytes(line) == encodeMessageLine({"op": "len", "data": data}, REQUEST_ID, 7)


def test_realSizes() -> None:
    """
    At real sizes, with the codec in use: ASCII, two- and four-byte UTF-8
    and escapes, two long strings in one message.
    """
    message = {"a": "x" * LONG_STRING, "n": 1, "b": "\u00e9\U0001f600\n\"" * (LONG_STRING // 4)}
    line = encodeLongMessage(message, RESPONSE_ID, 3)
    assert isinstance(line, PiecedLine)
    assert bytes(line) == encodeMessageLine(message, RESPONSE_ID, 3)
    assert len(line) == len(bytes(line))


def piecedLine() -> PiecedLine:
    """
    A small L{PiecedLine}: with "long" strings from 20 characters, encoded
    7 at a time (of 26 bytes: 7 pieces between the first and the last).
    """
    line = encodeLongMessage({"data": "abcdefghijklmnopqrstuvwxyz" * 2})
    assert isinstance(line, PiecedLine)
    return line


def test_handedOverPieceByPiece(smallPieces: str) -> None:
    """
    L{OutgoingLines} hands a L{PiecedLine} over a piece per drain of the
    transport, counts what waits of it exactly, and writes the lines
    queued behind it after it.
    """
    transport = FillingTransport()
    outgoing = transport.outgoing
    line = piecedLine()
    assert len(line) > CHUNK
    outgoing.writeLine(line)
    outgoing.writeLine(b"next\n")
    assert transport.written == [b'{"data":"']
    assert outgoing.waiting == len(line) - 9 + 5
    while outgoing.waiting:
        transport.drain()
    assert b"".join(transport.written) == bytes(line) + b"next\n"
    assert transport.written[1] == b"abcdefg"
    assert transport.written[-1] == b"next\n"


def test_queuedFlushedAndDropped(smallPieces: str) -> None:
    """
    A L{PiecedLine} queued behind another line, or partly handed over, is
    written out whole by C{flush} (before a clean close), and dropped by
    C{stopProducing}.
    """
    transport = FillingTransport()
    outgoing = transport.outgoing
    line = piecedLine()
    outgoing.writeLine(line)
    transport.drain()
    outgoing.writeLine(line)
    outgoing.flush()
    assert b"".join(transport.written) == bytes(line) * 2
    assert outgoing.waiting == 0

    transport = FillingTransport()
    transport.outgoing.writeLine(b"x" * 25 + b"\n")
    transport.outgoing.writeLine(piecedLine())
    transport.outgoing.stopProducing()
    assert transport.outgoing.waiting == 0
    for _ in range(10):
        transport.drain()
    assert transport.written == [b"x" * CHUNK]


class _RecordingTransport:
    """
    Stands for the protocol as the session's transport: records each line
    the session writes, then hands it to the protocol's C{writeLine} as it
    is at that moment (a batch's collector, or the writer).
    """

    def __init__(self, protocol: Any, written: List[Any]) -> None:
        self._protocol = protocol
        self._written = written

    def writeLine(self, line: Any) -> None:
        self._written.append(line)
        self._protocol.writeLine(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)


def recordLines(protocol: Any) -> List[Any]:
    """
    @return: a list to which each line the session writes through
        C{protocol} is appended, as it is written.
    """
    written: List[Any] = []
    protocol.session._transport = _RecordingTransport(protocol, written)
    return written


def test_connectionSwitchesAfterLongLine() -> None:
    """
    A connection encodes messages whole until it has sent a line longer
    than L{LONG_STRING}; from then on, messages with long strings are
    pieced -- one-way messages, requests and responses alike.  The peer
    receives the same bytes either way.
    """
    clock = Clock()
    protocol, transport = authenticatedClient(clock)
    written = recordLines(protocol)
    half, whole, other = "h" * (LONG_STRING // 2), "w" * LONG_STRING, "o" * LONG_STRING
    protocol.send({"data": half})
    protocol.request({"data": whole})  # the first line over LONG_STRING
    protocol.request({"data": other})
    protocol.send({"data": half, "more": other})
    protocol.send({"short": 1})
    assert [type(line) for line in written] == [bytes, bytes, PiecedLine, PiecedLine, bytes]
    assert transport.lines() == [
        b'{"data":"%s"}' % half.encode(), b'{"data":"%s","requestId":1}' % whole.encode(),
        b'{"data":"%s","requestId":2}' % other.encode(),
        b'{"data":"%s","more":"%s"}' % (half.encode(), other.encode()), b'{"short":1}']

    server, serverTransport = authenticatedServer(clock)
    written = recordLines(server)
    server.requestReceived = lambda request: {"echo": request["data"]}
    for requestId, data in enumerate([half, whole, other], 1):
        server.dataReceived(b'{"data":"%s","requestId":%d}\n' % (data.encode(), requestId))
    assert [type(line) for line in written] == [bytes, bytes, PiecedLine]
    assert serverTransport.lines() == [
        b'{"echo":"%s","responseId":%d}' % (data.encode(), requestId)
        for requestId, data in enumerate([half, whole, other], 1)]


def test_withoutBackpressureWrittenInSequence() -> None:
    """
    With C{maxBufferedBytes=0} (no L{OutgoingLines}), a L{PiecedLine} goes
    to the transport's C{writeSequence}, whole and in order.
    """
    protocol, transport = authenticatedClient(Clock(), maxBufferedBytes=0)
    written = recordLines(protocol)
    first, second = "a" * LONG_STRING, "\u00e9" * LONG_STRING
    protocol.send({"data": first})
    protocol.send({"data": second})
    protocol.send({"after": True})
    assert [type(line) for line in written] == [bytes, PiecedLine, bytes]
    assert transport.lines() == [b'{"data":"%s"}' % first.encode(),
                                 b'{"data":"%s"}' % second.encode(), b'{"after":true}']
