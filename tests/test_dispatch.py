"""
Unit tests of dispatch and requests on an authenticated connection, both
sides, on in-memory transports with a L{Clock}.
"""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pytest
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock

from txtlsjson.errors import (
    ConnectionLost,
    InvalidMessage,
    InvalidOutgoingMessage,
    NotConnected,
    RequestTimeout,
    ReservedKeyError,
    UnknownResponse,
)
from txtlsjson.protocol import TLSJSONServerFactory

from .helpers import RecordingTransport, authenticatedClient, authenticatedServer

Side = Callable[..., Tuple[Any, RecordingTransport]]
SIDES = [pytest.param(authenticatedServer, id="server"),
         pytest.param(authenticatedClient, id="client")]


def record(protocol: Any) -> List[Any]:
    """
    Make C{protocol}'s hooks append to the returned list.
    """
    events: List[Any] = []
    protocol.messageReceived = lambda m: events.append(("message", m))
    protocol.errorReceived = lambda e: events.append(("error", e))

    def request(r: Any) -> Any:
        events.append(("request", r))
        return {"answer": r.get("q")}

    protocol.requestReceived = request
    return events


@pytest.mark.parametrize("side", SIDES)
def test_message(side: Side) -> None:
    """
    An object with no reserved key is a message, delivered as it is.
    """
    protocol, _ = side(Clock())
    events = record(protocol)
    protocol.dataReceived(b'{"foo":"bar","password":"not special now"}\n')
    assert events == [("message", {"foo": "bar", "password": "not special now"})]


@pytest.mark.parametrize("side", SIDES)
def test_requestAnswered(side: Side) -> None:
    """
    A truthy C{requestId} makes a request: the hook gets it without the id
    and its return value goes back with C{responseId}, last.
    """
    protocol, transport = side(Clock())
    events = record(protocol)
    protocol.dataReceived(b'{"q":5,"requestId":9}\n')
    assert events == [("request", {"q": 5})]
    assert transport.lines() == [b'{"answer":5,"responseId":9}']


@pytest.mark.parametrize("side", SIDES)
def test_requestIdWinsOverResponseId(side: Side) -> None:
    """
    As in the Node peer, C{requestId} is looked at first.
    """
    protocol, transport = side(Clock())
    events = record(protocol)
    protocol.dataReceived(b'{"q":1,"requestId":4,"responseId":1}\n')
    assert events == [("request", {"q": 1, "responseId": 1})]


@pytest.mark.parametrize("side", SIDES)
def test_sendRequestBytes(side: Side) -> None:
    """
    A request goes out as the payload plus C{requestId}, ids counting from
    1; the response fires the Deferred without its C{responseId}.
    """
    clock = Clock()
    protocol, transport = side(clock)
    keepAliveTimers = clock.getDelayedCalls()
    first = protocol.request({"foo": "bar"})
    second = protocol.request({})
    assert transport.lines() == [b'{"foo":"bar","requestId":1}', b'{"requestId":2}']
    results: List[Any] = []
    first.addCallback(results.append)
    second.addCallback(results.append)
    protocol.dataReceived(b'{"responseId":2,"b":2}\n{"a":1,"responseId":1}\n')
    assert results == [{"b": 2}, {"a": 1}]
    assert clock.getDelayedCalls() == keepAliveTimers


