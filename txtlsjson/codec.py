"""
The JSON backend: one wire message encoded and decoded, free of I/O.

The Node.js peer writes C{JSON.stringify(obj) + "\\n"}: compact JSON, UTF-8,
non-ASCII characters unescaped.  This module produces exactly those bytes,
newline included, and reads any valid JSON object back, refusing what
C{JSON.parse} would refuse (C{NaN}, C{Infinity}) and what would break the
framing or the peer.

Two codecs give the same results: the standard library's C{json}, which
always works, and the C{fast} extra -- C{orjson} and C{msgspec}, each where
it is faster -- used when installed unless C{TXTLSJSON_CODEC=json}.
Wherever they could differ, the standard library decides (see L{CODEC}).

Big messages are touched as few times as possible: every pass over a 16 MiB
line costs more than the whole of a small one.  What the wire's keys mean
lives in L{txtlsjson.wire}; long strings encoded as they are sent, in
L{txtlsjson.pieced}.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from types import ModuleType
from typing import Any, Callable, Optional, Sized, Tuple, Type

from txtlsjson.errors import InvalidMessage, InvalidOutgoingMessage, ReservedKeyError
from txtlsjson.wire import MAX_NESTING, RESERVED_KEYS, IncomingLine, JSONObject

_brackets = re.compile(rb"[\[\]{}]").finditer
_strings = re.compile(rb'"(?:[^"\\]|\\.)*"').sub


def _measureNesting(line: IncomingLine) -> None:
    """
    Raise L{InvalidMessage} if C{line} nests deeper than L{MAX_NESTING}
    (brackets inside strings do not count).
    """
    depth = 0
    for bracket in _brackets(_strings(b"", line)):
        if bracket.group() in b"[{":
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidMessage(f"line is JSON nested more than {MAX_NESTING} deep")
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


def _decodeStandard(line: IncomingLine, brackets: int = 0) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidMessage(f"line is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    limit = sys.getrecursionlimit()
    if brackets > 256:
        # Room for MAX_NESTING levels of the decoder's recursion on top of
        # the caller's stack.
        sys.setrecursionlimit(limit + MAX_NESTING + 100)
    try:
        return _decode(text)
    except RecursionError:
        raise InvalidMessage("line is JSON nested too deeply to decode") from None
    except ValueError as e:
        raise InvalidMessage(f"line is not valid JSON ({e})") from None
    finally:
        if brackets > 256:
            sys.setrecursionlimit(limit)


def _notAnObject(obj: Any) -> InvalidMessage:
    return InvalidMessage(f"line is {_describe(obj)}, not a JSON object")


def _decodeLineStandard(line: IncomingLine) -> JSONObject:
    brackets = line.count(b"[") + line.count(b"{")
    if brackets > MAX_NESTING:
        _measureNesting(line)
    obj: JSONObject = _decodeStandard(line, brackets)
    if type(obj) is not dict:
        raise _notAnObject(obj)
    return obj


def _encodeStandard(obj: Any) -> bytes:
    try:
        text = _encode(obj)
    except RecursionError:
        raise InvalidOutgoingMessage("message is nested too deeply to encode") from None
    except (TypeError, ValueError) as e:
        raise InvalidOutgoingMessage(f"message cannot be encoded as JSON: {e}") from None
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOutgoingMessage(
            "message contains a lone surrogate, which is not valid UTF-8") from None


_decodeLine: Callable[[IncomingLine], JSONObject] = _decodeLineStandard
_encodeAny: Callable[[Any], bytes] = _encodeStandard


def _optional(name: str) -> Optional[ModuleType]:
    """
    The module C{name} of the C{fast} extra, or L{None} where it is not
    installed.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


#: The codec in use: C{"json"} (the standard library) or the fast libraries
#: of the C{fast} extra that are installed, C{"orjson+msgspec"} with both:
#: orjson encodes, msgspec decodes all lines but those from 64 KiB to 2 MiB,
#: which orjson decodes faster (see C{_HUGE_LINE}).  Either way the same
#: objects are decoded and the same input refused with the same errors; the
#: same bytes are encoded except for the notation of some floats (the same
#: value and digits: C{0.000035} against C{3.5e-05}), and orjson also
#: encodes C{uuid.UUID} and C{Enum} members, which json refuses.  Set
#: C{TXTLSJSON_CODEC=json} to use the standard library anyway.
CODEC = "json"

