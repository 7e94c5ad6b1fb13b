"""
Tests for L{txtlsjson.requests.PendingRequests}: one timer per connection,
each request timed out at its own deadline.
"""

from __future__ import annotations

from typing import Any, List

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from txtlsjson.errors import ConnectionLost, RequestTimeout
from txtlsjson.requests import PendingRequests


def test_eachAtItsOwnDeadline() -> None:
    """
    Requests issued at 0, 1 and 3.5 s time out exactly C{timeout} seconds
    after each was issued, with a single timer scheduled at any moment.
    """
    clock = Clock()
    table = PendingRequests(clock, 10)
    failed: List[Any] = []
    for delay in (0, 1, 2.5):
        clock.advance(delay)
        ident = table.nextId
        def fail(f: Failure, i: int = ident) -> None:
            failed.append((i, clock.seconds(), f))

        table.issue().addErrback(fail)
        assert len(clock.getDelayedCalls()) == 1
    assert [c.getTime() for c in clock.getDelayedCalls()] == [10]
    clock.advance(10 - clock.seconds())
    assert [(i, t) for i, t, _ in failed] == [(1, 10)]
    clock.advance(1)
    assert [(i, t) for i, t, _ in failed] == [(1, 10), (2, 11)]
    clock.advance(2.4)
    assert len(failed) == 2
    clock.advance(0.1)
    assert [(i, t) for i, t, _ in failed] == [(1, 10), (2, 11), (3, 13.5)]
    assert all(f.check(RequestTimeout) for _, _, f in failed)
    assert clock.getDelayedCalls() == []


def test_answeredNeverTimeOut() -> None:
    """
    A request answered before its deadline does not time out, and the timer
    moves on to the next pending one; with none pending, no timer is left.
    """
    clock = Clock()
    table = PendingRequests(clock, 5)
    first, second = table.issue(), table.issue()
    results: List[Any] = []
    first.addBoth(results.append)
    second.addBoth(results.append)
    clock.advance(1)
    table.resolve(1, {"a": 1})
    assert results == [{"a": 1}]
    clock.advance(4)
    assert results[1].check(RequestTimeout)
    assert clock.getDelayedCalls() == []
    third = table.issue()
    table.resolve(3, {})
    assert third.called and clock.getDelayedCalls() == []


def test_requestsOneAfterAnotherShareTheTimer() -> None:
    """
    Requests issued each from the last one's response share one timer,
    made once; each still times out at its own deadline (the timer, set
    for an earlier one's, fires early and is set again); and once a
    response issues nothing more, no timer is left.
    """
    clock = Clock()
    table = PendingRequests(clock, 5)
    made: List[Any] = []
    original = clock.callLater

    def callLater(*args: Any, **kwargs: Any) -> Any:
        call = original(*args, **kwargs)
        made.append(call)
        return call

    clock.callLater = callLater
    results: List[Any] = []

    def nextOne(response: Any, left: int) -> None:
        results.append(response)
        if left:
            clock.advance(1)
            table.issue().addBoth(nextOne, left - 1)

    table.issue().addCallback(nextOne, 3)
    for ident in (1, 2, 3):
        table.resolve(ident, {"n": ident})
    assert results == [{"n": 1}, {"n": 2}, {"n": 3}] and len(made) == 1
    # Request 4, issued at 3 s from request 3's response, still waits; the
    # one timer, set at 0 s for 5 s, finds it not expired and is set again
    # for its own deadline, 8 s.
    clock.advance(5 - clock.seconds())
    assert len(results) == 3 and [c.getTime() for c in clock.getDelayedCalls()] == [8]
    clock.advance(3)
    assert results[3].check(RequestTimeout) and clock.getDelayedCalls() == []
    table.issue().addCallback(results.append)
    table.resolve(5, {"last": True})
    assert results[-1] == {"last": True} and clock.getDelayedCalls() == []


def test_cancelLastStopsTimer() -> None:
    """
    Cancelling the only pending request stops the timer.
    """
    clock = Clock()
    table = PendingRequests(clock, 5)
    d = table.issue()
    d.addErrback(lambda f: f.trap(CancelledError))
    d.cancel()
    assert len(table) == 0 and clock.getDelayedCalls() == []


def test_errbackMayIssue() -> None:
    """
    A timeout's errback may issue a new request; it gets its own timer.
    """
    clock = Clock()
    table = PendingRequests(clock, 5)
    retried: List[Any] = []
    table.issue().addErrback(lambda f: retried.append(table.issue()))
    clock.advance(5)
    assert len(retried) == 1 and len(table) == 1
    assert [c.getTime() for c in clock.getDelayedCalls()] == [10]


def test_failAll() -> None:
    """
    Losing the connection fails every pending request and stops the timer.
    """
    clock = Clock()
    table = PendingRequests(clock, 5)
    failures: List[Any] = []
    for _ in range(3):
        table.issue().addErrback(failures.append)
    table.failAll(ConnectionLost())
    assert [f.check(ConnectionLost) for f in failures] == [ConnectionLost] * 3
    assert clock.getDelayedCalls() == []


def test_noTimeout() -> None:
    """
    A timeout of 0 schedules nothing.
    """
    clock = Clock()
    table = PendingRequests(clock, 0)
    table.issue()
    assert clock.getDelayedCalls() == []
