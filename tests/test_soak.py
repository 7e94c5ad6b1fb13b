"""
A short soak (the long one is C{python -m benchmarks.soak}): 30 clients,
a third of them behind a proxy that keeps cutting them, sending and
requesting both ways against a real twistd server for a few seconds.
"""

from __future__ import annotations

from twisted.internet import reactor

from benchmarks.soak import check, runSoak

from .inreactor import inReactor


@inReactor
async def test_shortSoak() -> None:
    """
    Every request resolves or fails, nothing is duplicated, the server is
    left with no connection or timer and its memory near its baseline.
    """
    report = await runSoak(reactor, clients=30, seconds=4, flakyFraction=1 / 3)
    assert check(report) == [], report
    # The faults did bite: connections were cut and clients came back.
    assert report["cuts"] > 10
    assert report["authentications"] > 30 + report["cuts"] // 2