# Without orjson the standard library encodes; without either, it decodes.
orjson = _optional("orjson")
msgspec = _optional("msgspec")

#: Above this size a line or an encoded message is checked through the
#: object (cheap when it is a flat dict, as big messages usually are) rather
#: than by scanning all its bytes once more.
_BIG = 64 * 1024

#: With both fast libraries, lines from L{_BIG} up to this size are decoded
#: by orjson, all others by msgspec.  msgspec needs no check of what it
#: decodes, which makes a short line about twice as cheap (figures in
#: C{benchmarks/RESULTS.rst}).  For long lines the two cost the same per byte in
#: isolation, but orjson takes scratch memory of about twelve times the
#: line, and that decides which is faster in a running server:
#:   - below this size, freeing that scratch raises glibc's threshold for
#:     keeping freed memory, so the memory of one line is reused for the
#:     next; msgspec alone leaves the heap small, glibc hands the memory
#:     back to the kernel after every line and the next faults it in again;
#:   - from about 2.7 MiB the scratch exceeds the 32 MiB glibc ever keeps,
#:     every line maps fresh memory that the kernel zeroes page by page,
#:     and orjson's cost per byte triples where msgspec's does not.
_HUGE_LINE = 2 * 1024 * 1024

if msgspec is not None:
    _msgspecDecode = msgspec.json.Decoder().decode
    # What msgspec fails on -- bad UTF-8, bad JSON, nesting beyond the
    # recursion limit, and the few valid lines it refuses (numbers beyond a
    # float's range, escaped lone surrogates) -- goes to the standard
    # library, which decides and says why.
    _MsgspecDecodeErrors = (msgspec.DecodeError, ValueError, RecursionError)

    def _decodeLineMsgspec(line: IncomingLine) -> JSONObject:
        # What msgspec decodes, the standard library decodes alike: integers
        # of any size exactly, floats correctly rounded, NaN and Infinity
        # refused.  No check is needed.
        try:
            obj: JSONObject = _msgspecDecode(line)
        except _MsgspecDecodeErrors:
            return _decodeLineStandard(line)
        if type(obj) is not dict:
            raise _notAnObject(obj)
        return obj

if orjson is not None:
    _orjsonLoads = orjson.loads
    _orjsonDumps = orjson.dumps
    _OrjsonError = orjson.JSONDecodeError
    _OrjsonEncodeError = orjson.JSONEncodeError
    _options = (orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_APPEND_NEWLINE)

    # Where orjson could differ from the standard library, the standard
    # library decides: a run of 19 digits (orjson reads integers beyond 64
    # bits, such as -2**63-1, as floats); and, when encoding, null (orjson
    # writes NaN and Infinity as null where json refuses them).  Any orjson
    # error, too, goes to the standard library, so that both refuse the same
    # input with the same message.  Floats keep their shortest round-trip
    # digits either way; only the notation may differ.
    #
    # Digits become "1", everything else NUL: a run of 19 digits is then a
    # plain substring search, an order of magnitude faster than a regular
    # expression without a literal prefix.  Searches use bytes.find, not
    # "in": CPython's bytes.__contains__ first tries its operand as an
    # integer and clears the TypeError, which costs more than the search.
    # Nesting needs no check here: orjson refuses what is deeper than
    # MAX_NESTING, and the standard library then says why.
    _digitTable = bytes(0x31 if 0x30 <= c <= 0x39 else 0 for c in range(256))
    _nineteenDigits = b"1" * 19

    def _refuse(obj: Any) -> Any:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    _scalars = (str, int, bool, type(None))

    def _flat(obj: Any) -> bool:
        """
        Whether C{obj} is a dict of strings, integers, booleans and nulls
        only: no float (which a too-big integer would have become, or which
        could be NaN) can hide in it.
        """
        scalars = _scalars
        return type(obj) is dict and all(type(v) in scalars for v in obj.values())

    def _decodeLineOrjson(line: IncomingLine) -> JSONObject:
        obj: JSONObject
        if len(line) < _BIG:
            if line.translate(_digitTable).find(_nineteenDigits) != -1:
                return _decodeLineStandard(line)
            try:
                obj = _orjsonLoads(line)
            except _OrjsonError:
                return _decodeLineStandard(line)
        else:
            try:
                obj = _orjsonLoads(line)
            except _OrjsonError:
                return _decodeLineStandard(line)
            # A big integer would have been read as a float: with none in a
            # flat result, there was none; otherwise look at the digits.
            if not _flat(obj) and line.translate(_digitTable).find(_nineteenDigits) != -1:
                return _decodeLineStandard(line)
        if type(obj) is not dict:
            raise _notAnObject(obj)
        return obj

    def _encodeFast(obj: Any) -> bytes:
        try:
            data: bytes = _orjsonDumps(obj, default=_refuse, option=_options)
        except _OrjsonEncodeError:
            return _encodeStandard(obj)
        # bytes.partition, not find: it takes its one argument directly
        # where find parses a tuple of three, a third less for a short line
        # (RESULTS.rst).  When it finds "null" it copies the line's two
        # sides, but the line is then encoded again anyway.
        if (len(data) < _BIG or not _flat(obj)) and data.partition(b"null")[1]:
            return _encodeStandard(obj)
        return data

