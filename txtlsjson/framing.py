"""
Splitting a byte stream into lines, free of I/O.

Twisted's C{LineReceiver} re-searches its whole buffer on every chunk, which
is quadratic on large lines.  L{LineBuffer} searches only the bytes that
arrived since the last search, so the cost is linear in the data received.
"""

from __future__ import annotations

from typing import List, cast

from txtlsjson.errors import LineTooLong
from txtlsjson.wire import DELIMITER, IncomingLine


class LineBuffer:
    """
    Accumulates received bytes and yields complete C{\\n}-terminated lines.

    Only C{\\n} (0x0A) separates lines; a C{\\r} before it stays part of the
    line (JSON treats it as whitespace).  In UTF-8, 0x0A never occurs inside a
    multi-byte character, so splitting on it is always safe.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def __len__(self) -> int:
        """
        @return: the number of buffered bytes not yet part of a complete line.
        """
        return len(self._buffer)

    def feed(self, data: bytes, maxLineLength: int) -> List[IncomingLine]:
        """
        Add received bytes and return every line they complete.

        @param data: the bytes just received.
        @param maxLineLength: the longest acceptable line, in bytes without
            the delimiter.
        @return: the complete lines, in order, without their C{\\n}: bytes,
            or a bytearray for a line that arrived over several chunks (it is
            handed over, not copied).
        @raise LineTooLong: if a line (complete or still growing) exceeds
            C{maxLineLength}.  Its C{lines} attribute holds the complete lines
            that came before the long one, for the caller to deliver, and
            C{line} what had arrived of the long one.  The buffer is
            emptied; the stream cannot be resynchronised, so the caller
            should then close the connection.
        """
        buf = self._buffer
        mayExceed = bool(buf)
        if not buf:
            # Fast path: nothing pending, so the chunk can be split directly.
            # (A list of bytes is a list of lines: cast, not copied.  The
            # type is a string: List[IncomingLine] itself would be built
            # again on every call, which costs 0.7 us a chunk.)
            lines = cast("List[IncomingLine]", data.split(DELIMITER))
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
        limit = maxLineLength
        # Lines cut from a chunk within the limit cannot exceed it: only a
        # big chunk, or a line completed from the buffer, needs measuring.
        if lines and (mayExceed or len(data) > limit) and max(map(len, lines)) > limit:
            buf.clear()
            for index, line in enumerate(lines):
                if len(line) > limit:
                    raise LineTooLong(
                        f"line of {len(line)} bytes exceeds the limit of {limit} bytes",
                        lines[:index], line)
        if len(buf) > limit:
            # Handed over whole rather than copied: it is the caller's now.
            self._buffer = bytearray()
            raise LineTooLong(f"line exceeds the limit of {limit} bytes", lines, buf)
        return lines

    def clear(self) -> bytes:
        """
        Empty the buffer.

        @return: the bytes it held (the start of a line not yet complete).
        """
        held = bytes(self._buffer)
        self._buffer = bytearray()
        return held
