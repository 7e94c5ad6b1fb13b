"""
The vocabulary of the tls-json wire, free of I/O and of any JSON library.

One message is one line: C{JSON.stringify(obj) + "\\n"} in UTF-8.  A few
keys mean something to the protocol; everything else belongs to the
application.  The Node.js peer decides with JavaScript's truthiness what a
key's value means, so this module says what a value is worth as the peer
would read it.
"""

from __future__ import annotations

from typing import Any, Dict, Union

#: A decoded message: a JSON object.
JSONObject = Dict[str, Any]

#: A received line, without its delimiter: bytes, or a bytearray for a line
#: that arrived over several chunks (handed over, not copied).
IncomingLine = Union[bytes, bytearray]

#: What separates messages.  In UTF-8, 0x0A never occurs inside a
#: multi-byte character, so splitting on it is always safe.
DELIMITER = b"\n"

REQUEST_ID = "requestId"
RESPONSE_ID = "responseId"
PING = "__ping"
PONG = "__pong"

#: Keys the protocol gives a meaning to; an application object carrying one
#: of them would be misread by the peer.
RESERVED_KEYS = frozenset((REQUEST_ID, RESPONSE_ID, PING, PONG))

#: The largest id a JavaScript peer can hold exactly (C{Number.MAX_SAFE_INTEGER}).
MAX_SAFE_INTEGER = 2**53 - 1

#: The deepest nesting of arrays and objects accepted in a received line.
MAX_NESTING = 1024

#: The server's answers in the password step, as the Node peer writes them.
AUTHENTICATED_LINE = b'{"authenticated":true}\n'
INCORRECT_PASSWORD_LINE = b'{"error":"incorrect password"}\n'
TOO_MANY_ATTEMPTS_LINE = b'{"error":"too many authentication attempts"}\n'


def isTruthy(value: object) -> bool:
    """
    JavaScript truthiness of a decoded JSON value, which decides dispatch on
    the Node peer: C{0}, C{""}, C{null} and C{false} are falsy; unlike Python,
    empty arrays and objects are truthy.
    """
    if value is None or value is False or value == "":
        return False
    if type(value) is int or type(value) is float:
        return value != 0
    return True


def isValidId(value: object) -> bool:
    """
    Whether C{value} is an id this protocol issues: an integer (not a
    boolean) from 1 to L{MAX_SAFE_INTEGER}.
    """
    return type(value) is int and 0 < value <= MAX_SAFE_INTEGER


def pingLine(number: int) -> bytes:
    """
    The server's keepalive ping C{number}, encoded.
    """
    return b'{"__ping":%d}\n' % (number,)


def pongLine(number: int) -> bytes:
    """
    The client's answer to ping C{number}, encoded.
    """
    return b'{"__pong":%d}\n' % (number,)