@pytest.mark.parametrize("side", SIDES)
def test_onlyFirstResponseCounts(side: Side) -> None:
    """
    A second response to the same id is unknown: reported, not delivered.
    """
    protocol, transport = side(Clock())
    events = record(protocol)
    results: List[Any] = []
    protocol.request({}).addCallback(results.append)
    protocol.dataReceived(b'{"n":1,"responseId":1}\n{"n":2,"responseId":1}\n{"after":1}\n')
    assert results == [{"n": 1}]
    assert isinstance(events[0][1], UnknownResponse)
    assert events[1] == ("message", {"after": 1})


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("line", [
    b'{"responseId":77}', b'{"responseId":"x"}', b'{"responseId":-1}', b'{"responseId":[]}',
    b'{"responseId":true}', b'{"responseId":1.0}', b'{"responseId":"1"}',
])
def test_unknownResponse(side: Side, line: bytes) -> None:
    """
    A response to an id never issued is reported; later lines still arrive.
    Request 1 is pending: C{true}, C{1.0} and C{"1"} must not answer it
    (as dict keys, True and 1.0 equal 1).
    """
    protocol, _ = side(Clock())
    pending = protocol.request({})
    events = record(protocol)
    protocol.dataReceived(line + b'\n{"next":1}\n')
    assert isinstance(events[0][1], UnknownResponse)
    assert events[1] == ("message", {"next": 1})
    assert not pending.called
    protocol.dataReceived(b'{"responseId":1}\n')
    assert pending.called


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("line", [
    b'{"requestId":"x"}', b'{"requestId":-1}', b'{"requestId":9007199254740992}',
    b'{"requestId":1.5}', b'{"requestId":true}', b'{"requestId":{}}',
    b'{"requestId":0}', b'{"requestId":null}', b'{"responseId":0}', b'{"requestId":""}',
])
def test_oddIdsDropped(side: Side, line: bytes) -> None:
    """
    An id this protocol never sends (not an integer from 1 to 2**53-1, or a
    falsy one) is reported and the line dropped -- neither answered nor
    delivered; later lines still arrive.
    """
    protocol, transport = side(Clock())
    events = record(protocol)
    protocol.dataReceived(line + b'\n{"next":1}\n')
    assert isinstance(events[0][1], InvalidMessage)
    assert "must be an integer" in str(events[0][1])
    assert events[1:] == [("message", {"next": 1})]
    assert transport.lines() == []


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("line", [
    b"not json", b"[1,2]", b"null", b"7", b'{"a":"\xff\xfe"}', b"[" * 50000, b'{"a":NaN}',
])
def test_badLinesDoNotStopTheConnection(side: Side, line: bytes) -> None:
    """
    A bad line from an authenticated peer is reported and dropped; the
    connection stays and later lines are delivered.
    """
    protocol, transport = side(Clock())
    events = record(protocol)
    protocol.dataReceived(line + b'\n{"next":1}\n')
    assert isinstance(events[0][1], InvalidMessage)
    assert events[1] == ("message", {"next": 1})
    assert not transport.disconnecting


@pytest.mark.parametrize("side", SIDES)
def test_blankLinesSkipped(side: Side) -> None:
    """
    Blank lines (and lone C{\\r}) are skipped silently.
    """
    protocol, _ = side(Clock())
    events = record(protocol)
    protocol.dataReceived(b'\n\r\n  \n{"a":1}\r\n')
    assert events == [("message", {"a": 1})]


def test_clientAnswersAnyIntegerPing() -> None:
    """
    The client answers every integer C{__ping}, 0 included, with the same
    value in C{__pong}.
    """
    protocol, transport = authenticatedClient(Clock())
    events = record(protocol)
    protocol.dataReceived(b'{"__ping":0}\n{"__ping":123}\n')
    assert transport.lines() == [b'{"__pong":0}', b'{"__pong":123}']
    assert events == []


def test_clientRefusesOddPing() -> None:
    """
    A non-integer C{__ping} is reported, not answered.
    """
    protocol, transport = authenticatedClient(Clock())
    events = record(protocol)
    protocol.dataReceived(b'{"__ping":"x"}\n')
    assert transport.lines() == []
    assert isinstance(events[0][1], InvalidMessage)


def test_serverTakesPingAsMessage() -> None:
    """
    C{__ping} has no meaning for the server (nor C{__pong} for the client):
    it is an ordinary message, as on the Node peer.
    """
    server, _ = authenticatedServer(Clock())
    events = record(server)
    server.dataReceived(b'{"__ping":1}\n')
    assert events == [("message", {"__ping": 1})]
    client, _ = authenticatedClient(Clock())
    events = record(client)
    client.dataReceived(b'{"__pong":1}\n')
    assert events == [("message", {"__pong": 1})]


