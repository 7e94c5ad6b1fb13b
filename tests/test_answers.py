"""
The one answer path (L{txtlsjson.answers}): the same rules whether a
request is answered by the protocol's C{requestReceived} hook, by C{res.send}
in a C{request} event, or by a C{--handler}'s C{request} method.  In memory,
with a L{Clock}.
"""

from __future__ import annotations

from typing import Any, Callable, List, Tuple

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent

from txtlsjson import Server
from txtlsjson.answers import Responder
from txtlsjson.errors import AlreadyAnswered, InvalidOutgoingMessage, NotConnected
from txtlsjson.handler import attachHandler

from .helpers import RecordingTransport, authenticatedServer, connectProtocol

#: Makes a server connection whose requests are answered with what
#: C{answer(request)} gives, one way or another; returns the protocol, its
#: transport and the errors reported for the connection.
Answerer = Callable[[Callable[[Any], Any]], Tuple[Any, RecordingTransport, List[Exception]]]


def byHook(answer: Callable[[Any], Any]) -> Tuple[Any, RecordingTransport, List[Exception]]:
    protocol, transport = authenticatedServer(Clock())
    errors: List[Exception] = []
    protocol.requestReceived = answer
    protocol.errorReceived = errors.append
    return protocol, transport, errors


def _facade(attach: Callable[[Server, Callable[[Any], Any]], object],
            answer: Callable[[Any], Any]) -> Tuple[Any, RecordingTransport, List[Exception]]:
    server = Server("pw", tlsOptions=object(), reactor=Clock())
    errors: List[Exception] = []
    server.on("error", lambda i, e: errors.append(e))
    attach(server, answer)
    protocol, transport = connectProtocol(server.factory)
    protocol.dataReceived(b'{"password":"pw"}\n')
    transport.clear()
    return protocol, transport, errors


def byResSend(answer: Callable[[Any], Any]) -> Tuple[Any, RecordingTransport, List[Exception]]:
    """
    C{res.send} with the result, once it is there (a Deferred's result, a
    coroutine's) -- as an application using the event API would.
    """
    def onRequest(connectionId: int, request: Any, res: Responder) -> None:
        result = answer(request)
        if isinstance(result, Deferred):
            result.addCallback(res.send)
        elif result is not None:
            res.send(result)

    return _facade(lambda server, _: server.on("request", onRequest), answer)


def byHandler(answer: Callable[[Any], Any]) -> Tuple[Any, RecordingTransport, List[Exception]]:
    class Handler:
        def request(self, connectionId: int, request: Any) -> Any:
            return answer(request)

    return _facade(lambda server, _: attachHandler(server, Handler()), answer)


ANSWERERS = [pytest.param(byHook, id="hook"), pytest.param(byResSend, id="res.send"),
             pytest.param(byHandler, id="handler")]


@pytest.mark.parametrize("answerer", ANSWERERS)
@pytest.mark.parametrize("answer", [
    pytest.param(lambda r: {"v": r["q"]}, id="dict"),
    pytest.param(lambda r: succeed({"v": r["q"]}), id="deferred"),
])
def test_answered(answerer: Answerer, answer: Callable[[Any], Any]) -> None:
    """
    A dict, now or through a Deferred, is the response.
    """
    protocol, transport, errors = answerer(answer)
    protocol.dataReceived(b'{"q":3,"requestId":1}\n')
    assert transport.lines() == [b'{"v":3,"responseId":1}']
    assert errors == []


@pytest.mark.parametrize("answerer", [pytest.param(byHook, id="hook"),
                                      pytest.param(byHandler, id="handler")])
def test_coroutineAnswers(answerer: Answerer) -> None:
    """
    A coroutine's result is the response.
    """
    async def answer(request: Any) -> Any:
        return {"v": request["q"]}

    protocol, transport, errors = answerer(answer)
    protocol.dataReceived(b'{"q":4,"requestId":2}\n')
    assert transport.lines() == [b'{"v":4,"responseId":2}']