_decodeLineFast: Optional[Callable[[IncomingLine], JSONObject]] = None
if orjson is not None and msgspec is not None:

    def _decodeLineFast(line: IncomingLine) -> JSONObject:
        # Each line to the faster of the two, by its size: see _HUGE_LINE.
        # _decodeLineMsgspec's body is repeated here rather than called: the
        # call would cost a quarter of a short line's decoding (RESULTS.rst).
        if _BIG <= len(line) < _HUGE_LINE:
            return _decodeLineOrjson(line)
        try:
            obj: JSONObject = _msgspecDecode(line)
        except _MsgspecDecodeErrors:
            return _decodeLineStandard(line)
        if type(obj) is not dict:
            raise _notAnObject(obj)
        return obj

elif orjson is not None:
    _decodeLineFast = _decodeLineOrjson
elif msgspec is not None:
    _decodeLineFast = _decodeLineMsgspec

if os.environ.get("TXTLSJSON_CODEC", "").lower() != "json":
    if orjson is not None:
        _encodeAny = _encodeFast
    if _decodeLineFast is not None:
        _decodeLine = _decodeLineFast
    CODEC = "+".join(name for name, module in (("orjson", orjson), ("msgspec", msgspec))
                     if module is not None) or "json"


#: Lines shorter than this may be decoded by L{decodeShortLine}.
SHORT_LINE = _BIG

#: The hot path's decoder for a line shorter than L{SHORT_LINE}: with
#: msgspec, msgspec's own decoder, which costs no call of Python code.  It
#: returns the line's JSON value, whatever its type, or raises one of
#: L{SHORT_LINE_ERRORS}.  A dict it returns is what L{decodeLine} would
#: return; for anything else (another type, an error) call L{decodeLine},
#: which decides and says why.  Without msgspec, it is L{decodeLine}.
decodeShortLine: Callable[[IncomingLine], Any] = _decodeLine
SHORT_LINE_ERRORS: Tuple[Type[Exception], ...] = (InvalidMessage,)
if msgspec is not None and _decodeLine in (_decodeLineFast, _decodeLineMsgspec):
    decodeShortLine = _msgspecDecode
    SHORT_LINE_ERRORS = _MsgspecDecodeErrors + (InvalidMessage,)

decodeLine = _decodeLine
decodeLine.__doc__ = """
    Decode one received line (without its C{\\n}) into a JSON object.

    A trailing C{\\r} and surrounding JSON whitespace are accepted.

    @param line: the raw bytes of one line (a C{bytearray} will do).
    @return: the decoded object.
    @raise InvalidMessage: if the line is not UTF-8, not JSON, not a JSON
        object, or nested more than L{MAX_NESTING} deep.
    """


def _notADict(obj: object) -> InvalidOutgoingMessage:
    return InvalidOutgoingMessage(
        f"a message must be a dict (a JSON object), not {type(obj).__name__}")


def encodeLine(obj: JSONObject) -> bytes:
    """
    Encode an object exactly as C{JSON.stringify(obj) + "\\\\n"} would, as
    UTF-8 bytes.

    @param obj: a JSON-serialisable dict.
    @return: its compact JSON encoding and a newline.
    @raise InvalidOutgoingMessage: if C{obj} is not a dict or cannot be
        encoded as valid JSON in UTF-8 (unserialisable values, NaN or
        Infinity, circular references, lone surrogates).
    """
    if not isinstance(obj, dict):
        raise _notADict(obj)
    return _encodeAny(obj)


