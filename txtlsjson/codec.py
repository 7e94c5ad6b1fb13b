"""
JSON encoding and decoding of single wire messages, free of I/O.

The Node.js peer writes C{JSON.stringify(obj) + "\\n"}: compact JSON, UTF-8,
non-ASCII characters unescaped.  This module produces exactly those bytes
(without the newline, which the framing adds) and reads any valid JSON object
back, refusing what C{JSON.parse} would refuse (C{NaN}, C{Infinity}) and what
would break the framing or the peer.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Dict

from txtlsjson.errors import InvalidMessage, InvalidOutgoingMessage, ReservedKeyError

JSONObject = Dict[str, Any]

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
#: Fixed, so that both codecs (and any call stack) agree on what is too
#: deep; the standard library's own limit depends on the stack in use.
MAX_NESTING = 512

_brackets = re.compile(rb"[\[\]{}]").finditer
_strings = re.compile(rb'"(?:[^"\\]|\\.)*"').sub


def _checkNesting(line: bytes) -> None:
    # Counting brackets is cheap; only a line with many of them is scanned.
    if line.count(b"[") + line.count(b"{") <= MAX_NESTING:
        return
    depth = 0
    for bracket in _brackets(_strings(b"", line)):
        if bracket.group() in b"[{":
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidMessage(
                    f"line is JSON nested more than {MAX_NESTING} deep")
        else:
            depth -= 1


def _refuseConstant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode
_decode = json.JSONDecoder(parse_constant=_refuseConstant).decode


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _decodeStandard(line: bytes) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidMessage(f"line is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        return _decode(text)
    except RecursionError:
        raise InvalidMessage("line is JSON nested too deeply to decode") from None
    except ValueError as e:
        raise InvalidMessage(f"line is not valid JSON ({e})") from None


def _encodeStandard(obj: Any) -> bytes:
    try:
        text = _encode(obj)
    except RecursionError:
        raise InvalidOutgoingMessage("message is nested too deeply to encode") from None
    except (TypeError, ValueError) as e:
        raise InvalidOutgoingMessage(f"message cannot be encoded as JSON: {e}") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOutgoingMessage(
            "message contains a lone surrogate, which is not valid UTF-8") from None


_decodeAny: Callable[[bytes], Any] = _decodeStandard
_encodeAny: Callable[[Any], bytes] = _encodeStandard

#: The codec in use: C{"orjson"} with the C{fast} extra installed, else
#: C{"json"} (the standard library).  Both decode to the same objects and
#: refuse the same input with the same errors; they encode the same bytes
#: except for the notation of some floats (the same value and digits:
#: C{0.000035} against C{3.5e-05}), and orjson also encodes C{uuid.UUID}
#: and C{Enum} members, which json refuses.  Set C{TXTLSJSON_CODEC=json} to
#: use the standard library anyway.
CODEC = "json"

try:
    import orjson
except ImportError:  # the standard library serves alone
    orjson = None  # type: ignore[assignment]

if orjson is not None:
    _orjsonLoads = orjson.loads
    _orjsonDumps = orjson.dumps
    _OrjsonError = orjson.JSONDecodeError
    _OrjsonEncodeError = orjson.JSONEncodeError
    # Where orjson could differ from the standard library, the standard
    # library decides: a run of 19 digits (orjson reads integers beyond 64
    # bits, such as -2**63-1, as floats); and, when encoding, null (orjson
    # writes NaN and Infinity as null where json refuses them).  Both
    # searches are linear and rarely match; a match only means the slower,
    # standard path is taken.  Floats keep their shortest round-trip digits
    # either way; only the notation may differ (0.000035 against 3.5e-05).
    _bigNumber = re.compile(rb"[0-9]{19}").search
    _mayDiffer = re.compile(rb"null").search
    _options = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                | orjson.OPT_PASSTHROUGH_DATACLASS)

    def _refuse(obj: Any) -> Any:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    def _decodeFast(line: bytes) -> Any:
        if _bigNumber(line) is None:
            try:
                return _orjsonLoads(line)
            except _OrjsonError:
                pass
        return _decodeStandard(line)

    def _encodeFast(obj: Any) -> bytes:
        try:
            data: bytes = _orjsonDumps(obj, default=_refuse, option=_options)
        except _OrjsonEncodeError:
            return _encodeStandard(obj)
        if _mayDiffer(data) is not None:
            return _encodeStandard(obj)
        return data

    if os.environ.get("TXTLSJSON_CODEC", "").lower() != "json":
        CODEC = "orjson"
        _decodeAny = _decodeFast
        _encodeAny = _encodeFast


def decodeLine(line: bytes) -> JSONObject:
    """
    Decode one received line (without its C{\\n}) into a JSON object.

    A trailing C{\\r} and surrounding JSON whitespace are accepted.

    @param line: the raw bytes of one line.
    @return: the decoded object.
    @raise InvalidMessage: if the line is not UTF-8, not JSON, not a JSON
        object, or nested more than L{MAX_NESTING} deep.
    """
    _checkNesting(line)
    obj = _decodeAny(line)
    if type(obj) is not dict:
        raise InvalidMessage(f"line is {_describe(obj)}, not a JSON object")
    return obj  # type: ignore[no-any-return]


def encodeObject(obj: JSONObject) -> bytes:
    """
    Encode an object exactly as C{JSON.stringify} would, as UTF-8 bytes.

    @param obj: a JSON-serialisable dict.
    @return: its compact JSON encoding, with no trailing newline.
    @raise InvalidOutgoingMessage: if C{obj} is not a dict or cannot be
        encoded as valid JSON in UTF-8 (unserialisable values, NaN or
        Infinity, circular references, lone surrogates).
    """
    if not isinstance(obj, dict):
        raise InvalidOutgoingMessage(
            f"a message must be a dict (a JSON object), not {type(obj).__name__}"
        )
    return _encodeAny(obj)


def encodeMessage(obj: JSONObject) -> bytes:
    """
    Encode an application message, refusing reserved keys.

    @param obj: the application's dict; it is never mutated.
    @return: the encoded bytes, no trailing newline.
    @raise ReservedKeyError: if C{obj} contains a key in L{RESERVED_KEYS}.
    @raise InvalidOutgoingMessage: as L{encodeObject}.
    """
    if isinstance(obj, dict) and not RESERVED_KEYS.isdisjoint(obj):
        found = ", ".join(sorted(RESERVED_KEYS.intersection(obj)))
        raise ReservedKeyError(
            f"message contains the reserved key(s) {found}; the peer would misread it"
        )
    return encodeObject(obj)


def encodeWithId(obj: JSONObject, key: str, ident: int) -> bytes:
    """
    Encode an application object with an id appended as its last key, as the
    Node peer does (C{obj.requestId = id} then C{JSON.stringify(obj)}).

    The caller's object is not copied or mutated: the id is spliced into the
    encoded bytes.

    @param obj: the application's dict.
    @param key: L{REQUEST_ID} or L{RESPONSE_ID}.
    @param ident: the id.
    @return: the encoded bytes, no trailing newline.
    @raise ReservedKeyError: if C{obj} contains a reserved key.
    @raise InvalidOutgoingMessage: as L{encodeObject}.
    """
    body = encodeMessage(obj)
    suffix = b'"%s":%d}' % (key.encode("ascii"), ident)
    if len(body) == 2:
        return b"{" + suffix
    return body[:-1] + b"," + suffix


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
