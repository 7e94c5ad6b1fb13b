"""
Splitting a byte stream into lines, free of I/O.

Twisted's C{LineReceiver} re-searches its whole buffer on every chunk, which
is quadratic on large lines.  L{LineBuffer} searches only the bytes that
arrived since the last search, so the cost is linear in the data received.
"""

from __future__ import annotations

from typing import List, Union

from txtlsjson.errors import LineTooLong

Line = Union[bytes, bytearray]

DELIMITER = b"\n"


class LineBuffer:
    """
    Accumulates received bytes and yields complete C{\\n}-terminated lines.

    Only C{\\n} (0x0A) separates lines; a C{\\r} before it stays part of the
    line (JSON treats it as whitespace).  In UTF-8, 0x0A never occurs inside a
    multi-byte character, so splitting on it is always safe.

    @ivar maxLineLength: the longest line, in bytes without the delimiter,
        that L{feed} accepts.
    """

    def __init__(self, maxLineLength: int) -> None:
        """
        @param maxLineLength: the longest acceptable line, in bytes.
        """
        self.maxLineLength = maxLineLength
        self._buffer = bytearray()

    def __len__(self) -> int:
        """
        @return: the number of buffered bytes not yet part of a complete line.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> List[Line]:
        """
        Add received bytes and return every line they complete.

        @param data: the bytes just received.
        @return: the complete lines, in order, without their C{\\n}: bytes,
            or a bytearray for a line that arrived over several chunks (it is
            handed over, not copied).
        @raise LineTooLong: if a line (complete or still growing) exceeds
            L{maxLineLength}.  Its C{lines} attribute holds the complete lines
            that came before the long one, for the caller to deliver.  The
            buffer is cleared; the stream cannot be resynchronised, so the
            caller should then close the connection.
        """
        buf = self._buffer
        mayExceed = bool(buf)
        if not buf:
            # Fast path: nothing pending, so the chunk can be split directly.
            lines: List[Line] = data.split(DELIMITER)  # type: ignore[assignment]
            rest = lines.pop()
            if rest:
                buf += rest
        else:
            start = len(buf)
            buf += data
            end = buf.find(DELIMITER, start)
            if end == -1:
                lines = []
            elif end == len(buf) - 1:
                # The chunk ends the pending line and nothing follows, as it
                # does for a big message: hand the buffer itself over rather
                # than copy megabytes out of it.
                del buf[end:]
                lines = [buf]
                self._buffer = bytearray()
            else:
                with memoryview(buf) as view:
                    lines = [bytes(view[:end])]
                    lines.extend(bytes(view[end + 1 :]).split(DELIMITER))
                rest = lines.pop()
                buf.clear()
                buf += rest
            buf = self._buffer
        limit = self.maxLineLength
        # Lines cut from a chunk within the limit cannot exceed it: only a
        # big chunk, or a line completed from the buffer, needs measuring.
        if lines and (mayExceed or len(data) > limit) and max(map(len, lines)) > limit:
            buf.clear()
            for index, line in enumerate(lines):
                if len(line) > limit:
                    raise LineTooLong(
                        f"line of {len(line)} bytes exceeds the limit of {limit} bytes",
                        lines[:index],
                    )
        if len(buf) > limit:
            buf.clear()
            raise LineTooLong(f"line exceeds the limit of {limit} bytes", lines)
        return lines
