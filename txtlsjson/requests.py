"""
The table of a connection's outstanding requests, free of I/O.

Like AMP's C{BoxDispatcher}: ids count from 1 per connection and per sender,
each pending request is a L{Deferred}, every pending one errbacks when the
connection is lost, and each is timed out through the injected clock.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txtlsjson.errors import RequestTimeout
from txtlsjson.wire import JSONObject


class _RequestDeferred(Deferred[JSONObject]):
    """
    The Deferred of one request, carrying its id for the canceller (a
    subclass, so that the attribute does not depend on C{Deferred} keeping
    an instance dict).
    """

    requestId: int


class PendingRequests:
    """
    Outstanding requests of one connection, keyed by request id.

    Timeouts cost one timer per connection, not one per request: requests
    are kept in the order they were issued, which (with one timeout for
    all) is the order of their deadlines, so a single timer finds every
    expired request at the front.  It is set for the oldest deadline, or
    an earlier one (that of a request answered since, when the next was
    issued from its response's callback), in which case it fires early,
    finds nothing expired and is set again.  It runs only while a request
    waits.

    @ivar nextId: the id the next L{issue} call will use.
    """

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        """
        @param clock: schedules the request timeouts.
        @param timeout: seconds a request may wait for its response; C{0}
            means no timeout.
        """
        self._clock = clock
        self._timeout = timeout
        # id -> (Deferred, when issued), in the order issued.
        self._pending: Dict[int, Tuple["Deferred[JSONObject]", float]] = {}
        self._timer: Optional[IDelayedCall] = None
        self.nextId = 1
        # Bound once: a request costs no closure and no method binding.
        self._canceller = self._forgetCancelled
        self._seconds = clock.seconds

    def __len__(self) -> int:
        """
        @return: how many requests are waiting for a response.
        """
        return len(self._pending)

    def issue(self) -> "Deferred[JSONObject]":
        """
        Register a request under L{nextId} and advance it.

        @return: a Deferred that fires with the response, fails with
            L{RequestTimeout} after the timeout, and can be cancelled (which
            forgets the request; a late response is then unknown).
        """
        ident = self.nextId
        self.nextId = ident + 1
        d = _RequestDeferred(self._canceller)
        d.requestId = ident
        self._pending[ident] = (d, self._seconds())
        if self._timer is None and self._timeout > 0:
            self._timer = self._clock.callLater(self._timeout, self._expire)
        return d

    def _forgetCancelled(self, d: "Deferred[JSONObject]") -> None:
        self._pending.pop(cast(_RequestDeferred, d).requestId, None)
        if not self._pending:
            self._stopTimer()

    def _stopTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _expire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        timeout = self._timeout
        pending = self._pending
        expired = []
        for ident, (_, issued) in pending.items():
            if issued + timeout > now:
                break
            expired.append(ident)
        deferreds = [pending.pop(ident)[0] for ident in expired]
        if pending:
            oldest = next(iter(pending.values()))[1]
            self._timer = self._clock.callLater(max(0.0, oldest + timeout - now), self._expire)
        # Errbacks last: they may issue, answer or cancel other requests.
        for d in deferreds:
            d.errback(RequestTimeout())

    def resolve(self, ident: object, response: JSONObject) -> bool:
        """
        Fire the request C{ident} with its response.

        @return: C{False} if no such request is pending (never issued,
            answered already, timed out or cancelled).
        """
        if type(ident) is not int:
            # True and 1.0 equal 1 as dict keys: they must not answer id 1.
            return False
        entry = self._pending.pop(ident, None)
        if entry is None:
            return False
        try:
            entry[0].callback(response)
        finally:
            # After the callback, which may issue the next request: requests
            # made one after another, each from the last one's response
            # (the way a client awaits them), then share one timer rather
            # than each making and cancelling its own.
            if not self._pending:
                self._stopTimer()
        return True

    def failAll(self, error: Exception) -> None:
        """
        Errback every pending request with C{error}, forget them all, and
        stop the timer.
        """
        pending, self._pending = self._pending, {}
        self._stopTimer()
        for d, _ in pending.values():
            d.errback(error)
