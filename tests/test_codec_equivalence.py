"""
The fast codec (the C{fast} extra: orjson and msgspec) and the standard
library's give the same results over a large generated corpus of good and
bad input: the same objects decoded, the same errors, and the same bytes on
the wire -- but for the notation of floats (same value, same digits) and
orjson's encoding of UUIDs and Enum members, both documented.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import uuid
from enum import Enum
from typing import Any, Callable, List

import pytest

from txtlsjson import codec
from txtlsjson.errors import InvalidMessage, InvalidOutgoingMessage

FAST = getattr(codec, "_encodeFast", None)
FAST_DECODE = getattr(codec, "_decodeLineFast", None)

#: Every fast decoder: orjson's and msgspec's, each of which decodes every
#: line when the other is missing, and the two together, each line to one.
DECODERS = [getattr(codec, name, None)
            for name in ("_decodeLineOrjson", "_decodeLineMsgspec", "_decodeLineFast")]



class Color(Enum):
    """
    An Enum member: orjson encodes its value, json refuses it.
    """

    A = 1

def test_fastCodecInstalledForTheSuite() -> None:
    """
    The test extras install orjson and msgspec, so that both codecs are
    compared here (the suite does not pass silently without them); they
    are the codec in use unless C{TXTLSJSON_CODEC=json} says otherwise.
    """
    assert FAST is not None and None not in DECODERS
    expected = "json" if os.environ.get("TXTLSJSON_CODEC") == "json" else "orjson+msgspec"
    assert codec.CODEC == expected
    assert (codec.decodeLine is FAST_DECODE) == (expected != "json")


def outcome(function: Callable[[Any], Any], value: Any) -> Any:
    try:
        return ("ok", function(value))
    except (InvalidMessage, InvalidOutgoingMessage) as e:
        return ("error", type(e), str(e))


STRINGS = ["", "x", "h\u00e9llo", "\u4e16\u754c", "\U0001f600", "a\nb\r\t\"\\",
           "\x00\x01\x1f", "\u2028\u2029", "\ud800", "\udfff", "null", "1e5", "e",
           "123456789012345678901234", "\ufeff"]
FLOATS = [0.0, -0.0, 0.1, 1.5, 1e16, 1e-7, 1e-5, 1.5e300, 5e-324, 1.7976931348623157e308,
          123456789.123, 2.5e-3, 1e22, 1e21, 3.14159, float("nan"), float("inf"), -float("inf")]
INTS = [0, 1, -1, 2**31, 2**53 - 1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63,
        -2**63 - 1, 10**30, -10**30]


def randomValue(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice(STRINGS) + rng.choice(STRINGS)
    if kind == 1:
        return rng.choice(FLOATS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-30, 30)
    if kind == 2:
        return rng.choice(INTS) if rng.random() < 0.5 else rng.randint(-10**6, 10**6)
    if kind == 3:
        return rng.choice([True, False, None])
    if kind == 4:
        return rng.choice([(1, 2), uuid.UUID(int=7), Color.A, {1: 2}, {None: 1},
                           {1.5: 2}, {True: 3}, object(), b"bytes", {"k": {2}}])
    if kind == 5:
        return rng.choice(STRINGS)
    if kind == 6:
        return [randomValue(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(STRINGS): randomValue(rng, depth + 1) for _ in range(rng.randint(0, 4))}


KNOWN_DIFFERENCE = (uuid.UUID, Enum)


def involvesKnownDifference(value: Any) -> bool:
    if isinstance(value, KNOWN_DIFFERENCE):
        return True
    if isinstance(value, dict):
        return any(involvesKnownDifference(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(involvesKnownDifference(v) for v in value)
    return False


def test_encodingIdentical() -> None:
    """
    Over 20,000 generated objects, both encoders produce the same bytes or
    the same error -- except the documented differences: a float may be
    written in another notation (the same value and digits), and orjson also
    encodes uuid.UUID values and Enum members, which json refuses.
    """
    rng = random.Random(1126)
    compared = differences = notations = 0
    for _ in range(20000):
        value = {"v": randomValue(rng)}
        standard = outcome(codec._encodeStandard, value)
        fast = outcome(FAST, value)  # type: ignore[arg-type]
        assertMessageEncodedAlike(value)
        if involvesKnownDifference(value) and standard[0] == "error":
            differences += 1
            continue
        if fast != standard:
            assert fast[0] == standard[0] == "ok", value
            assert same(json.loads(fast[1]), json.loads(standard[1])), value
            assert digits(fast[1]) == digits(standard[1]), value
            notations += 1
        compared += 1
    assert compared > 15000 and differences > 0 and notations > 0


def assertMessageEncodedAlike(value: Any) -> None:
    """
    L{codec.encodeMessageLine}, which repeats the fast encoder's work
    rather than calling it, gives what the encoder in use gives C{value}:
    the same bytes, or the same error.
    """
    assert outcome(codec.encodeMessageLine, value) == outcome(codec._encodeAny, value), value


def digits(data: bytes) -> List[bytes]:
    """
    The significant digits of each number in C{data}, notation aside.
    """
    return [re.sub(rb"[.]", b"", m.group(1)).strip(b"0")
            for m in re.finditer(rb"-?([0-9.]+)(?:[eE][-+]?[0-9]+)?", data)]


BIG = "x" * 70000


@pytest.mark.parametrize("value", [
    {"data": BIG},
    {"data": BIG, "n": None, "ok": True, "i": 2**62},
    {"data": BIG, "nan": float("nan")},
    {"data": BIG, "inf": float("inf"), "n": None},
    {"data": BIG, "f": 0.5, "n": None},
    {"data": BIG, "huge": 2**70},
    {"data": [BIG, float("nan")]},
    {"data": BIG, "bad": "\ud800"},
])
def test_bigMessagesIdentical(value: Any) -> None:
    """
    Messages over 64 KiB, which are checked through the object rather than
    by another scan of their bytes, encode and decode as the standard
    library does.
    """
    standard = outcome(codec._encodeStandard, value)
    fast = outcome(FAST, value)  # type: ignore[arg-type]
    assert fast == standard
    assertMessageEncodedAlike(value)
    if standard[0] == "ok":
        line = standard[1][:-1]
        for decoder in DECODERS:
            assert decoder is not None
            assert same(outcome(decoder, line), outcome(codec._decodeLineStandard, line))


@pytest.mark.parametrize("line", [
    b'{"data":"' + BIG.encode() + b'","big":123456789012345678901234567890}',
    b'{"data":"' + BIG.encode() + b'","neg":-9223372036854775809}',
    b'{"data":["' + BIG.encode() + b'",99999999999999999999]}',
    b'{"data":"' + BIG.encode() + b'","f":1.5,"i":12345678901234567890123}',
    b'{"data":"' + BIG.encode() + b'","ok":18446744073709551615}',
    b'{"data":"' + BIG.encode() + b'"',
])
@pytest.mark.parametrize("decoder", DECODERS)
def test_bigLinesIdentical(decoder: Callable[[bytes], Any], line: bytes) -> None:
    """
    Big lines with integers beyond 64 bits decode to exact integers, as the
    standard library reads them, flat or nested; broken ones fail alike.
    """
    assert same(outcome(decoder, line), outcome(codec._decodeLineStandard, line))


HUGE = b"x" * codec._HUGE_LINE


@pytest.mark.parametrize("line", [
    b'{"data":"' + HUGE + b'","big":123456789012345678901234567890,"f":0.5,"n":null}',
    b'{"data":["' + HUGE + "\u00e9\U0001f600".encode() + b'",true,{"k":-0}]}',
    b'{"data":"' + HUGE + b'","nan":NaN}',
    b'{"data":"' + HUGE + b'","inf":1e400}',
    b'{"data":"' + HUGE + b'\\ud800"}',
    b'{"data":"' + HUGE + b'\xff"}',
    b'{"data":"' + HUGE + b'"',
    b'["' + HUGE + b'"]',
])
def test_hugeLinesIdentical(line: bytes) -> None:
    """
    Lines of C{_HUGE_LINE} bytes and more decode as the standard library
    decodes them, or fail alike.
    """
    assert same(outcome(FAST_DECODE, line),  # type: ignore[arg-type]
                outcome(codec._decodeLineStandard, line))


@pytest.mark.parametrize("size, byOrjson", [
    (100, False), (codec._BIG - 1, False), (codec._BIG, True),
    (codec._HUGE_LINE - 1, True), (codec._HUGE_LINE, False), (3 * codec._HUGE_LINE, False),
])
def test_linesBySize(monkeypatch: pytest.MonkeyPatch, size: int, byOrjson: bool) -> None:
    """
    With both fast libraries, orjson decodes the lines from C{_BIG} to just
    under C{_HUGE_LINE} bytes, msgspec all others.
    """
    decoded = []
    decodeOrjson = codec._decodeLineOrjson

    def record(line: bytes) -> Any:
        decoded.append(len(line))
        return decodeOrjson(line)

    monkeypatch.setattr(codec, "_decodeLineOrjson", record)
    line = b'{"data":"' + b"x" * (size - 11) + b'"}'
    assert len(line) == size
    assert FAST_DECODE(line) == {"data": "x" * (size - 11)}  # type: ignore[misc]
    assert decoded == ([size] if byOrjson else [])


def test_knownDifference() -> None:
    """
    The documented difference, pinned down.
    """
    value = {"id": uuid.UUID(int=1)}
    assert outcome(codec._encodeStandard, value)[0] == "error"
    assert FAST(value) == b'{"id":"00000000-0000-0000-0000-000000000001"}\n'  # type: ignore[misc]


def lines(rng: random.Random) -> List[bytes]:
    corpus = [b"", b"{}", b"[]", b"null", b"1", b'"s"', b'{"a":NaN}', b'{"a":Infinity}',
              b'{"a":-Infinity}', b'{"a":1e400}', b'{"a":-0}', b'{"a":1E5}', b'{"a":1e-7}',
              b'{"a":12345678901234567890}', b'{"a":123456789012345678901234567890}',
              b'{"a":"\\ud800"}', b'{"a":"\\udc00\\ud800"}', b'{"a":"\\ud83d\\ude00"}',
              b'{"a":"\xff"}', b'{"a":"\xed\xa0\x80"}', b'{"a":"\xf0\x9f\x98\x80"}',
              b"\xef\xbb\xbf{}", b'{"a":1,"a":2}', b'{"a":1} ', b' {"a":1}\r', b'{"a":1}x',
              b'{"a":"\x01"}', b'{"a":"\t"}', b"[" * 2000, b"[" * 1000 + b"]" * 1000,
              b'{"a":' * 600 + b"1" + b"}" * 600, b"[" * 1024 + b"]" * 1024, b"[" * 1023 + b"]" * 1023,
              b"[" * 1025 + b"]" * 1025, b'["' + b"[" * 1200 + b'"]',
              b'{"a":' + b"[" * 1023 + b"]" * 1023 + b"}", b'{"a":01}', b'{"a":.5}', b'{"a":5.}',
              b'{"a":+1}', b'{"a":0x10}', b"{'a':1}", b'{"a":true,}', b'{"a":[1,]}',
              b'{"a":"\\u00e9\\u4e16"}', b'{"a":1.0000000000000002}', b'{"a":5e-324}',
              b'{"a":2.2250738585072014e-308}', b'{"a":9007199254740993}']
    for _ in range(3000):
        value = {"v": randomValue(rng)}
        try:
            corpus.append(codec._encodeStandard(value)[:-1])
        except InvalidOutgoingMessage:
            pass
    for _ in range(2000):
        base = bytearray(rng.choice(corpus) or b"{}")
        for _ in range(rng.randint(1, 3)):
            if base:
                base[rng.randrange(len(base))] = rng.randrange(256)
        corpus.append(bytes(base))
    return corpus


@pytest.mark.parametrize("decoder", DECODERS)
def test_decodingIdentical(decoder: Callable[[bytes], Any]) -> None:
    """
    Over thousands of lines, valid and mangled, each fast decoder and the
    standard library's return equal objects (NaN compared as NaN) or the
    same error.
    """
    for line in lines(random.Random(2611)):
        standard = outcome(codec._decodeLineStandard, line)
        fast = outcome(decoder, line)
        assert same(fast, standard), line


def same(a: Any, b: Any) -> bool:
    """
    Equality with NaN equal to NaN and types compared too; iterative, as
    the documents nest up to 1024 deep.
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if type(x) is not type(y):
            return False
        if isinstance(x, (list, tuple)):
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            stack.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def test_shortLineDecoderAgrees() -> None:
    """
    Over the same lines, every dict C{decodeShortLine} returns is what
    C{decodeLine} returns (the session takes such a dict as it is, and hands
    anything else to C{decodeLine}); and with the fast codec it does return
    one for most of them.
    """
    taken = 0
    for line in lines(random.Random(2911)):
        if len(line) >= codec.SHORT_LINE:
            continue
        try:
            short = codec.decodeShortLine(line)
        except codec.SHORT_LINE_ERRORS:
            continue
        if type(short) is dict:
            taken += 1
            assert same(("ok", short), outcome(codec.decodeLine, line)), line
    assert taken > 2000