@pytest.mark.parametrize("answerer", ANSWERERS)
def test_noneAnswersNothing(answerer: Answerer) -> None:
    """
    L{None} sends nothing and reports nothing: the requester times out.
    """
    protocol, transport, errors = answerer(lambda r: None)
    protocol.dataReceived(b'{"requestId":1}\n')
    assert transport.lines() == [] and errors == []


@pytest.mark.parametrize("answerer", ANSWERERS)
@pytest.mark.parametrize("answer, why", [
    pytest.param(lambda r: {"requestId": 9}, "reserved", id="reserved key"),
    pytest.param(lambda r: {"bad": float("nan")}, "Out of range float", id="NaN"),
    pytest.param(lambda r: succeed({"bad": object()}), "not JSON serializable", id="later"),
])
def test_unsendableReported(answerer: Answerer, answer: Callable[[Any], Any], why: str) -> None:
    """
    A response that cannot be sent is reported to the connection's errors,
    naming the request, and nothing is sent; the connection carries on.
    """
    protocol, transport, errors = answerer(answer)
    protocol.dataReceived(b'{"requestId":4}\n')
    assert transport.lines() == []
    [error] = errors
    assert isinstance(error, InvalidOutgoingMessage)
    assert "request 4" in str(error) and why in str(error)
    assert not transport.disconnecting


def test_notADictReported() -> None:
    """
    A hook answering with something other than a dict is told so.
    """
    protocol, transport, errors = byHook(lambda r: ["a", "list"])
    protocol.dataReceived(b'{"requestId":2}\n')
    assert transport.lines() == []
    assert "request 2" in str(errors[0]) and "must be a dict" in str(errors[0])


@pytest.mark.parametrize("answerer", [pytest.param(byHook, id="hook"),
                                      pytest.param(byHandler, id="handler")])
def test_failureLogged(answerer: Answerer, logged: List[LogEvent]) -> None:
    """
    A handler whose answer fails is logged with the failure, and nothing is
    sent; the connection carries on.  (An application using C{res.send}
    never hands its failures to the path.)
    """
    protocol, transport, errors = answerer(lambda r: fail(RuntimeError("later boom")))
    protocol.dataReceived(b'{"requestId":7}\n')
    assert transport.lines() == [] and errors == []
    failures = [e for e in logged if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
    assert failures[0]["requestId"] == 7
    assert not transport.disconnecting


@pytest.mark.parametrize("answerer", ANSWERERS)
def test_raisingLogged(answerer: Answerer, logged: List[LogEvent]) -> None:
    """
    A handler that raises is logged with the exception, and nothing is
    sent; the connection carries on.
    """
    def answer(request: Any) -> Any:
        raise RuntimeError("boom")

    protocol, transport, errors = answerer(answer)
    protocol.dataReceived(b'{"requestId":7}\n')
    assert transport.lines() == [] and errors == []
    failures = [e for e in logged if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    assert not transport.disconnecting


@pytest.mark.parametrize("answerer", ANSWERERS)
def test_answerAfterCloseReported(answerer: Answerer) -> None:
    """
    An answer that comes after the connection has gone is reported as
    L{NotConnected}, naming the request.
    """
    pending: Deferred[Any] = Deferred()
    protocol, transport, errors = answerer(lambda r: pending)
    protocol.dataReceived(b'{"requestId":5}\n')
    transport.loseConnection()
    pending.callback({"late": True})
    assert transport.lines() == []
    assert len(errors) == 1 and isinstance(errors[0], NotConnected)
    assert "request 5" in str(errors[0])


def test_responderOnce() -> None:
    """
    A L{Responder} is answered once, before or after the answer path asks
    for its result; a second answer raises L{AlreadyAnswered}.
    """
    early = Responder()
    early.send({"a": 1})
    assert early.result() == {"a": 1}
    with pytest.raises(AlreadyAnswered):
        early.answerWith(None)
    late = Responder()
    result = late.result()
    assert isinstance(result, Deferred) and not result.called
    late.answerWith(succeed({"b": 2}))
    assert result.result == {"b": 2}
    with pytest.raises(AlreadyAnswered):
        late.send({"b": 3})
