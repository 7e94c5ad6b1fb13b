"""
Unit tests of the server side, on in-memory transports with a L{Clock}:
the password step, keepalive, timeouts and bad input, byte for byte as the
Node peer sends and expects them.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.task import Clock

from txtlsjson.errors import (
    AuthenticationFailed,
    AuthenticationTimeout,
    InvalidMessage,
    LineTooLong,
    TLSJSONError,
)
from txtlsjson.protocol import (
    FLUSH_TIMEOUT,
    TLSJSONServerFactory,
    TLSJSONServerProtocol,
)
from txtlsjson.session import SessionState
from txtlsjson.settings import UNAUTHENTICATED_MAX_LINE_LENGTH

from .helpers import authenticatedServer, connectProtocol


class Recorder(TLSJSONServerProtocol):
    """
    Records every hook call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.events: List[Any] = []

    def authenticated(self) -> None:
        self.events.append("authenticated")

    def messageReceived(self, message: Any) -> None:
        self.events.append(("message", message))

    def requestReceived(self, request: Any) -> Any:
        self.events.append(("request", request))
        return {"echo": request}

    def errorReceived(self, error: TLSJSONError) -> None:
        self.events.append(("error", error))

    def keepAliveTimedOut(self) -> None:
        self.events.append("timeout")


def recordingServer(clock: Clock, **settings: Any):  # type: ignore[no-untyped-def]
    factory = TLSJSONServerFactory("pw", reactor=clock, **settings)
    factory.protocol = Recorder
    return connectProtocol(factory)


def test_noDelay() -> None:
    """
    Nagle's algorithm is switched off on every connection.
    """
    _, transport = recordingServer(Clock())
    assert transport.noDelay is True


def test_correctPassword() -> None:
    """
    C{{"password":"pw"}} is answered with C{{"authenticated":true}} and the
    hook runs.
    """
    clock = Clock()
    protocol, transport = recordingServer(clock)
    assert protocol.session.state is SessionState.AWAITING_AUTHENTICATION
    protocol.dataReceived(b'{"password":"pw"}\n')
    assert transport.value() == b'{"authenticated":true}\n'
    assert protocol.events == ["authenticated"]
    assert protocol.isAuthenticated


@pytest.mark.parametrize("line", [
    b'{"password":"wrong"}\n',
    b'{"password":"PW"}\n',
    b'{"password":"pw "}\n',
    b'{"password":null}\n',
    b'{"password":["pw"]}\n',
    b'{"hello":"pw"}\n',
])
def test_wrongPassword(line: bytes) -> None:
    """
    Anything but the right password is answered with the Node peer's error
    line, reported, and the connection is closed.
    """
    clock = Clock()
    protocol, transport = recordingServer(clock)
    protocol.dataReceived(line)
    assert transport.value() == b'{"error":"incorrect password"}\n'
    assert transport.disconnecting
    assert [type(e) for _, e in protocol.events] == [AuthenticationFailed]
    assert clock.getDelayedCalls() == []


def test_wrongPasswordLinesAfterIgnored() -> None:
    """
    Lines that follow a wrong password in the same chunk are not processed.
    """
    protocol, transport = recordingServer(Clock())
    protocol.dataReceived(b'{"password":"x"}\n{"password":"pw"}\n{"a":1}\n')
    assert transport.value() == b'{"error":"incorrect password"}\n'
    assert not protocol.isAuthenticated


