"""
Slowing down password guessing, free of I/O.

Each peer address gets one password check at a time; the answer to every
attempt from an address with recent failures waits, the wait doubling with
each failure up to a maximum.  Guessing from one address is then limited to
about one guess per C{maxDelay} seconds, however many connections it opens,
while clients at other addresses are answered at once.  An IPv6 address
counts by its /64 network (L{addressKey}): one host is usually given a
whole /64 and could otherwise guess from a fresh address every time.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from typing import Deque, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from txtlsjson.errors import TooManyAttempts
from txtlsjson.settings import ServerSettings

_DEFAULTS = ServerSettings()


def addressKey(host: str) -> str:
    """
    The address under which attempts from C{host} are counted: an IPv4
    address itself (also when it arrives as an IPv4-mapped IPv6 address),
    an IPv6 address's /64 network, anything else (a UNIX socket's path) as
    it is.

    @param host: a peer's host, as its address reports it.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return host


class PasswordPacer(Protocol):
    """
    What paces password checks: an L{AuthenticationThrottle}, or a
    L{Cluster<txtlsjson.cluster.Cluster>}, which has one node pace each
    address for the whole cluster.
    """

    def attempt(self, address: str) -> "Deferred[None]":
        """
        Queue a password attempt from C{address}: the Deferred fires when it
        may be checked; cancelling it withdraws it.

        @raise TooManyAttempts: if too many attempts already wait.
        """

    def finished(self, address: str, succeeded: bool) -> None:
        """
        The attempt whose Deferred fired has been answered.
        """


class _Address:
    def __init__(self) -> None:
        self.failures = 0
        self.lastFailure = 0.0
        self.waiting: Deque[Deferred[None]] = deque()
        self.active: Optional[Deferred[None]] = None
        self.timer: Optional[IDelayedCall] = None


class AuthenticationThrottle:
    """
    Per-address serialisation and delay of password checks.

    Use: C{d = throttle.attempt(address)}; when C{d} fires, check the
    password and call L{finished}; if giving up first, cancel C{d}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        baseDelay: float = _DEFAULTS.authFailureDelay,
        maxDelay: float = _DEFAULTS.authFailureMaxDelay,
        forgetAfter: float = 600.0,
        maxWaiting: int = 16,
        maxAddresses: int = 100_000,
    ) -> None:
        """
        @param baseDelay: the wait after one failure, in seconds; it doubles
            with each further failure.  C{0} disables the slow-down (checks
            stay one at a time per address).
        @param maxDelay: the longest wait.
        @param forgetAfter: seconds after the last failure when an address
            starts afresh.
        @param maxWaiting: attempts that may wait per address; more are
            refused at once.
        @param maxAddresses: addresses remembered at most (the oldest idle
            ones are forgotten first), so memory stays bounded.
        """
        self._clock = clock
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.forgetAfter = forgetAfter
        self.maxWaiting = maxWaiting
        self.maxAddresses = maxAddresses
        self._addresses: "OrderedDict[str, _Address]" = OrderedDict()

    def __len__(self) -> int:
        """
        @return: how many addresses are remembered.
        """
        return len(self._addresses)

    def attemptsFrom(self, address: str) -> int:
        """
        @return: how many password attempts from C{address} are being
            delayed or wait their turn.
        """
        entry = self._addresses.get(address)
        if entry is None:
            return 0
        return len(entry.waiting) + (entry.active is not None and not entry.active.called)

    def delayFor(self, address: str) -> float:
        """
        @return: how long the next attempt from C{address} would wait
            before its answer, not counting attempts queued before it.
        """
        entry = self._addresses.get(address)
        if entry is None or entry.failures == 0 or self.baseDelay <= 0:
            return 0.0
        if self._clock.seconds() - entry.lastFailure > self.forgetAfter:
            entry.failures = 0
            return 0.0
        return float(min(self.baseDelay * 2 ** min(entry.failures - 1, 62), self.maxDelay))

    def attempt(self, address: str) -> "Deferred[None]":
        """
        Queue a password attempt from C{address}.

        @return: a Deferred that fires when the attempt may be checked and
            answered; cancelling it withdraws the attempt.
        @raise TooManyAttempts: if C{maxWaiting} attempts already wait.
        """
        entry = self._addresses.get(address)
        if entry is None:
            self._makeRoom()
            entry = self._addresses[address] = _Address()
        elif len(entry.waiting) >= self.maxWaiting:
            raise TooManyAttempts(
                f"{self.maxWaiting} password attempts from {address} are waiting already")

        def withdraw(d: Deferred[None]) -> None:
            if d in entry.waiting:
                entry.waiting.remove(d)
            elif entry.active is d:
                if entry.timer is not None and entry.timer.active():
                    entry.timer.cancel()
                entry.timer = None
                entry.active = None
                self._next(address, entry)

        d: Deferred[None] = Deferred(withdraw)
        entry.waiting.append(d)
        if entry.active is None:
            self._next(address, entry)
        return d

    def finished(self, address: str, succeeded: bool) -> None:
        """
        The attempt whose Deferred fired has been answered.

        @param succeeded: whether the password was right.
        """
        entry = self._addresses.get(address)
        if entry is None:
            return
        if succeeded:
            entry.failures = 0
        else:
            entry.failures += 1
            entry.lastFailure = self._clock.seconds()
            self._addresses.move_to_end(address)
        entry.active = None
        self._next(address, entry)

    def _next(self, address: str, entry: _Address) -> None:
        if entry.active is not None:
            return
        if not entry.waiting:
            if (entry.failures == 0 or self.delayFor(address) == 0) and \
                    self._addresses.get(address) is entry:
                del self._addresses[address]
            return
        d = entry.waiting.popleft()
        entry.active = d
        delay = self.delayFor(address)
        if delay <= 0:
            d.callback(None)
            return

        def release() -> None:
            entry.timer = None
            d.callback(None)

        entry.timer = self._clock.callLater(delay, release)

    def _makeRoom(self) -> None:
        if len(self._addresses) < self.maxAddresses:
            return
        for address, entry in self._addresses.items():
            if entry.active is None and not entry.waiting:
                del self._addresses[address]
                return