@pytest.mark.parametrize("side", SIDES)
def test_requestTimeout(side: Side) -> None:
    """
    A request with no response fails with L{RequestTimeout} after
    C{requestTimeout} seconds, leaving no timer; a late response is unknown.
    """
    clock = Clock()
    protocol, _ = side(clock, requestTimeout=2)
    keepAliveTimers = clock.getDelayedCalls()
    events = record(protocol)
    failures: List[Any] = []
    protocol.request({}).addErrback(failures.append)
    clock.advance(1.9)
    assert failures == []
    clock.advance(0.1)
    assert failures[0].check(RequestTimeout)
    assert str(failures[0].value) == "request timeout"
    assert clock.getDelayedCalls() == keepAliveTimers
    protocol.dataReceived(b'{"responseId":1}\n')
    assert isinstance(events[0][1], UnknownResponse)


@pytest.mark.parametrize("side", SIDES)
def test_requestCancel(side: Side) -> None:
    """
    Cancelling a request forgets it and its timer.
    """
    clock = Clock()
    protocol, _ = side(clock, requestTimeout=2)
    keepAliveTimers = clock.getDelayedCalls()
    d = protocol.request({})
    failures: List[Any] = []
    d.addErrback(failures.append)
    d.cancel()
    assert failures[0].check(CancelledError)
    assert len(protocol.session.requests) == 0
    assert clock.getDelayedCalls() == keepAliveTimers


@pytest.mark.parametrize("side", SIDES)
def test_connectionLostFailsPending(side: Side) -> None:
    """
    Losing the connection errbacks every pending request with
    L{ConnectionLost} at once, leaves no timer, and later calls fail with
    L{NotConnected}.
    """
    clock = Clock()
    protocol, transport = side(clock, requestTimeout=30)
    failures: List[Any] = []
    for _ in range(3):
        protocol.request({}).addErrback(failures.append)
    transport.loseConnection()
    assert [f.check(ConnectionLost) for f in failures] == [ConnectionLost] * 3
    assert str(failures[0].value) == "connection lost"
    assert clock.getDelayedCalls() == []
    later: List[Any] = []
    protocol.request({}).addErrback(later.append)
    assert later[0].check(NotConnected)
    assert str(later[0].value) == "not connected or not authenticated"
    with pytest.raises(NotConnected):
        protocol.send({"a": 1})


@pytest.mark.parametrize("side", SIDES)
def test_sendBytesAndRefusals(side: Side) -> None:
    """
    C{send} writes the compact object and a newline; a reserved key or an
    unencodable value is refused locally, writing nothing, and the
    caller's dict is never changed.
    """
    protocol, transport = side(Clock())
    message = {"foo": "bar"}
    protocol.send(message)
    assert transport.lines() == [b'{"foo":"bar"}']
    for bad in ({"requestId": 1}, {"__ping": 1}, {"x": float("nan")}, {"x": "\udc80"}):
        before = dict(bad)
        with pytest.raises(InvalidOutgoingMessage):
            protocol.send(bad)
        assert bad == before
    with pytest.raises(ReservedKeyError):
        protocol.send({"responseId": 3})
    failures: List[Any] = []
    protocol.request({"__pong": 1}).addErrback(failures.append)
    assert failures[0].check(ReservedKeyError)
    assert transport.lines() == []
    assert message == {"foo": "bar"}
    assert len(protocol.session.requests) == 0


