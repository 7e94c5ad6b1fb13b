"""
The phase arithmetic of C{benchmarks/timeline.py} (its measurements are
run by hand: C{python -m benchmarks.timeline}).
"""

from __future__ import annotations

from typing import List, Tuple

from benchmarks.timeline import PHASES, ROUND_TRIP, _Marks


def roundTrips(trips: List[List[int]], start: int = 0) -> List[Tuple[str, int]]:
    """
    The marks of round trips, one after the other, each given as its
    phases' durations in nanoseconds: each round trip's closing epoll
    return is the next one's opening.
    """
    marks = []
    at = start
    for durations in trips:
        for name, duration in zip(ROUND_TRIP[:-1], durations):
            marks.append((name, at))
            at += duration
    marks.append((ROUND_TRIP[-1], at))
    return marks


def test_phasesOfEachRoundTrip() -> None:
    """
    Each phase is the time from one mark of a round trip to the next, the
    last one (asleep) ending at the next round trip's epoll return; the
    first tenth of the round trips (warming up) is left out.
    """
    marks = _Marks()
    # Ten slow round trips first, which are the tenth left out.
    marks.marks = roundTrips([[9000] * 7] * 10 + [[1000, 2000, 3000, 4000, 5000, 6000, 7000]] * 90)
    phases = marks.phases()
    assert phases["roundTrips"] == 90
    assert [phases[label] for label in PHASES] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_otherEventsAreSkipped() -> None:
    """
    A turn whose marks are not a plain round trip's (a read that brought
    no request, a send with no read before it) is not counted.
    """
    marks = _Marks()
    odd = [("E", 0), ("r", 10), ("d", 20), ("e", 30), ("E", 40), ("s", 50), ("S", 60), ("e", 70)]
    marks.marks = odd + roundTrips([[1000] * 7] * 20, start=100)
    phases = marks.phases()
    assert phases["roundTrips"] == 18
    assert all(phases[label] == 1.0 for label in PHASES)
