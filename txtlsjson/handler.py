"""
Application handlers for the server run by C{twistd tlsjson}.

A handler is any object with some of these methods (missing ones are
skipped); C{connectionId} is the server's id of a client connection:

  - C{authenticated(connectionId, peer)}: a client authenticated;
  - C{message(connectionId, message)}: a message arrived;
  - C{request(connectionId, request)}: a request arrived; return the response
    (a dict, or a Deferred or coroutine resulting in one; C{None} for no
    response);
  - C{close(connectionId)}: a connection is gone;
  - C{timeout(connectionId)}: a client missed a keepalive ping.

C{--handler package.module:name} names either such an object, or a callable
(a class, say) that takes the L{Server} and returns one -- use that form to
send to clients (C{server.send(id, obj)}, C{server.request(id, obj)}).
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.logger import Logger

from txtlsjson.errors import HandlerError
from txtlsjson.server import Server
from txtlsjson.wire import JSONObject

#: The methods a handler may have.
HANDLER_METHODS = ("authenticated", "message", "request", "close", "timeout")


class EchoHandler:
    """
    The built-in handler: answers each request with its own payload, so
    that clients can be tried against the server at once, and logs the
    first messages -- then only how many came, every C{interval} seconds,
    so that a client sending thousands does not flood the log (nor slow
    the server down writing it).
    """

    log = Logger()

    def __init__(self, reactor: Any = None, logFirst: int = 10, interval: float = 10.0) -> None:
        """
        @param reactor: runs the counting timer; the global reactor by
            default.
        @param logFirst: how many messages are logged one by one.
        @param interval: seconds between counts of the messages not logged.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self._reactor = reactor
        self._logFirst = logFirst
        self._interval = interval
        self._logged = 0
        self._unlogged = 0
        self._report: Any = None

    def message(self, connectionId: int, message: JSONObject) -> None:
        """
        Log the message, or count it.
        """
        if self._logged < self._logFirst:
            self._logged += 1
            self.log.info("message from client {connectionId}: {message!r}",
                          connectionId=connectionId, message=message)
            if self._logged == self._logFirst:
                self.log.info("further messages are counted, not logged: a count every "
                              "{interval} seconds", interval=self._interval)
            return
        self._unlogged += 1
        if self._report is None:
            self._report = self._reactor.callLater(self._interval, self._count)

    def _count(self) -> None:
        # The timer runs only while messages come: the next one starts it.
        self._report = None
        count, self._unlogged = self._unlogged, 0
        self.log.info("{count} more messages in the last {interval} seconds",
                      count=count, interval=self._interval)

    def request(self, connectionId: int, request: JSONObject) -> JSONObject:
        """
        Echo the request.
        """
        return request


def loadHandler(spec: str, server: Server) -> Any:
    """
    Import the handler named by C{spec} (C{"package.module:name"}, where
    C{name} may be dotted) and, if it is a factory rather than a handler,
    call it with C{server}.

    @raise HandlerError: with a one-line explanation.
    """
    target = findHandler(spec)
    if not _isHandler(target):
        try:
            target = target(server)
        except Exception as e:
            raise HandlerError(f"calling {spec}(server) failed: {e!r}") from None
        if not _isHandler(target):
            raise HandlerError(
                f"{spec}(server) returned {target!r}, which has none of "
                f"{', '.join(HANDLER_METHODS)}")
    return target


def findHandler(spec: str) -> Any:
    """
    Import what C{spec} names and check that it is a handler or a callable
    that may make one, without calling it (as a parent process checks what
    its workers will load).

    @raise HandlerError: with a one-line explanation.
    """
    moduleName, sep, attribute = spec.partition(":")
    if not sep or not moduleName or not attribute:
        raise HandlerError(f"--handler must look like package.module:name, not {spec!r}")
    try:
        target: Any = importlib.import_module(moduleName)
    except Exception as e:
        raise HandlerError(f"cannot import handler module {moduleName!r}: {e!r}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerError(f"module {moduleName!r} has no {attribute!r}") from None
    if not _isHandler(target) and not callable(target):
        raise HandlerError(
            f"{spec} is neither a handler (with any of {', '.join(HANDLER_METHODS)}) "
            "nor a callable that makes one")
    return target


def _isHandler(candidate: Any) -> bool:
    if isinstance(candidate, type):
        return False
    return any(callable(getattr(candidate, name, None)) for name in HANDLER_METHODS)


def attachHandler(server: Server, handler: Any) -> None:
    """
    Route C{server}'s events to C{handler}'s methods.
    """
    for name in ("authenticated", "message", "close", "timeout"):
        method = getattr(handler, name, None)
        if callable(method):
            server.on(name, method)
    request = getattr(handler, "request", None)
    if callable(request):
        # Its result, whatever it is, goes down the one answer path (see
        # txtlsjson.answers); if it raises, the emitter logs it.
        server.on("request", lambda connectionId, payload, res:
                  res.answerWith(request(connectionId, payload)))
