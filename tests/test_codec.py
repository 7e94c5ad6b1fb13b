"""
Tests for L{txtlsjson.codec}: the exact bytes the Node peer sends and
expects, and every refusal.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from typing import Any, Dict

import pytest

from txtlsjson.codec import decodeLine, encodeLine, encodeMessageLine
from txtlsjson.errors import InvalidMessage, InvalidOutgoingMessage, ReservedKeyError
from txtlsjson.wire import MAX_SAFE_INTEGER, RESERVED_KEYS, isTruthy, isValidId


def test_encodeAsJSONStringify() -> None:
    """
    Encoding is compact, keeps insertion order, and leaves non-ASCII
    characters as UTF-8, as C{JSON.stringify} does.
    """
    assert encodeLine({"foo": "bar", "n": [1, 2.5, None, True]}) == (
        b'{"foo":"bar","n":[1,2.5,null,true]}\n')
    assert encodeLine({"t": "h\u00e9 \u4e16 \U0001f600"}) == (
        '{"t":"h\u00e9 \u4e16 \U0001f600"}\n'.encode("utf-8"))


def test_newlineInStringEscaped() -> None:
    """
    A newline inside a string is escaped, so an encoded message never holds
    the delimiter.
    """
    assert encodeLine({"t": "a\nb\r"}) == b'{"t":"a\\nb\\r"}\n'


def test_requestIdAppendedLast() -> None:
    """
    The id goes last, as the Node peer's C{obj.requestId = id} puts it.
    """
    assert encodeMessageLine({"foo": "bar"}, "requestId", 1) == b'{"foo":"bar","requestId":1}\n'
    assert encodeMessageLine({}, "responseId", 7) == b'{"responseId":7}\n'
    assert encodeMessageLine({"a": 1}) == b'{"a":1}\n'


def test_callerObjectUntouched() -> None:
    """
    Adding the id does not modify the caller's dict.
    """
    message = {"foo": "bar"}
    encodeMessageLine(message, "requestId", 3)
    assert message == {"foo": "bar"}


@pytest.mark.parametrize("factory", [OrderedDict, lambda pairs: defaultdict(list, pairs)])
def test_dictSubclassWithId(factory: Any) -> None:
    """
    A dict subclass (whose C{copy} keeps its class) is sent as the plain
    dict would be, the id last, and is not modified either.
    """
    message = factory([("b", 1), ("a", [2])])
    assert encodeMessageLine(message, "requestId", 4) == b'{"b":1,"a":[2],"requestId":4}\n'
    assert dict(message) == {"b": 1, "a": [2]}


@pytest.mark.parametrize("key", sorted(RESERVED_KEYS))
def test_reservedKeysRefused(key: str) -> None:
    """
    An application object holding a reserved key is refused, naming the key.
    """
    with pytest.raises(ReservedKeyError, match=key):
        encodeMessageLine({"a": 1, key: 5})
    with pytest.raises(ReservedKeyError, match=key):
        encodeMessageLine({key: 5}, "requestId", 1)


@pytest.mark.parametrize("value, fragment", [
    (float("nan"), "JSON"),
    (float("inf"), "JSON"),
    ({1, 2}, "JSON"),
    (object(), "JSON"),
    ("\ud800", "surrogate"),
])
def test_unencodableRefused(value: object, fragment: str) -> None:
    """
    What C{JSON.parse} could not read back is refused with a clear error.
    """
    with pytest.raises(InvalidOutgoingMessage, match=fragment):
        encodeLine({"v": value})


@pytest.mark.parametrize("value", [[1], "x", 3, None])
def test_nonObjectRefused(value: object) -> None:
    """
    Only dicts are messages.
    """
    with pytest.raises(InvalidOutgoingMessage, match="must be a dict"):
        encodeMessageLine(value)  # type: ignore[arg-type]


def test_circularRefused() -> None:
    """
    A circular structure is refused, not a crash.
    """
    message: Dict[str, Any] = {}
    message["self"] = message
    with pytest.raises(InvalidOutgoingMessage):
        encodeLine(message)


def test_nestingLimitExact() -> None:
    """
    Nesting up to L{MAX_NESTING} is accepted, whatever the call stack; brackets
    inside strings do not count.
    """
    deepest = b'{"a":' + b"[" * 1023 + b"]" * 1023 + b"}"
    assert decodeLine(deepest)["a"] is not None

    def recurse(depth: int) -> Any:
        # Deep in a call stack, as a protocol several callbacks down is.
        return decodeLine(deepest) if depth == 0 else recurse(depth - 1)

    assert recurse(400) is not None
    assert decodeLine(b'{"a":"' + b"[" * 5000 + b'"}') == {"a": "[" * 5000}


def test_decode() -> None:
    """
    A line decodes to its object; a trailing C{\\r} and whitespace are fine.
    """
    assert decodeLine(b'{"a":1}') == {"a": 1}
    assert decodeLine(b' {"a": [1, {"b": null}]} \r') == {"a": [1, {"b": None}]}
    assert decodeLine('{"t":"\u4e16"}'.encode("utf-8")) == {"t": "\u4e16"}


@pytest.mark.parametrize("line, fragment", [
    (b'{"a":"\xff"}', "not valid UTF-8"),
    (b'{"a":"\xe4\xb8"}', "not valid UTF-8"),
    (b"{nope}", "not valid JSON"),
    (b'{"a":1}{"b":2}', "not valid JSON"),
    (b'{"a":NaN}', "not valid JSON"),
    (b'{"a":Infinity}', "not valid JSON"),
    (b'{"a":-Infinity}', "not valid JSON"),
    (b"[1,2]", "an array, not a JSON object"),
    (b"42", "a number, not a JSON object"),
    (b"null", "null, not a JSON object"),
    (b'"s"', "a string, not a JSON object"),
    (b"true", "a boolean, not a JSON object"),
    (b"[" * 100000, "nested more than 1024 deep"),
    (b'{"a":' * 100000, "nested more than 1024 deep"),
    (b'{"a":' + b"[" * 1024 + b"]" * 1024 + b"}", "nested more than 1024 deep"),
    (b"", "not valid JSON"),
])
def test_decodeRefusals(line: bytes, fragment: str) -> None:
    """
    Every kind of bad line raises L{InvalidMessage} saying what is wrong.
    """
    with pytest.raises(InvalidMessage, match=fragment):
        decodeLine(line)


@pytest.mark.parametrize("value, truthy", [
    (0, False), (0.0, False), ("", False), (None, False), (False, False),
    (1, True), (-1, True), ("x", True), ([], True), ({}, True), (True, True), (0.5, True),
])
def test_javascriptTruthiness(value: object, truthy: bool) -> None:
    """
    Dispatch follows JavaScript truthiness: empty arrays and objects are
    truthy, unlike in Python.
    """
    assert isTruthy(value) is truthy


@pytest.mark.parametrize("value, valid", [
    (1, True), (MAX_SAFE_INTEGER, True), (MAX_SAFE_INTEGER + 1, False), (0, False),
    (-3, False), (True, False), (1.0, False), ("1", False), ([], False),
])
def test_validIds(value: object, valid: bool) -> None:
    """
    Ids are integers a JavaScript peer can hold exactly.
    """
    assert isValidId(value) is valid