def encodeMessageLine(obj: JSONObject, idKey: Optional[str] = None, ident: int = 0) -> bytes:
    """
    Encode an application message as a line, refusing reserved keys, with an
    id appended as its last key if C{idKey} is given -- as the Node peer does
    (C{obj.requestId = id} then C{JSON.stringify(obj)}).

    The caller's object is not modified: the id goes into a shallow copy,
    which shares the values (a 16 MiB string is not copied).

    @param obj: the application's dict.
    @param idKey: L{REQUEST_ID}, L{RESPONSE_ID} or L{None}.
    @param ident: the id.
    @return: the encoded line, newline included.
    @raise ReservedKeyError: if C{obj} contains a key in L{RESERVED_KEYS}.
    @raise InvalidOutgoingMessage: as L{encodeLine}.
    """
    if not isinstance(obj, dict):
        raise _notADict(obj)
    # The keys of RESERVED_KEYS, spelled out and looked up one by one: two
    # thirds of the cost of RESERVED_KEYS.isdisjoint(obj), which makes an
    # iterator over the dict (RESULTS.rst).  test_reservedKeysRefused
    # covers every key of RESERVED_KEYS.
    if "requestId" in obj or "responseId" in obj or "__ping" in obj or "__pong" in obj:
        found = ", ".join(sorted(RESERVED_KEYS.intersection(obj)))
        raise ReservedKeyError(
            f"message contains the reserved key(s) {found}; the peer would misread it")
    if idKey is not None:
        # Twice as fast as {**obj, idKey: ident}; always a plain dict.
        obj = obj.copy() if type(obj) is dict else dict(obj)
        obj[idKey] = ident
    if _encodeAny is _encodeStandard:
        return _encodeStandard(obj)
    # The other encoder is _encodeFast: its body, repeated rather than
    # called, since every message sent takes this path and the call is a
    # tenth of encoding a short one (RESULTS.rst).  test_codec_equivalence
    # holds the two to one result.
    try:
        data: bytes = _orjsonDumps(obj, default=_refuse, option=_options)
    except _OrjsonEncodeError:
        return _encodeStandard(obj)
    if (len(data) < _BIG or not _flat(obj)) and data.partition(b"null")[1]:
        return _encodeStandard(obj)
    return data


def encodeValue(value: Any) -> bytes:
    """
    Encode any JSON value with the codec in use, as L{encodeLine} does but
    without its checks: for the pieces of a line that L{txtlsjson.pieced}
    puts together.

    @return: the compact JSON encoding and a newline.
    @raise InvalidOutgoingMessage: as L{encodeLine}.
    """
    return _encodeAny(value)


def _encodeStringStandard(text: str) -> bytes:
    encoded: str = json.encoder.encode_basestring(text)
    return encoded.encode("utf-8")[1:-1]


encodeString: Callable[[str], bytes] = _encodeStringStandard
encodeString.__doc__ = """
    The JSON encoding of a string, without its quotes, with the codec in use.

    @raise UnicodeEncodeError: for a lone surrogate (see L{STRING_ERRORS}).
    """

#: What L{encodeString} may raise, with either codec.
STRING_ERRORS: Tuple[Type[Exception], ...] = (UnicodeEncodeError,)
if orjson is not None:

    def _encodeStringFast(text: str) -> bytes:
        encoded: bytes = _orjsonDumps(text)
        return encoded[1:-1]

    STRING_ERRORS = (UnicodeEncodeError, _OrjsonEncodeError)
    if _encodeAny is _encodeFast:
        encodeString = _encodeStringFast


def lineTooLong(line: Sized, maxLineLength: int) -> InvalidOutgoingMessage:
    """
    The error for an encoded C{line} (its newline included) longer than
    C{maxLineLength}.
    """
    return InvalidOutgoingMessage(
        f"message of {len(line) - 1} bytes exceeds maxLineLength ({maxLineLength})")


def encodeLimitedLine(obj: JSONObject, maxLineLength: int) -> bytes:
    """
    L{encodeMessageLine}, refusing a line longer than C{maxLineLength}: for
    a message written as it is to many clients, or by another node.

    @raise InvalidOutgoingMessage: as L{encodeMessageLine}, or if too long.
    """
    line = encodeMessageLine(obj)
    if len(line) > maxLineLength + 1:
        raise lineTooLong(line, maxLineLength)
    return line
