"""
Unit tests of the client side on in-memory transports with a L{Clock}: the
password step, pings, dead-server detection, and the reconnect timeline of
both the factory and the tls-json-style L{Client}.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.error import ConnectionLost as TCPConnectionLost
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.task import Clock

from txtlsjson import Client
from txtlsjson.client import ClientState
from txtlsjson.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    ConnectionLost,
    IdleTimeout,
    InvalidMessage,
    NotConnected,
)
from txtlsjson.protocol import TLSJSONClientFactory

from .helpers import SERVER_ADDRESS, ScriptedConnector, ScriptedReactor, connectProtocol


def test_passwordFirst() -> None:
    """
    The client's first line is C{{"password":...}}, compact, exactly as the
    Node client writes it; Nagle is off.
    """
    factory = TLSJSONClientFactory("p\u00e4ss \"w\"", reactor=Clock())
    protocol, transport = connectProtocol(factory, SERVER_ADDRESS)
    assert transport.value() == '{"password":"p\u00e4ss \\"w\\""}\n'.encode("utf-8")
    assert transport.noDelay


def test_authenticationAnswer() -> None:
    """
    C{{"authenticated":true}} authenticates; lines before it that are
    neither it nor an error are reported and dropped.
    """
    factory = TLSJSONClientFactory("pw", reactor=Clock())
    protocol, transport = connectProtocol(factory, SERVER_ADDRESS)
    errors: List[Any] = []
    protocol.errorReceived = errors.append
    protocol.dataReceived(b'{"authenticated":"yes"}\n')
    assert not protocol.isAuthenticated
    assert isinstance(errors[0], InvalidMessage)
    protocol.dataReceived(b'{"authenticated":true}\n')
    assert protocol.isAuthenticated


def test_authenticationRefused() -> None:
    """
    The server's C{{"error":...}} answer becomes L{AuthenticationFailed}
    carrying its text; the client closes and stops reconnecting.
    """
    clock = Clock()
    factory = TLSJSONClientFactory("pw", reactor=clock, reconnectInterval=1)
    connector = ScriptedConnector(factory)
    connector.connect()
    protocol = connector.succeed(authenticate=False)
    errors: List[Any] = []
    protocol.errorReceived = errors.append
    protocol.dataReceived(b'{"error":"incorrect password"}\n')
    assert isinstance(errors[0], AuthenticationFailed)
    assert str(errors[0]) == "incorrect password"
    assert connector.transport is None
    assert not factory.continueTrying
    assert clock.getDelayedCalls() == []


def test_idleTimeout() -> None:
    """
    A server that sends nothing at all for C{idleTimeout} seconds is taken
    for dead: reported and dropped.  Any bytes, even a partial line, count
    as life; the check sends nothing.
    """
    clock = Clock()
    factory = TLSJSONClientFactory("pw", reactor=clock, idleTimeout=30)
    protocol, transport = connectProtocol(factory, SERVER_ADDRESS)
    transport.clear()
    errors: List[Any] = []
    protocol.errorReceived = errors.append
    protocol.dataReceived(b'{"authenticated":true}\n')
    clock.advance(20)
    protocol.dataReceived(b'{"__pi')
    clock.advance(20)
    protocol.dataReceived(b'ng":1}\n')
    assert transport.lines() == [b'{"__pong":1}']
    clock.advance(29.9)
    assert not transport.disconnecting
    clock.advance(0.1)
    assert transport.disconnecting
    assert isinstance(errors[0], IdleTimeout)
    assert clock.getDelayedCalls() == []
    assert transport.value() == b""


def test_idleTimeoutDisabled() -> None:
    """
    C{idleTimeout=0} never drops a silent server and schedules nothing.
    """
    clock = Clock()
    protocol, transport = connectProtocol(
        TLSJSONClientFactory("pw", reactor=clock, idleTimeout=0), SERVER_ADDRESS)
    assert clock.getDelayedCalls() == []
    clock.advance(10000)
    assert not transport.disconnecting


def test_factoryConstantInterval() -> None:
    """
    The factory retries every C{reconnectInterval} seconds exactly, first
    attempt included, with no jitter or growth.
    """
    clock = Clock()
    factory = TLSJSONClientFactory("pw", reactor=clock, reconnectInterval=2)
    connector = ScriptedConnector(factory)
    connector.connect()
    for attempt in range(2, 6):
        connector.fail()
        assert [c.getTime() for c in clock.getDelayedCalls()] == [clock.seconds() + 2]
        clock.advance(2)
        assert connector.attempts == attempt


def test_factoryNoReconnect() -> None:
    """
    C{reconnectInterval=0} never retries.
    """
    clock = Clock()
    factory = TLSJSONClientFactory("pw", reactor=clock)
    connector = ScriptedConnector(factory)
    connector.connect()
    connector.fail()
    assert clock.getDelayedCalls() == []


def test_factoryStopTryingSurvivesAuthentication() -> None:
    """
    A connection that authenticates after C{stopTrying} does not revive
    reconnecting (C{resetDelay} alone would).
    """
    clock = Clock()
    factory = TLSJSONClientFactory("pw", reactor=clock, reconnectInterval=1)
    connector = ScriptedConnector(factory)
    connector.connect()
    connector.succeed(authenticate=False)
    factory.stopTrying()
    connector.protocol.dataReceived(b'{"authenticated":true}\n')
    connector.lose()
    assert clock.getDelayedCalls() == []



def stateOf(client: Client) -> ClientState:
    """
    C{client}'s state, read afresh (for the type checker, which would
    otherwise take it as still what an earlier assertion found).
    """
    return client.state

class Timeline:
    """
    A L{Client} on a L{ScriptedReactor}, recording its events.
    """

    def __init__(self, **settings: Any) -> None:
        self.reactor = ScriptedReactor()
        self.client = Client("localhost", 8888, "pw", tlsOptions=object(),
                             reactor=self.reactor, **settings)
        self.events: List[Any] = []
        for name in sorted(Client.events):
            self.client.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Any:
        def record(*args: Any) -> None:
            self.events.append((name,) + tuple(type(a).__name__ if name == "error" else a
                                               for a in args))
        return record

    @property
    def connector(self) -> ScriptedConnector:
        [connector] = self.reactor.connectors
        return connector

    def take(self) -> List[Any]:
        events, self.events = self.events, []
        return events


def test_clientFirstAttemptRetried() -> None:
    """
    With a C{reconnectInterval}, a refused first connection is reported
    (C{error}, C{close}) and retried; refusals while reconnecting are
    suppressed until a connection is made.
    """
    t = Timeline(reconnectInterval=5)
    assert stateOf(t.client) is ClientState.IDLE
    connected = t.client.connect()
    assert stateOf(t.client) is ClientState.CONNECTING
    t.connector.fail()
    assert t.take() == [("error", "ConnectionFailed"), ("close",)]
    assert stateOf(t.client) is ClientState.RECONNECTING
    t.reactor.advance(5)
    assert t.take() == [("reconnectAttempt",)]
    t.connector.fail()
    t.reactor.advance(5)
    t.connector.fail(TimeoutError())
    assert t.take() == [("reconnectAttempt",), ("error", "ConnectionFailed")]
    t.reactor.advance(5)
    t.connector.succeed()
    assert t.take() == [("reconnectAttempt",), ("authenticated",)]
    assert stateOf(t.client) is ClientState.CONNECTED
    assert connected.called and connected.result is None
    t.connector.lose()
    assert t.take() == [("close",)]
    t.reactor.advance(5)
    t.connector.fail()
    assert t.take() == [("reconnectAttempt",)]


def test_clientFlicker() -> None:
    """
    The tls-json 3.3.0 regression: a connection that drops twice within the
    interval keeps reconnecting, holds at most one connection, and
    authenticates once per connection.
    """
    t = Timeline(reconnectInterval=5)
    t.client.connect()
    t.connector.succeed()
    for _ in range(3):
        t.reactor.advance(1)
        t.connector.lose()
        t.reactor.advance(5)
        assert t.connector.protocol is None
        t.connector.succeed()
        t.reactor.advance(1)
        t.connector.lose()
        t.reactor.advance(5)
        t.connector.succeed()
        assert len(t.reactor.getDelayedCalls()) == 1  # the idle check only
    events = t.take()
    assert events.count(("authenticated",)) == 7
    assert events.count(("close",)) == 6
    assert events.count(("reconnectAttempt",)) == 6
    assert t.connector.attempts == 7
    assert t.client.isAuthenticated


def test_clientNoReconnect() -> None:
    """
    Without a C{reconnectInterval}, a failed connection fails C{connect()}
    with L{ConnectionFailed} and nothing is retried.
    """
    t = Timeline()
    failures: List[Any] = []
    t.client.connect().addErrback(failures.append)
    t.connector.fail()
    assert failures[0].check(ConnectionFailed)
    assert t.take() == [("error", "ConnectionFailed"), ("close",)]
    assert t.reactor.getDelayedCalls() == []


def test_clientAuthenticationFailed() -> None:
    """
    A refused password fails C{connect()}, emits C{error} and C{close}, and
    stops reconnecting.
    """
    t = Timeline(reconnectInterval=5)
    failures: List[Any] = []
    t.client.connect().addErrback(failures.append)
    protocol = t.connector.succeed(authenticate=False)
    protocol.dataReceived(b'{"error":"incorrect password"}\n')
    assert failures[0].check(AuthenticationFailed)
    assert t.take() == [("error", "AuthenticationFailed"), ("close",)]
    assert t.reactor.getDelayedCalls() == []


def test_clientIdleReconnects() -> None:
    """
    A silent server is dropped after C{idleTimeout} and the client
    reconnects.
    """
    t = Timeline(reconnectInterval=5, idleTimeout=30)
    t.client.connect()
    t.connector.succeed()
    t.take()
    t.reactor.advance(30)
    assert t.take() == [("error", "IdleTimeout"), ("close",)]
    t.reactor.advance(5)
    t.connector.succeed()
    assert t.take() == [("reconnectAttempt",), ("authenticated",)]


def test_clientDisconnectWhileWaiting() -> None:
    """
    C{disconnect()} while waiting to reconnect cancels the attempt, fails a
    pending C{connect()} with L{NotConnected}, and leaves no timer.
    """
    t = Timeline(reconnectInterval=5)
    failures: List[Any] = []
    t.client.connect().addErrback(failures.append)
    t.connector.fail()
    done: List[Any] = []
    t.client.disconnect().addCallback(done.append)
    assert done == [None]
    assert failures[0].check(NotConnected)
    assert t.reactor.getDelayedCalls() == []


def test_clientDisconnectConnected() -> None:
    """
    C{disconnect()} closes the connection (C{close} once), errbacks pending
    requests with L{ConnectionLost}, and does not reconnect.
    """
    t = Timeline(reconnectInterval=5)
    t.client.connect()
    t.connector.succeed()
    failures: List[Any] = []
    t.client.request({"q": 1}).addErrback(failures.append)
    t.take()
    done: List[Any] = []
    t.client.disconnect().addCallback(done.append)
    assert done == [None]
    assert failures[0].check(ConnectionLost)
    assert t.take() == [("close",)]
    assert t.reactor.getDelayedCalls() == []
    assert not t.client.isAuthenticated
    assert stateOf(t.client) is ClientState.IDLE


def test_clientSendBeforeAuthentication() -> None:
    """
    C{send} before authentication reports L{NotConnected} through the
    C{error} event, as tls-json does; C{request} fails its Deferred.
    """
    t = Timeline()
    t.client.connect()
    t.client.send({"a": 1})
    assert t.take() == [("error", "NotConnected")]
    failures: List[Any] = []
    t.client.request({}).addErrback(failures.append)
    assert failures[0].check(NotConnected)
    # Connected, the password sent, not yet accepted: the same, and
    # nothing but the password goes out.
    t.connector.succeed(authenticate=False)
    t.client.send({"a": 2})
    assert t.take() == [("error", "NotConnected")]
    transport = t.connector.transport
    assert transport is not None and transport.lines() == [b'{"password":"pw"}']


def test_clientAbnormalLossReported() -> None:
    """
    A connection that ends abnormally (reset) reports an C{error} before
    C{close}.
    """
    t = Timeline()
    t.client.connect()
    protocol = t.connector.succeed()
    t.take()
    from twisted.python.failure import Failure

    protocol.connectionLost(Failure(TCPConnectionLost("reset")))
    assert t.take() == [("error", "ConnectionFailed"), ("close",)]


def test_clientValidation() -> None:
    """
    Bad arguments are refused at once.
    """
    with pytest.raises(ValueError, match="port"):
        Client("localhost", 0, "pw", tlsOptions=object())
    with pytest.raises(ValueError, match="host"):
        Client("", 1, "pw", tlsOptions=object())
    with pytest.raises(ValueError, match="reconnectInterval"):
        Client("h", 1, "pw", tlsOptions=object(), reconnectInterval=-1)
    with pytest.raises(ValueError, match="unknown event 'conect'"):
        Client("h", 1, "pw", tlsOptions=object()).on("conect", print)


def test_refusedIsConnectionRefused() -> None:
    """
    L{ConnectionFailed} keeps Twisted's failure for inspection.
    """
    t = Timeline()
    failures: List[Any] = []
    t.client.connect().addErrback(failures.append)
    t.connector.fail()
    assert failures[0].value.reason.check(ConnectionRefusedError)


def test_cancelWaitKeepsConnecting() -> None:
    """
    Cancelling a wait for authentication forgets the wait; the client goes
    on connecting, and other waits still fire.
    """
    from twisted.internet.defer import CancelledError

    t = Timeline(reconnectInterval=5)
    first = t.client.connect()
    second = t.client.whenAuthenticated()
    failures: List[Any] = []
    first.addErrback(failures.append)
    first.cancel()
    assert failures[0].check(CancelledError)
    assert len(t.client._waiting) == 1
    t.connector.succeed()
    assert second.called


def test_protocolObserversCancellable() -> None:
    """
    The protocol's whenAuthenticated/whenClosed Deferreds can be cancelled
    and are then forgotten.
    """
    from twisted.internet.defer import CancelledError

    factory = TLSJSONClientFactory("pw", reactor=Clock())
    protocol, transport = connectProtocol(factory, SERVER_ADDRESS)
    for observe, observers in ((protocol.whenAuthenticated, "_authenticatedObservers"),
                               (protocol.whenClosed, "_closedObservers")):
        d = observe()
        d.addErrback(lambda f: f.trap(CancelledError))
        d.cancel()
        assert len(getattr(protocol, observers)) == 0


def test_connectFiresAfterAuthenticatedHandlers() -> None:
    """
    What awaits C{connect()} runs after the C{authenticated} handlers, as a
    Node user expects: state they set up is there.
    """
    t = Timeline()
    order: List[str] = []
    t.client.on("authenticated", lambda: order.append("handler"))
    t.client.connect().addCallback(lambda _: order.append("connected"))
    t.client.whenAuthenticated().addCallback(lambda _: order.append("waited"))
    t.connector.succeed()
    assert order == ["handler", "connected", "waited"]


def test_backoffWithJitter() -> None:
    """
    With a reconnectFactor, each attempt waits longer, up to
    reconnectMaxDelay; with a reconnectJitter the waits vary; the default
    is tls-json's constant interval.
    """
    t = Timeline(reconnectInterval=1, reconnectFactor=2, reconnectMaxDelay=5)
    t.client.connect()
    waits: List[float] = []
    for _ in range(5):
        t.connector.fail()
        [call] = t.reactor.getDelayedCalls()
        waits.append(call.getTime() - t.reactor.seconds())
        t.reactor.advance(waits[-1])
    assert waits == [1, 2, 4, 5, 5]
    assert t.client.factory.factor == 2
    constant = TLSJSONClientFactory("pw", reactor=Clock(), reconnectInterval=3)
    assert (constant.factor, constant.jitter, constant.maxDelay) == (1, 0, 3)
    jittery = Timeline(reconnectInterval=10, reconnectFactor=1.5, reconnectJitter=0.2)
    jittery.client.connect()
    jittery.connector.fail()
    [call] = jittery.reactor.getDelayedCalls()
    assert call.getTime() != 10  # varied (a normal draw equal to the mean has probability 0)
