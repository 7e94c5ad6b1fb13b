"""
The one path from a received request to its response.

As in AMP (C{_commandReceived -> dispatchCommand -> maybeDeferred(responder)
-> formatAnswer}), every request goes the same way, whoever answers it:

    session -> protocol.sessionRequest -> L{answerRequest}
            -> protocol.requestReceived(request)   (the hook)
            -> L{answer}(result)                   (a dict, None, a Deferred, a coroutine)
            -> session.respond

The tls-json-style C{res.send(obj)} and C{twistd tlsjson --handler} are
facades over it: their C{requestReceived} emits the C{request} event with a
L{Responder} and returns L{Responder.result}.  So one set of rules holds for
all of them:

  - a dict is the response, sent at once; L{None} sends nothing (the
    requester times out);
  - a Deferred or a coroutine is waited for, and its result taken as above;
  - a hook that raises, or whose Deferred fails, is logged, and nothing is
    sent;
  - a response that cannot be sent (not a dict, not JSON, too long) and a
    response that finds the connection gone are reported to the
    connection's C{errorReceived} (the C{error} event), and nothing is
    sent;
  - a request is answered once: a second C{res.send} raises
    L{AlreadyAnswered}.
"""

from __future__ import annotations

from inspect import isawaitable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, cast

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.errors import AlreadyAnswered, InvalidOutgoingMessage, NotConnected
from txtlsjson.wire import JSONObject

if TYPE_CHECKING:
    from txtlsjson.protocol import TLSJSONProtocol

_log = Logger(namespace="txtlsjson.answers")


def asDeferred(result: Any) -> Any:
    """
    A coroutine (or other awaitable) returned by an application hook, as a
    Deferred; any other result as it is.
    """
    if isawaitable(result) and not isinstance(result, Deferred):
        return ensureDeferred(cast("Coroutine[Any, Any, Any]", result))
    return result


def answerRequest(connection: "TLSJSONProtocol", requestId: int, request: JSONObject) -> None:
    """
    Call C{connection}'s C{requestReceived} hook with request C{requestId}
    and send what it answers, by L{answer}'s rules.

    It is C{TLSJSONProtocol.sessionRequest} itself, and a dict -- the
    common answer -- is sent here rather than through L{answer}: every
    request takes this path, and each call saved is a few percent of
    answering one (C{benchmarks/RESULTS.rst}).
    """
    try:
        result = connection.requestReceived(request)
    except Exception:
        _handlerFailed(Failure(), connection, requestId)
        return
    if type(result) is dict:
        _send(result, connection, requestId)
    else:
        answer(connection, requestId, result)


def answer(connection: "TLSJSONProtocol", requestId: int, result: Any) -> "Optional[Deferred[Any]]":
    """
    Send C{result}, a hook's answer to request C{requestId}, by the rules
    of this module: now if it is a dict, later if it is a Deferred or a
    coroutine, never if it is L{None}.

    @return: the Deferred the answer waits for, if it waits; its callbacks
        run after the answer is sent (or the failure logged).
    """
    if result is None:
        return None
    result = asDeferred(result)
    if isinstance(result, Deferred):
        return result.addCallbacks(_send, _handlerFailed,
                                   callbackArgs=(connection, requestId),
                                   errbackArgs=(connection, requestId))
    _send(result, connection, requestId)
    return None


def answerTimedRequest(connection: Any, requestId: int, request: JSONObject) -> None:
    """
    L{answerRequest} for a metered connection (one with C{_metrics}, a
    L{ServerMetrics<txtlsjson.metrics.ServerMetrics>}, and C{_readAt}): it
    counts the request and times its answer from the read that brought the
    request (C{_readAt}, a C{perf_counter} reading) until the answer is
    handed to the transport, or the hook's failure logged; a request the
    hook answers with L{None} is not timed.

    An answer given at once goes out with the others of the same read, at
    the read's end: it is only counted here (C{_answeredInRead}), and the
    connection times all of them with one clock reading when the read is
    done.  A metered server's C{sessionRequest} itself, as L{answerRequest}
    is the plain one's.
    """
    connection._metrics.requestsReceived += 1
    readAt = connection._readAt
    if readAt is None:
        # Not in a read (lines held during the password check, delivered
        # later): timed from now.
        readAt = perf_counter()
    try:
        result = connection.requestReceived(request)
    except Exception:
        _handlerFailed(Failure(), connection, requestId)
        connection._metrics.answerDurations.observe(perf_counter() - readAt)
        return
    if type(result) is dict:
        _send(result, connection, requestId)
        if connection._readAt is None:
            connection._metrics.answerDurations.observe(perf_counter() - readAt)
        else:
            connection._answeredInRead += 1
        return
    if result is None:
        return
    durations = connection._metrics.answerDurations
    waiting = answer(connection, requestId, result)
    if waiting is None:
        durations.observe(perf_counter() - readAt)
    else:
        waiting.addBoth(_observe, durations.observe, readAt)


def _observe(result: Any, observe: Callable[[float], None], start: float) -> Any:
    observe(perf_counter() - start)
    return result


def _send(response: Any, connection: "TLSJSONProtocol", requestId: int) -> None:
    session = connection.session
    if response is None or session is None:
        return
    try:
        session.respond(requestId, response)
    except NotConnected:
        # The requester's side fails the request with "connection lost".
        connection.errorReceived(NotConnected(
            f"the answer to request {requestId} found the connection gone; not sent"))
    except InvalidOutgoingMessage as e:
        connection.errorReceived(InvalidOutgoingMessage(
            f"the answer to request {requestId} cannot be sent: {e}"))


def _handlerFailed(failure: Failure, connection: "TLSJSONProtocol", requestId: int) -> None:
    _log.failure("the request handler failed; request {requestId} from {connection} "
                 "not answered", failure, requestId=requestId, connection=connection)


#: A L{Responder} that has not been answered yet.
_UNANSWERED: Any = object()


class Responder:
    """
    The C{res} of a C{request} event: C{res.send(obj)} answers the request,
    now or later, once.

    It goes through L{answer}: a response that cannot be sent, or that
    finds the connection gone, is reported as an C{error} event.
    """

    # One is made for every request received: two slots, no dict.
    __slots__ = ("_result", "_later")

    def __init__(self) -> None:
        self._result: Any = _UNANSWERED
        # The Deferred handed to the answer path if the event's handlers
        # returned without answering.
        self._later: Optional[Deferred[Any]] = None

    def send(self, response: JSONObject) -> None:
        """
        Answer the request with C{response}.

        @raise AlreadyAnswered: if the request has been answered already;
            nothing is sent.
        """
        if self._result is not _UNANSWERED:
            raise AlreadyAnswered("this request has been answered already")
        self._result = response
        later = self._later
        if later is not None:
            response = asDeferred(response)
            if isinstance(response, Deferred):
                response.chainDeferred(later)
            else:
                later.callback(response)

    def answerWith(self, result: Any) -> None:
        """
        Answer the request with what a handler returned: a dict, L{None}
        (no response), or a Deferred or coroutine resulting in either.

        @raise AlreadyAnswered: as L{send}.
        """
        self.send(result)

    def result(self) -> Any:
        """
        For the facades' C{requestReceived}: the answer if it has been
        given, else a Deferred that fires with it when it is.
        """
        if self._result is not _UNANSWERED:
            return self._result
        later = self._later = Deferred()
        return later
