"""
Long strings encoded as they are sent, free of I/O.

Encoded whole, a message with a string of megabytes costs more per byte
than a short one: the fast codec takes scratch memory of many times the
string, more than the C library keeps for reuse, so every page of it is a
page fault; the line goes through memory once more to be cut into pieces
for TLS; and sending starts only once all of it is encoded.  A
L{PiecedLine} encodes such a string a slice at a time, as the pieces are
handed to the transport (figures in C{benchmarks/RESULTS.rst}).
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Union

from txtlsjson.codec import STRING_ERRORS, encodeMessageLine, encodeString, encodeValue
from txtlsjson.errors import InvalidOutgoingMessage
from txtlsjson.wire import RESERVED_KEYS, JSONObject

#: A string value of a message this long or longer (in characters) makes
#: L{encodeLongMessage} encode it as it is sent (see L{PiecedLine}).
LONG_STRING = 2 * 1024 * 1024

#: Characters of a long string encoded at a time: pieces of 64 KiB when the
#: string is ASCII, the size L{txtlsjson.outgoing} hands to TLS.
_STRING_PIECE = 64 * 1024


def _stringPieces(text: str) -> Iterator[bytes]:
    """
    The JSON encoding of C{text}, without its quotes, in pieces of
    L{_STRING_PIECE} characters.
    """
    for start in range(0, len(text), _STRING_PIECE):
        yield encodeString(text[start:start + _STRING_PIECE])


class PiecedLine:
    """
    An encoded line whose long strings are encoded only as the line is sent,
    a piece at a time: it never exists whole, and sending it can start at
    once.  Its length is known exactly (each long string was encoded once,
    piece by piece, to measure it and to find what cannot be encoded).

    @ivar length: the length of the line, in bytes; also C{len(line)}.
    """

    __slots__ = ("_parts", "length")

    def __init__(self, parts: List[Union[bytes, str]], length: int) -> None:
        """
        @param parts: encoded bytes, and the long strings to encode between
            them (without their quotes, which the bytes hold).
        @param length: the length of the whole line.
        """
        self._parts = parts
        self.length = length

    def __len__(self) -> int:
        return self.length

    def pieces(self) -> Iterator[bytes]:
        """
        @return: the line's bytes in order, encoding the long strings as
            they are asked for.
        """
        for part in self._parts:
            if isinstance(part, str):
                yield from _stringPieces(part)
            else:
                yield part

    def __bytes__(self) -> bytes:
        return b"".join(self.pieces())


#: One encoded line to send, its delimiter included: bytes, or a
#: L{PiecedLine} whose long strings are encoded as it is sent.
OutgoingLine = Union[bytes, PiecedLine]


def _encodePieced(obj: JSONObject, idKey: Optional[str], ident: int) -> OutgoingLine:
    """
    L{encodeMessageLine}'s line for a dict with a long string among its
    values, as a L{PiecedLine}: the other values are encoded together now,
    with the id appended to the last of them.
    """
    parts: List[Union[bytes, str]] = []
    length = 0
    before = b"{"  # what goes before the next value's key
    run: JSONObject = {}  # values encoded together, up to a long string
    try:
        for key, value in obj.items():
            if type(value) is not str or len(value) < LONG_STRING or type(key) is not str:
                run[key] = value
                continue
            if run:
                before += encodeValue(run)[1:-2] + b","
                run = {}
            before += b'"' + encodeString(key) + b'":"'
            parts += (before, value)
            length += len(before) + sum(map(len, _stringPieces(value)))
            before = b'",'
        if idKey is not None:
            run[idKey] = ident
        last = before + encodeValue(run)[1:-2] + b"}\n" if run else b'"}\n'
    except (InvalidOutgoingMessage,) + STRING_ERRORS:
        # The line encoded whole says why it cannot be encoded.
        return encodeMessageLine(obj, idKey, ident)
    parts.append(last)
    return PiecedLine(parts, length + len(last))


def encodeLongMessage(obj: JSONObject, idKey: Optional[str] = None,
                      ident: int = 0) -> OutgoingLine:
    """
    L{encodeMessageLine}, but a message with a string of L{LONG_STRING}
    characters or more among its values becomes a L{PiecedLine}, which
    encodes that string as it is sent.  Its bytes are those of the message
    encoded whole -- with the fast codec, but for the notation of a float
    (see L{CODEC<txtlsjson.codec.CODEC>}), as the fast codec may hand part
    of a message rather than all of it to the standard library.

    The price is a look at each value of every message, which is why a
    session only starts using this function once it has sent a long line.

    @return: the line, as bytes or as a L{PiecedLine}.
    @raise ReservedKeyError: as L{encodeMessageLine}.
    @raise InvalidOutgoingMessage: as L{encodeMessageLine}.
    """
    if type(obj) is dict:
        for value in obj.values():
            if type(value) is str and len(value) >= LONG_STRING:
                # Reserved keys: encodeMessageLine refuses them, below.
                if RESERVED_KEYS.isdisjoint(obj):
                    return _encodePieced(obj, idKey, ident)
                break
    return encodeMessageLine(obj, idKey, ident)