@pytest.mark.parametrize("side", SIDES)
def test_sendOverLimitRefused(side: Side) -> None:
    """
    A message longer than C{maxLineLength} fails locally.
    """
    protocol, transport = side(Clock(), maxLineLength=100)
    with pytest.raises(InvalidOutgoingMessage, match="exceeds maxLineLength"):
        protocol.send({"x": "y" * 100})
    assert transport.lines() == []


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("make", [
    pytest.param(lambda r: succeed({"v": r["q"]}), id="deferred"),
    pytest.param(lambda r: _coroutine(r), id="coroutine"),
    pytest.param(lambda r: {"v": r["q"]}, id="value"),
])
def test_requestHookResults(side: Side, make: Callable[[Any], Any]) -> None:
    """
    The request hook may return the response, a Deferred of it, or a
    coroutine.
    """
    protocol, transport = side(Clock())
    protocol.requestReceived = make
    protocol.dataReceived(b'{"q":3,"requestId":1}\n')
    assert transport.lines() == [b'{"v":3,"responseId":1}']


async def _coroutine(request: Any) -> Any:
    return {"v": request["q"]}


@pytest.mark.parametrize("side", SIDES)
def test_requestHookLater(side: Side) -> None:
    """
    A Deferred response is sent when it fires -- unless the connection has
    gone meanwhile.
    """
    protocol, transport = side(Clock())
    pending: List[Deferred[Any]] = []

    def hook(request: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        pending.append(d)
        return d

    protocol.requestReceived = hook
    protocol.dataReceived(b'{"requestId":1}\n{"requestId":2}\n')
    pending[1].callback({"second": True})
    assert transport.lines() == [b'{"second":true,"responseId":2}']
    transport.loseConnection()
    pending[0].callback({"first": True})
    assert transport.lines() == []


@pytest.mark.parametrize("side", SIDES)
def test_requestHookFailures(side: Side, caplog: Any) -> None:
    """
    A hook that raises, fails, returns None or returns something unsendable
    sends nothing; the connection carries on.
    """
    from twisted.internet.defer import fail

    protocol, transport = side(Clock())
    answers = iter([None, {"bad": float("nan")}, {"requestId": 1}])

    def hook(request: Any) -> Any:
        if request.get("kind") == "raise":
            raise RuntimeError("boom")
        if request.get("kind") == "fail":
            return fail(RuntimeError("later boom"))
        return next(answers)

    protocol.requestReceived = hook
    protocol.dataReceived(
        b'{"kind":"raise","requestId":1}\n{"kind":"fail","requestId":2}\n'
        b'{"requestId":3}\n{"requestId":4}\n{"requestId":5}\n')
    assert transport.lines() == []
    assert not transport.disconnecting
    protocol.send({"still": "up"})
    assert transport.lines() == [b'{"still":"up"}']


def test_unauthenticatedSendAndRequest() -> None:
    """
    Before authentication, C{send} raises and C{request} fails with
    L{NotConnected}; nothing is written.
    """
    from .helpers import connectProtocol

    protocol, transport = connectProtocol(TLSJSONServerFactory("pw", reactor=Clock()))
    with pytest.raises(NotConnected):
        protocol.send({})
    failures: List[Any] = []
    protocol.request({}).addErrback(failures.append)
    assert failures[0].check(NotConnected)
    assert transport.value() == b""


def test_whenAuthenticatedAndClosed() -> None:
    """
    L{whenAuthenticated} and L{whenClosed} return fresh Deferreds that fire
    on those moments.
    """
    from .helpers import connectProtocol

    protocol, transport = connectProtocol(TLSJSONServerFactory("pw", reactor=Clock()))
    fired: List[Any] = []
    protocol.whenAuthenticated().addCallback(lambda _: fired.append("a1"))
    protocol.whenAuthenticated().addCallback(lambda _: fired.append("a2"))
    closed = protocol.whenClosed()
    closed.addCallback(lambda _: fired.append("closed"))
    protocol.dataReceived(b'{"password":"pw"}\n')
    protocol.whenAuthenticated().addCallback(lambda _: fired.append("a3"))
    transport.loseConnection()
    protocol.whenClosed().addCallback(lambda _: fired.append("closed again"))
    assert fired == ["a1", "a2", "a3", "closed", "closed again"]
    failures: List[Any] = []
    protocol.whenAuthenticated().addErrback(failures.append)
    assert failures[0].check(NotConnected)
