"""
Waiting for an event that happens once: the Deferreds behind
C{whenAuthenticated()} and C{whenClosed()}.
"""

from __future__ import annotations

from typing import Generic, List, TypeVar

from twisted.internet.defer import Deferred

_T = TypeVar("_T")


class Observers(Generic[_T]):
    """
    The Deferreds handed out to those waiting for one event, each fired
    once, in the order handed out (as txtorcon's C{SingleObserver}, which
    also serves those who come after the event).

    A public observer method returns L{whenFired}'s fresh Deferred, never a
    shared one: one caller's callbacks cannot then change what another
    receives.
    """

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: List[Deferred[_T]] = []

    def __len__(self) -> int:
        """
        @return: how many Deferreds wait.
        """
        return len(self._waiting)

    def whenFired(self) -> "Deferred[_T]":
        """
        @return: a new Deferred that L{fire} or L{fail} will fire.
            Cancelling it stops the wait (it fails with C{CancelledError})
            and nothing else.
        """
        d: Deferred[_T] = Deferred(self._forget)
        self._waiting.append(d)
        return d

    def _forget(self, d: "Deferred[_T]") -> None:
        if d in self._waiting:
            self._waiting.remove(d)

    def fire(self, result: _T) -> None:
        """
        Fire every waiting Deferred with C{result}; they wait no more.
        """
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(result)

    def fail(self, error: BaseException) -> None:
        """
        Fail every waiting Deferred with C{error}; they wait no more.
        """
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(error)