def test_passwordComparedInConstantTime(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    The password is compared with L{hmac.compare_digest}.
    """
    import hmac

    calls = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    protocol, _ = recordingServer(Clock())
    protocol.dataReceived(b'{"password":"pw"}\n')
    assert calls == [(b"pw", b"pw")]


def test_authTimeout() -> None:
    """
    A connection that does not authenticate within C{authTimeout} is
    reported and aborted; nothing is left scheduled.
    """
    clock = Clock()
    protocol, transport = recordingServer(clock, authTimeout=3)
    clock.advance(2.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting
    assert [type(e) for _, e in protocol.events] == [AuthenticationTimeout]
    assert clock.getDelayedCalls() == []


def test_authTimeoutCancelledOnSuccess() -> None:
    """
    Authenticating in time cancels the authentication timer.
    """
    clock = Clock()
    protocol, transport = recordingServer(clock, authTimeout=3, keepAliveInterval=0)
    protocol.dataReceived(b'{"password":"pw"}\n')
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert not transport.disconnecting


def test_badJSONBeforeAuthenticationCloses() -> None:
    """
    An unauthenticated peer sending garbage is dropped.
    """
    protocol, transport = recordingServer(Clock())
    protocol.dataReceived(b"GET / HTTP/1.1\r\n")
    assert transport.disconnecting
    assert [type(e) for _, e in protocol.events] == [InvalidMessage]


def test_unauthenticatedLineLimit() -> None:
    """
    Before authentication, a line may be at most
    L{UNAUTHENTICATED_MAX_LINE_LENGTH} bytes: an unauthenticated peer cannot
    make the server buffer more.
    """
    protocol, transport = recordingServer(Clock())
    protocol.dataReceived(b"x" * (UNAUTHENTICATED_MAX_LINE_LENGTH + 1))
    assert transport.disconnecting
    assert [type(e) for _, e in protocol.events] == [LineTooLong]


def test_authenticatedLineLimit() -> None:
    """
    After authentication the configured C{maxLineLength} applies: a longer
    line is reported and the connection closed; earlier lines in the chunk
    are delivered.
    """
    clock = Clock()
    protocol, transport = recordingServer(clock, maxLineLength=UNAUTHENTICATED_MAX_LINE_LENGTH * 2)
    protocol.dataReceived(b'{"password":"pw"}\n')
    big = b'{"a":"' + b"x" * (UNAUTHENTICATED_MAX_LINE_LENGTH + 10) + b'"}'
    protocol.dataReceived(big + b"\n")
    assert protocol.events[1] == ("message", {"a": "x" * (UNAUTHENTICATED_MAX_LINE_LENGTH + 10)})
    protocol.dataReceived(b'{"b":1}\n' + b"y" * (UNAUTHENTICATED_MAX_LINE_LENGTH * 2 + 1))
    assert protocol.events[2] == ("message", {"b": 1})
    assert isinstance(protocol.events[3][1], LineTooLong)
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_keepAlivePingPong() -> None:
    """
    Every C{keepAliveInterval} the server pings with a counter from 1 (never
    0: the Node client answers only a truthy C{__ping}); a matching pong
    keeps the connection.
    """
    clock = Clock()
    protocol, transport = authenticatedServer(clock, keepAliveInterval=10, keepAliveTimeout=5)
    clock.advance(9.9)
    assert transport.lines() == []
    clock.advance(0.1)
    assert transport.lines() == [b'{"__ping":1}']
    clock.advance(4)
    protocol.dataReceived(b'{"__pong":1}\n')
    clock.advance(10)
    assert transport.lines() == [b'{"__ping":2}']
    protocol.dataReceived(b'{"__pong":2}\n')
    assert not transport.disconnecting


def test_keepAliveTimeout() -> None:
    """
    Without a pong within C{keepAliveTimeout}, the timeout hook runs and the
    connection is dropped; a stale pong does not count.
    """
    clock = Clock()
    factory = TLSJSONServerFactory("pw", reactor=clock, keepAliveInterval=10, keepAliveTimeout=5)
    factory.protocol = Recorder
    protocol, transport = connectProtocol(factory)
    protocol.dataReceived(b'{"password":"pw"}\n')
    clock.advance(10)
    protocol.dataReceived(b'{"__pong":0}\n{"__pong":"1"}\n')
    clock.advance(4.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert protocol.events == ["authenticated", "timeout"]
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []


def test_keepAliveDisabled() -> None:
    """
    C{keepAliveInterval=0} sends no pings.
    """
    clock = Clock()
    protocol, transport = authenticatedServer(clock, keepAliveInterval=0)
    clock.advance(1000)
    assert transport.lines() == []
    assert clock.getDelayedCalls() == []


def test_flushTimeoutAbortsStuckClose() -> None:
    """
    The error line of a refused password is flushed with C{loseConnection},
    and an abort follows if the close does not complete.
    """
    clock = Clock()
    factory = TLSJSONServerFactory("pw", reactor=clock)
    protocol: Any = factory.buildProtocol(None)
    from twisted.internet.testing import StringTransport

    class Stuck(StringTransport):
        aborted = False

        def abortConnection(self) -> None:
            self.aborted = True

    transport = Stuck()
    protocol.makeConnection(transport)
    protocol.dataReceived(b'{"password":"nope"}\n')
    assert transport.disconnecting and not transport.aborted
    clock.advance(FLUSH_TIMEOUT)
    assert transport.aborted


def test_factoryValidation() -> None:
    """
    Bad settings are refused when the factory is made, with a clear message.
    """
    with pytest.raises(ValueError, match="password"):
        TLSJSONServerFactory("")
    with pytest.raises(ValueError, match="requestTimeout"):
        TLSJSONServerFactory("pw", requestTimeout=-1)
    with pytest.raises(ValueError, match="maxLineLength"):
        TLSJSONServerFactory("pw", maxLineLength=0)
    with pytest.raises(ValueError, match="keepAliveTimeout"):
        TLSJSONServerFactory("pw", keepAliveTimeout=0)


def test_factoryReprHidesPassword() -> None:
    """
    The factory's repr (which Twisted logs) never shows the password.
    """
    assert "sekrit" not in repr(TLSJSONServerFactory("sekrit"))
    assert "sekrit" not in repr(vars(TLSJSONServerFactory("sekrit")).get("password", ""))
