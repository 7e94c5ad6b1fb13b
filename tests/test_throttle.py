"""
Password guessing is slowed per address; slow readers are dropped before
they cost unbounded memory.  Clock and in-memory transports only.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock

from txtlsjson.errors import AuthenticationFailed, InvalidMessage, SlowConsumer, TooManyAttempts
from txtlsjson.protocol import TLSJSONServerFactory
from txtlsjson.throttle import AuthenticationThrottle, addressKey

from .helpers import authenticatedClient, authenticatedServer, connectProtocol


def test_noFailuresNoWait() -> None:
    """
    An address without failures is answered at once.
    """
    throttle = AuthenticationThrottle(Clock())
    d = throttle.attempt("10.0.0.1")
    assert d.called
    throttle.finished("10.0.0.1", True)
    assert len(throttle) == 0


def test_waitDoublesPerFailure() -> None:
    """
    Each failure doubles the wait before the next answer to that address, up
    to the maximum; a success starts it afresh.
    """
    clock = Clock()
    throttle = AuthenticationThrottle(clock, baseDelay=1, maxDelay=8)
    waits = []
    for _ in range(6):
        waits.append(throttle.delayFor("a"))
        d = throttle.attempt("a")
        clock.advance(waits[-1])
        assert d.called
        throttle.finished("a", False)
    assert waits == [0, 1, 2, 4, 8, 8]
    throttle.attempt("a")
    clock.advance(8)
    throttle.finished("a", True)
    assert throttle.delayFor("a") == 0


def test_oneAtATimePerAddress() -> None:
    """
    Parallel attempts from one address are answered one after another, each
    after its wait: opening more connections does not guess faster.  Other
    addresses are not held up.
    """
    clock = Clock()
    throttle = AuthenticationThrottle(clock, baseDelay=2, maxDelay=100)
    first = throttle.attempt("a")
    throttle.finished("a", False)
    answered: List[float] = []
    for _ in range(3):
        d = throttle.attempt("a")
        def answer(_: object) -> None:
            answered.append(clock.seconds())
            throttle.finished("a", False)

        d.addCallback(answer)
    other = throttle.attempt("b")
    assert first.called and other.called
    assert throttle.attemptsFrom("a") == 3 and throttle.attemptsFrom("c") == 0
    clock.pump([1] * 20)
    assert answered == [2, 6, 14]


def test_forgetAfter() -> None:
    """
    Failures are forgotten C{forgetAfter} seconds after the last one.
    """
    clock = Clock()
    throttle = AuthenticationThrottle(clock, baseDelay=1, forgetAfter=60)
    throttle.attempt("a")
    throttle.finished("a", False)
    assert throttle.delayFor("a") == 1
    clock.advance(61)
    assert throttle.delayFor("a") == 0


def test_tooManyWaiting() -> None:
    """
    More than C{maxWaiting} queued attempts from one address are refused.
    """
    throttle = AuthenticationThrottle(Clock(), maxWaiting=2)
    throttle.attempt("a")
    throttle.attempt("a")
    throttle.attempt("a")
    with pytest.raises(TooManyAttempts):
        throttle.attempt("a")


def test_cancelWithdraws() -> None:
    """
    Cancelling a waiting or delayed attempt withdraws it and lets the next
    one go; no timer is left.
    """
    clock = Clock()
    throttle = AuthenticationThrottle(clock, baseDelay=5)
    throttle.attempt("a")
    throttle.finished("a", False)
    delayed = throttle.attempt("a")
    queued = throttle.attempt("a")
    failures: List[Any] = []
    delayed.addErrback(failures.append)
    delayed.cancel()
    assert failures[0].check(CancelledError)
    assert len(clock.getDelayedCalls()) == 1  # now for `queued`
    queued.addErrback(failures.append)
    queued.cancel()
    assert clock.getDelayedCalls() == []


def test_boundedAddresses() -> None:
    """
    At most C{maxAddresses} addresses are remembered.
    """
    throttle = AuthenticationThrottle(Clock(), maxAddresses=10)
    for i in range(50):
        throttle.attempt(f"10.0.0.{i}")
        throttle.finished(f"10.0.0.{i}", False)
    assert len(throttle) == 10


def attempt(factory: TLSJSONServerFactory, host: str, line: bytes) -> Any:
    address: Any = (IPv6Address if ":" in host else IPv4Address)("TCP", host, 5000)
    protocol, transport = connectProtocol(factory, address)
    errors: List[Any] = []
    protocol.errorReceived = errors.append
    protocol.dataReceived(line)
    return protocol, transport, errors


def test_serverSlowsWrongPasswords() -> None:
    """
    The server's answers to an address after a wrong password wait, and the
    connection reads nothing meanwhile; another address is answered at once.
    Lines sent after the password are kept and processed after success.
    """
    clock = Clock()
    factory = TLSJSONServerFactory("pw", reactor=clock, authFailureDelay=1,
                                   keepAliveInterval=0)
    _, wrong, _ = attempt(factory, "10.0.0.1", b'{"password":"x"}\n')
    assert wrong.value() == b'{"error":"incorrect password"}\n'

    protocol, right, _ = attempt(factory, "10.0.0.1", b'{"password":"pw"}\n{"after":1}\n')
    messages: List[Any] = []
    protocol.messageReceived = messages.append
    assert right.value() == b""
    assert right.producerState == "paused"
    _, other, _ = attempt(factory, "10.0.0.2", b'{"password":"pw"}\n')
    assert other.value() == b'{"authenticated":true}\n'

    clock.advance(1)
    assert right.value() == b'{"authenticated":true}\n'
    assert right.producerState == "producing"
    assert messages == [{"after": 1}]
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("host, key", [
    ("10.0.0.1", "10.0.0.1"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::9", "2001:db8:1:3::/64"),
    ("::ffff:10.1.2.3", "10.1.2.3"),
    ("fe80::1%eth0", "fe80::/64"),
    ("/run/txtlsjson.sock", "/run/txtlsjson.sock"),
])
def test_addressKey(host: str, key: str) -> None:
    """
    Attempts count per IPv4 address (also IPv4-mapped) and per IPv6 /64
    network; what is not an IP address counts as it is.
    """
    assert addressKey(host) == key


def test_serverSlowsIPv6ByNetwork() -> None:
    """
    After a wrong password from an IPv6 address, answers to every address
    of its /64 wait; another /64 is answered at once.
    """
    clock = Clock()
    factory = TLSJSONServerFactory("pw", reactor=clock, authFailureDelay=1,
                                   keepAliveInterval=0)
    _, wrong, _ = attempt(factory, "2001:db8:1:2::1", b'{"password":"x"}\n')
    assert wrong.value() == b'{"error":"incorrect password"}\n'
    _, sameNetwork, _ = attempt(factory, "2001:db8:1:2:ffff::2", b'{"password":"pw"}\n')
    _, otherNetwork, _ = attempt(factory, "2001:db8:1:3::1", b'{"password":"pw"}\n')
    assert sameNetwork.value() == b""
    assert otherNetwork.value() == b'{"authenticated":true}\n'
    clock.advance(1)
    assert sameNetwork.value() == b'{"authenticated":true}\n'


def test_serverRefusesFloodFromOneAddress() -> None:
    """
    Past C{maxWaiting} attempts waiting from one address, more are refused
    at once.
    """
    clock = Clock()
    factory = TLSJSONServerFactory("pw", reactor=clock, authFailureDelay=10)
    attempt(factory, "10.0.0.1", b'{"password":"x"}\n')
    # One attempt is being delayed, maxWaiting more queue behind it.
    assert isinstance(factory.throttle, AuthenticationThrottle)
    for _ in range(1 + factory.throttle.maxWaiting):
        attempt(factory, "10.0.0.1", b'{"password":"guess"}\n')
    _, transport, errors = attempt(factory, "10.0.0.1", b'{"password":"guess"}\n')
    assert transport.value() == b'{"error":"too many authentication attempts"}\n'
    assert isinstance(errors[0], AuthenticationFailed)


def test_closedWhileWaiting() -> None:
    """
    A connection that closes while its password waits withdraws the attempt
    and leaves no timer.
    """
    clock = Clock()
    factory = TLSJSONServerFactory("pw", reactor=clock, authFailureDelay=5,
                                   keepAliveInterval=0)
    attempt(factory, "10.0.0.1", b'{"password":"x"}\n')
    _, transport, _ = attempt(factory, "10.0.0.1", b'{"password":"pw"}\n')
    transport.loseConnection()
    assert clock.getDelayedCalls() == []


def test_secondPasswordNotDelivered() -> None:
    """
    A second password step after authentication is reported and dropped,
    never handed to the application (which might log it).
    """
    protocol, transport = authenticatedServer(Clock())
    events: List[Any] = []
    protocol.messageReceived = lambda m: events.append(("message", m))
    protocol.errorReceived = lambda e: events.append(("error", e))
    protocol.dataReceived(b'{"password":"pw"}\n{"password":"x","user":"bob"}\n')
    assert isinstance(events[0][1], InvalidMessage)
    assert "pw" not in str(events[0][1])
    assert events[1] == ("message", {"password": "x", "user": "bob"})
    assert not transport.disconnecting


@pytest.mark.parametrize("side", [authenticatedServer, authenticatedClient])
def test_slowConsumerDropped(side: Any) -> None:
    """
    While the transport reports its buffer full (paused), at most
    C{maxBufferedBytes} more are written; past that the peer is reported as
    a L{SlowConsumer} and dropped.  Once the transport drains, the count
    starts again.
    """
    clock = Clock()
    protocol, transport = side(clock, maxBufferedBytes=100)
    errors: List[Any] = []
    protocol.errorReceived = errors.append
    producer = transport.producer
    assert transport.streaming
    producer.pauseProducing()
    protocol.send({"x": "a" * 80})
    producer.resumeProducing()
    producer.pauseProducing()
    protocol.send({"x": "a" * 80})
    assert errors == [] and not transport.disconnecting
    protocol.send({"x": "b" * 80})
    assert isinstance(errors[0], SlowConsumer)
    assert "maxBufferedBytes (100)" in str(errors[0])
    assert transport.disconnecting
    assert transport.value().count(b"\n") == 2


def test_backpressureDisabled() -> None:
    """
    C{maxBufferedBytes=0} registers no producer.
    """
    _, transport = authenticatedServer(Clock(), maxBufferedBytes=0)
    assert transport.producer is None


def test_refusedPeerReadAgain() -> None:
    """
    After a delayed refusal the connection reads again, so that the peer's
    close (its TLS close_notify) is seen and the close completes.
    """
    clock = Clock()
    factory = TLSJSONServerFactory("pw", reactor=clock, authFailureDelay=1)
    attempt(factory, "10.0.0.1", b'{"password":"x"}\n')
    _, transport, _ = attempt(factory, "10.0.0.1", b'{"password":"y"}\n')
    assert transport.producerState == "paused"
    clock.advance(1)
    assert transport.value() == b'{"error":"incorrect password"}\n'
    assert transport.producerState == "producing"
