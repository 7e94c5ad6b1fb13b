"""
C{LineReceiver}'s contract, as a Twisted user relies on it: C{lineReceived}
receives every line and may be overridden, C{MAX_LENGTH} is the limit in
force, C{lineLengthExceeded} is called past it, C{sendLine} writes a line.
In memory, with a L{Clock}.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.task import Clock
from twisted.protocols.basic import LineReceiver

from txtlsjson.errors import InvalidOutgoingMessage, LineTooLong
from txtlsjson.protocol import TLSJSONServerFactory, TLSJSONServerProtocol
from txtlsjson.settings import UNAUTHENTICATED_MAX_LINE_LENGTH
from txtlsjson.wire import IncomingLine

from .helpers import authenticatedServer, connectProtocol


class Recording(TLSJSONServerProtocol):
    """
    Sees every line before the session does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.lines: List[IncomingLine] = []
        self.messages: List[Any] = []
        self.errors: List[Exception] = []

    def lineReceived(self, line: IncomingLine) -> None:
        self.lines.append(bytes(line))
        super().lineReceived(line)

    def messageReceived(self, message: Any) -> None:
        self.messages.append(message)

    def errorReceived(self, error: Any) -> None:
        self.errors.append(error)


def recording(clock: Clock, **settings: Any) -> Any:
    factory = TLSJSONServerFactory("pw", reactor=clock, **settings)
    factory.protocol = Recording
    return connectProtocol(factory)


def test_isALineReceiver() -> None:
    """
    The protocols are C{LineReceiver}s with its delimiter.
    """
    protocol, _ = authenticatedServer(Clock())
    assert isinstance(protocol, LineReceiver)
    assert protocol.delimiter == b"\n"


def test_lineReceivedOverridden() -> None:
    """
    An override of C{lineReceived} sees every line, the password's too, in
    order and without its delimiter, however the bytes are cut; calling up
    hands each to the session.
    """
    protocol, transport = recording(Clock())
    stream = b'{"password":"pw"}\n{"a":1}\n{"b":2}\n'
    for start in range(0, len(stream), 5):
        protocol.dataReceived(stream[start:start + 5])
    assert protocol.lines == [b'{"password":"pw"}', b'{"a":1}', b'{"b":2}']
    assert protocol.messages == [{"a": 1}, {"b": 2}]
    assert transport.lines() == [b'{"authenticated":true}']


def test_maxLength() -> None:
    """
    C{MAX_LENGTH} is 64 KiB until the password step is done, then
    C{maxLineLength}; assigning it changes the limit for this connection.
    """
    protocol, transport = recording(Clock(), maxLineLength=1000 * 1000)
    assert protocol.MAX_LENGTH == UNAUTHENTICATED_MAX_LINE_LENGTH
    protocol.dataReceived(b'{"password":"pw"}\n')
    assert protocol.MAX_LENGTH == 1000 * 1000
    protocol.MAX_LENGTH = 20
    protocol.dataReceived(b'{"short":1}\n')
    assert protocol.messages == [{"short": 1}]
    protocol.dataReceived(b'{"long":"' + b"x" * 20 + b'"}\n')
    assert protocol.messages == [{"short": 1}]
    assert isinstance(protocol.errors[-1], LineTooLong)
    assert "limit of 20 bytes" in str(protocol.errors[-1])
    assert transport.disconnecting


def test_lineLengthExceededOverridden() -> None:
    """
    C{lineLengthExceeded} is given what arrived of the long line, after the
    lines before it were delivered; an override decides what happens.
    """
    class Lenient(Recording):
        def lineLengthExceeded(self, line: IncomingLine) -> None:
            self.tooLong = bytes(line)

    factory = TLSJSONServerFactory("pw", reactor=Clock())
    factory.protocol = Lenient
    protocol: Any
    protocol, transport = connectProtocol(factory)
    protocol.dataReceived(b'{"password":"pw"}\n')
    protocol.MAX_LENGTH = 10
    protocol.dataReceived(b'{"a":1}\n' + b"y" * 12)
    assert protocol.messages == [{"a": 1}]
    assert protocol.tooLong == b"y" * 12
    assert not transport.disconnecting
    protocol.dataReceived(b'{"b":2}\n')
    assert protocol.messages == [{"a": 1}, {"b": 2}]


def test_sendLine() -> None:
    """
    C{sendLine} writes a line and the delimiter; a line holding the
    delimiter is refused and nothing is written.
    """
    protocol, transport = authenticatedServer(Clock())
    protocol.sendLine(b'{"raw":true}')
    assert transport.lines() == [b'{"raw":true}']
    with pytest.raises(InvalidOutgoingMessage):
        protocol.sendLine(b'{"a":1}\n{"b":2}')
    assert transport.value() == b""


def test_clearLineBuffer() -> None:
    """
    C{clearLineBuffer} hands back and forgets an incomplete line.
    """
    protocol, _ = recording(Clock())
    protocol.dataReceived(b'{"password":"pw"}\n{"partial"')
    assert protocol.clearLineBuffer() == b'{"partial"'
    protocol.dataReceived(b'{"whole":1}\n')
    assert protocol.messages == [{"whole": 1}]
