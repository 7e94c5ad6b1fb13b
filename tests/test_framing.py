"""
Tests for L{txtlsjson.framing}.
"""

from __future__ import annotations

import pytest

from txtlsjson.errors import LineTooLong
from txtlsjson.framing import LineBuffer

STREAM = (
    '{"a":1}\n'
    '{"text":"h\u00e9llo \u4e16\u754c \U0001f600"}\r\n'
    "\n"
    '{"b":[1,2,3]}\n'
).encode("utf-8")
EXPECTED = [
    b'{"a":1}',
    '{"text":"h\u00e9llo \u4e16\u754c \U0001f600"}\r'.encode("utf-8"),
    b"",
    b'{"b":[1,2,3]}',
]


@pytest.mark.parametrize("offset", range(len(STREAM) + 1))
def test_splitAtEveryOffset(offset: int) -> None:
    """
    However the stream is cut in two -- inside a line, next to a delimiter,
    inside a multi-byte UTF-8 character -- the same lines come out, once
    each, in order.
    """
    buffer = LineBuffer()
    lines = buffer.feed(STREAM[:offset], 1000) + buffer.feed(STREAM[offset:], 1000)
    assert lines == EXPECTED
    assert len(buffer) == 0


def test_byteByByte() -> None:
    """
    Feeding one byte at a time yields the same lines.
    """
    buffer = LineBuffer()
    lines = []
    for i in range(len(STREAM)):
        lines.extend(buffer.feed(STREAM[i : i + 1], 1000))
    assert lines == EXPECTED


def test_partialLineKept() -> None:
    """
    Bytes after the last delimiter wait for the rest of their line.
    """
    buffer = LineBuffer()
    assert buffer.feed(b'{"a":1}\n{"b"', 1000) == [b'{"a":1}']
    assert len(buffer) == 4
    assert buffer.feed(b":2}\n", 1000) == [b'{"b":2}']


def test_onlyNewlineSplits() -> None:
    """
    A lone C{\\r} (or any other byte) does not end a line.
    """
    buffer = LineBuffer()
    assert buffer.feed(b'{"a":"x\ry"}\r{"b":1}\n', 1000) == [b'{"a":"x\ry"}\r{"b":1}']


def test_lineAtLimitAccepted() -> None:
    """
    A line of exactly C{maxLineLength} bytes is accepted.
    """
    buffer = LineBuffer()
    assert buffer.feed(b"x" * 10 + b"\n", 10) == [b"x" * 10]


def test_completeLineOverLimit() -> None:
    """
    A complete line over the limit raises L{LineTooLong}, carrying the lines
    before it; the buffer is emptied.
    """
    buffer = LineBuffer()
    with pytest.raises(LineTooLong) as info:
        buffer.feed(b"short\n" + b"x" * 11 + b"\nafter\n", 10)
    assert info.value.lines == [b"short"]
    assert info.value.line == b"x" * 11
    assert "11 bytes exceeds the limit of 10" in str(info.value)
    assert len(buffer) == 0


def test_partialLineOverLimit() -> None:
    """
    A line still growing past the limit raises at once, without waiting for
    its end: memory stays bounded.
    """
    buffer = LineBuffer()
    assert buffer.feed(b"x" * 6, 10) == []
    with pytest.raises(LineTooLong) as info:
        buffer.feed(b"x" * 5, 10)
    assert info.value.lines == []
    assert info.value.line == b"x" * 11
    assert len(buffer) == 0


def test_partialOverLimitAfterCompleteLines() -> None:
    """
    Complete lines before an over-long partial one are handed over with the
    error.
    """
    buffer = LineBuffer()
    with pytest.raises(LineTooLong) as info:
        buffer.feed(b"one\ntwo\n" + b"x" * 11, 10)
    assert info.value.lines == [b"one", b"two"]


def test_limitCanBeRaised() -> None:
    """
    The limit may change between feeds (the protocol lifts it after
    authentication): a line started under the old one is measured against
    the new one.
    """
    buffer = LineBuffer()
    assert buffer.feed(b"1234", 4) == []
    assert buffer.feed(b"5678\n", 8) == [b"12345678"]


def test_clear() -> None:
    """
    L{LineBuffer.clear} hands back and forgets the start of a line.
    """
    buffer = LineBuffer()
    assert buffer.feed(b"one\ntw", 10) == [b"one"]
    assert buffer.clear() == b"tw"
    assert len(buffer) == 0
    assert buffer.feed(b"o\n", 10) == [b"o"]
