"""
The tls-json-style event layer on in-memory transports: event names and
arguments, C{close} exactly once, C{res.send} rules, handler failures.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.task import Clock

from txtlsjson import Server
from txtlsjson.errors import (
    AlreadyAnswered,
    AuthenticationTimeout,
    InvalidOutgoingMessage,
    NotConnected,
)
from txtlsjson.events import EventEmitter

from .helpers import connectProtocol


def serverWithConnection(clock: Clock, authenticate: bool = True, **settings: Any) -> Any:
    server = Server("pw", tlsOptions=object(), reactor=clock, **settings)
    events: List[Any] = []
    for name in sorted(Server.events):
        server.on(name, lambda *args, name=name: events.append((name,) + args))
    protocol, transport = connectProtocol(server.factory)
    if authenticate:
        protocol.dataReceived(b'{"password":"pw"}\n')
        transport.clear()
    return server, protocol, transport, events


def test_eventsAndIds() -> None:
    """
    Connections get ids from 0; events carry them.
    """
    clock = Clock()
    server, protocol, transport, events = serverWithConnection(clock)
    protocol.dataReceived(b'{"m":1}\n')
    assert [e[:2] for e in events] == [("authenticated", 0), ("message", 0)]
    assert events[1][2] == {"m": 1}
    assert server.clients == [0]
    assert server.peer(0) == transport.getPeer()
    other, _ = connectProtocol(server.factory)
    other.dataReceived(b'{"password":"pw"}\n')
    assert events[-1][:2] == ("authenticated", 1)


def test_closeExactlyOnce() -> None:
    """
    C{close} fires once per connection, whatever ends it: an auth timeout
    (reported as an error first), a drop, or both at once.
    """
    clock = Clock()
    server, protocol, transport, events = serverWithConnection(clock, authenticate=False,
                                                               authTimeout=1)
    clock.advance(1)
    protocol.connectionLost(None)  # a second notice changes nothing
    names = [e[0] for e in events]
    assert names == ["error", "close"]
    assert isinstance(events[0][2], AuthenticationTimeout)
    assert server.peer(0) is None


def test_respondOnceOnly() -> None:
    """
    C{res.send} answers once, now or later; a second call raises
    L{AlreadyAnswered} and sends nothing.
    """
    clock = Clock()
    server, protocol, transport, events = serverWithConnection(clock)
    answers: List[Any] = []
    server.on("request", lambda i, req, res: answers.append(res))
    protocol.dataReceived(b'{"q":1,"requestId":3}\n')
    res = answers[0]
    assert transport.value() == b""
    res.send({"a": 1})
    assert transport.value() == b'{"a":1,"responseId":3}\n'
    with pytest.raises(AlreadyAnswered, match="^this request has been answered already$"):
        res.send({"a": 2})
    assert transport.value() == b'{"a":1,"responseId":3}\n'


def test_respondTwiceAtOnce() -> None:
    """
    Two handlers that both answer at once: the first answer is sent, the
    second raises in its handler, which is logged.
    """
    clock = Clock()
    server, protocol, transport, events = serverWithConnection(clock)
    raised: List[Any] = []

    def second(i: int, req: Any, res: Any) -> None:
        try:
            res.send({"second": True})
        except AlreadyAnswered as e:
            raised.append(e)

    server.on("request", lambda i, req, res: res.send({"first": True}))
    server.on("request", second)
    protocol.dataReceived(b'{"requestId":1}\n')
    assert transport.value() == b'{"first":true,"responseId":1}\n'
    assert len(raised) == 1


@pytest.mark.parametrize("later", [False, True])
def test_unsendableResponseReported(later: bool) -> None:
    """
    A response that cannot be sent -- now or later -- is reported as an
    C{error} event naming the request, and nothing is sent: the same rule
    as for a hook's result.
    """
    clock = Clock()
    server, protocol, transport, events = serverWithConnection(clock)
    answers: List[Any] = []
    if later:
        server.on("request", lambda i, req, res: answers.append(res))
    else:
        server.on("request", lambda i, req, res: res.send({"requestId": 9}))
    protocol.dataReceived(b'{"q":1,"requestId":3}\n')
    for res in answers:
        res.send({"requestId": 9})
    errors = [e for e in events if e[0] == "error"]
    assert len(errors) == 1 and errors[0][1] == 0
    assert isinstance(errors[0][2], InvalidOutgoingMessage)
    assert "request 3" in str(errors[0][2]) and "reserved" in str(errors[0][2])
    assert transport.value() == b""


def test_respondAfterClose() -> None:
    """
    Answering after the connection closed emits C{error} with
    L{NotConnected}, with the connection id.
    """
    clock = Clock()
    server, protocol, transport, events = serverWithConnection(clock)
    answers: List[Any] = []
    server.on("request", lambda i, req, res: answers.append(res))
    protocol.dataReceived(b'{"requestId":1}\n')
    transport.loseConnection()
    answers[0].send({"late": True})
    errors = [e for e in events if e[0] == "error"]
    assert errors[0][1] == 0 and isinstance(errors[0][2], NotConnected)


def test_sendToUnknownClient() -> None:
    """
    C{server.send} to an unknown id emits C{error}; C{server.request} fails.
    """
    server = Server("pw", tlsOptions=object(), reactor=Clock())
    errors: List[Any] = []
    server.on("error", lambda i, e: errors.append((i, e)))
    server.send(7, {"x": 1})
    assert errors[0][0] == 7 and isinstance(errors[0][1], NotConnected)
    failures: List[Any] = []
    server.request(7, {}).addErrback(failures.append)
    assert failures[0].check(NotConnected)


def test_sendToUnauthenticatedClient() -> None:
    """
    To a connected client that has not authenticated yet, C{server.send}
    emits C{error} and C{server.request} fails, both with L{NotConnected};
    nothing is written.
    """
    server, protocol, transport, events = serverWithConnection(Clock(), authenticate=False)
    server.send(0, {"x": 1})
    assert [e[:2] for e in events] == [("error", 0)] and isinstance(events[0][2], NotConnected)
    failures: List[Any] = []
    server.request(0, {}).addErrback(failures.append)
    assert failures[0].check(NotConnected)
    assert transport.value() == b""


def test_handlerErrorsIsolated() -> None:
    """
    A handler that raises is logged; the other handlers still run.
    """
    clock = Clock()
    server, protocol, transport, events = serverWithConnection(clock)
    ran: List[Any] = []
    server.on("message", lambda i, m: 1 / 0)
    server.on("message", lambda i, m: ran.append(m))
    protocol.dataReceived(b'{"m":1}\n')
    assert ran == [{"m": 1}]
    assert not transport.disconnecting


def test_onOff() -> None:
    """
    C{off} removes a handler; unknown events and non-callables are refused.
    """
    class Emitter(EventEmitter):
        events = frozenset({"ping"})

    emitter = Emitter()
    seen: List[Any] = []
    handler = emitter.on("ping", seen.append)
    emitter.emit("ping", 1)
    emitter.off("ping", handler)
    emitter.emit("ping", 2)
    assert seen == [1]
    assert emitter.listenerCount("ping") == 0
    with pytest.raises(ValueError, match="unknown event 'pong'"):
        emitter.on("pong", print)
    with pytest.raises(TypeError):
        emitter.on("ping", "not callable")  # type: ignore[type-var]  # refused


def test_listenWithoutCertificate() -> None:
    """
    A server made without certificate can only listen through an endpoint;
    C{listen} says so.
    """
    server = Server("pw", reactor=Clock())
    failures: List[Any] = []
    server.listen(0).addErrback(failures.append)
    assert "no certificate" in str(failures[0].value)
