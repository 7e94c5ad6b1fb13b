"""
A small event emitter for the tls-json-style API (C{.on(event, handler)}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, FrozenSet, Optional, Tuple, TypeVar

from twisted.internet.error import ConnectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.errors import ConnectionFailed, NotConnected, TLSJSONError
from txtlsjson.wire import JSONObject

if TYPE_CHECKING:
    from txtlsjson.protocol import TLSJSONProtocol

Handler = TypeVar("Handler", bound=Callable[..., Any])


class EventEmitter:
    """
    Calls the handlers registered for an event, in registration order.

    A handler that raises is logged and does not stop the others or the
    connection.  An C{error} event with no handler is logged, so errors are
    never lost silently.
    """

    log = Logger()

    #: The names of the events this emitter emits.
    events: ClassVar[FrozenSet[str]] = frozenset()

    def __init__(self) -> None:
        # Tuples, replaced on every change: emitting iterates without a copy
        # and is not disturbed by handlers that add or remove handlers.
        self._handlers: Dict[str, Tuple[Callable[..., Any], ...]] = {}

    def on(self, event: str, handler: Handler) -> Handler:
        """
        Call C{handler} whenever C{event} is emitted.

        @return: C{handler}, so that C{on} can serve as a decorator factory's
            target.
        @raise ValueError: for an unknown event name.
        """
        if event not in self.events:
            raise ValueError(
                f"unknown event {event!r}; {type(self).__name__} emits "
                f"{', '.join(sorted(self.events))}")
        if not callable(handler):
            raise TypeError(f"handler for {event!r} must be callable, not {handler!r}")
        self._handlers[event] = self._handlers.get(event, ()) + (handler,)
        return handler

    def off(self, event: str, handler: Callable[..., Any]) -> None:
        """
        Stop calling C{handler} for C{event}.  Unknown pairs are ignored.
        """
        handlers = list(self._handlers.get(event, ()))
        if handler in handlers:
            handlers.remove(handler)
            self._handlers[event] = tuple(handlers)

    def listenerCount(self, event: str) -> int:
        """
        @return: how many handlers C{event} has.
        """
        return len(self._handlers.get(event, ()))

    def emit(self, event: str, *args: Any) -> None:
        """
        Call C{event}'s handlers with C{args}.
        """
        handlers = self._handlers.get(event)
        if not handlers:
            if event == "error":
                self.log.warn("unhandled error event: {args}", args=args)
            return
        for handler in handlers:
            try:
                handler(*args)
            except Exception:
                self._handlerRaised(event, handler)

    def _handlerRaised(self, event: str, handler: Callable[..., Any]) -> None:
        """
        Log the exception C{handler} raised for C{event} (being handled),
        for L{emit} and for the paths that call an event's handlers
        themselves.
        """
        self.log.failure("{event!r} handler {handler!r} raised", event=event, handler=handler)


def sendOrReport(emitter: EventEmitter, protocol: Optional["TLSJSONProtocol"],
                 message: JSONObject, *where: Any) -> None:
    """
    Send C{message} on C{protocol}; if there is none, or it is not
    authenticated (yet, or any more), emit C{error} with C{where} and
    L{NotConnected} instead, as tls-json does.

    @raise InvalidOutgoingMessage: if the message cannot be sent as it is;
        nothing was sent.
    """
    try:
        if protocol is not None:
            # The session refuses if it is not authenticated.
            protocol.send(message)
            return
        raise NotConnected()
    except NotConnected as e:
        emitter.emit("error", *where, e)


def unexpectedEnd(reason: Failure, closeReason: Optional[TLSJSONError]) -> Optional[TLSJSONError]:
    """
    The error to report for a connection's end, if any: not for a clean
    close, nor for a drop that this side decided (and reported) itself.
    """
    if closeReason is not None or reason.check(ConnectionDone):
        return None
    return ConnectionFailed(reason)
