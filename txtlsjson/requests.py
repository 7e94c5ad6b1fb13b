"""
The table of a connection's outstanding requests, free of I/O.

Like AMP's C{BoxDispatcher}: ids count from 1 per connection and per sender,
each pending request is a L{Deferred}, every pending one errbacks when the
connection is lost, and each is timed out through the injected clock.
"""

from __future__ import annotations

from typing import Dict

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from txtlsjson.codec import JSONObject
from txtlsjson.errors import RequestTimeout


def _timedOut(result: object, timeout: float) -> object:
    raise RequestTimeout()


class PendingRequests:
    """
    Outstanding requests of one connection, keyed by request id.

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
        self._pending: Dict[int, "Deferred[JSONObject]"] = {}
        self.nextId = 1

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
        pending = self._pending

        def forget(d: "Deferred[JSONObject]") -> None:
            pending.pop(ident, None)

        d: "Deferred[JSONObject]" = Deferred(forget)
        pending[ident] = d
        if self._timeout > 0:
            d.addTimeout(self._timeout, self._clock, onTimeoutCancel=_timedOut)
        return d

    def resolve(self, ident: object, response: JSONObject) -> bool:
        """
        Fire the request C{ident} with its response.

        @return: C{False} if no such request is pending (never issued,
            answered already, timed out or cancelled).
        """
        d = self._pending.pop(ident, None)  # type: ignore[call-overload]
        if d is None:
            return False
        d.callback(response)
        return True

    def failAll(self, error: Exception) -> None:
        """
        Errback every pending request with C{error} and forget them all.
        """
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(error)
