"""
L{txtlsjson.testing}: what an application's tests get -- servers and
clients connected in memory, time under the test's control.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError

from txtlsjson import Client, Server, TLSJSONClientFactory, TLSJSONServerFactory
from txtlsjson.client import ClientState
from txtlsjson.errors import ConnectionFailed, ConnectionLost, RequestTimeout
from txtlsjson.testing import MemoryNetwork, StillWaiting


def serverOn(network: MemoryNetwork, port: int = 8888, **settings: Any) -> Server:
    server = Server("pw", reactor=network, **settings)
    server.on("request", lambda i, request, res: res.send({"echo": request}))
    network.result(server.listenOn(network.endpoint(port)))
    return server


def test_roundTrips() -> None:
    """
    A Client reaches a Server by port; both ways, messages and requests
    arrive as they would over TLS.
    """
    network = MemoryNetwork()
    server = serverOn(network)
    messages: List[Any] = []
    server.on("message", lambda i, m: messages.append((i, m)))
    client = Client("localhost", 8888, "pw", reactor=network)
    client.on("request", lambda request, res: res.send({"seen": request["n"]}))
    network.result(client.connect())
    assert server.clients == [0] and network.connections == 1
    client.send({"hello": 1})
    assert network.result(client.request({"n": 1})) == {"echo": {"n": 1}}
    assert network.result(server.request(0, {"n": 2})) == {"seen": 2}
    assert messages == [(0, {"hello": 1})]


def test_refusedWhereNothingListens() -> None:
    """
    Connecting to a port nothing listens on is refused, as on a real
    network.
    """
    network = MemoryNetwork()
    client = Client("localhost", 9999, "pw", reactor=network)
    errors: List[Exception] = []
    client.on("error", errors.append)
    with pytest.raises(ConnectionFailed, match="nothing listens on port 9999"):
        network.result(client.connect())
    assert len(errors) == 1 and client.state is ClientState.IDLE


def test_timePassesOnlyWhenTold() -> None:
    """
    Timers run on the network's clock: a request to a silent client times
    out after C{requestTimeout}, keepalives keep the connection up.
    """
    network = MemoryNetwork()
    server = serverOn(network, requestTimeout=5)
    client = Client("localhost", 8888, "pw", reactor=network)
    network.result(client.connect())
    pending = server.request(0, {"unanswered": True})
    network.wait(4.9)
    with pytest.raises(StillWaiting):
        network.result(pending)
    network.wait(0.1)
    with pytest.raises(RequestTimeout):
        network.result(pending)
    network.wait(60)
    assert server.clients == [0] and client.isAuthenticated


def test_closeAndReconnect() -> None:
    """
    A server that closes drops its clients (their requests fail); a client
    with a C{reconnectInterval} comes back when the server listens again.
    """
    network = MemoryNetwork()
    server = serverOn(network)
    client = Client("localhost", 8888, "pw", reactor=network, reconnectInterval=2)
    network.result(client.connect())
    never: Deferred[Any] = Deferred()
    server.on("request", lambda i, r, res: res.answerWith(never) if "hold" in r else None)
    pending = client.request({"hold": True})
    network.result(server.close())
    with pytest.raises(ConnectionLost):
        network.result(pending)
    assert network.connections == 0 and client.state is ClientState.RECONNECTING
    serverOn(network)
    network.wait(2)
    assert client.isAuthenticated and network.connections == 1
    network.result(client.disconnect())
    assert network.connections == 0
    assert network.getDelayedCalls() == []


def test_factories() -> None:
    """
    The Twisted-native factories connect through the network's
    C{listenSSL}/C{connectSSL}; port 0 picks a free port, a taken one is
    refused.
    """
    network = MemoryNetwork()
    port = network.listenSSL(0, TLSJSONServerFactory("pw", reactor=network), None)
    with pytest.raises(CannotListenError):
        network.listenSSL(port.getHost().port, TLSJSONServerFactory("pw", reactor=network), None)
    factory = TLSJSONClientFactory("pw", reactor=network)
    network.connectSSL("localhost", port.getHost().port, factory, None)
    network.flush()
    assert factory.client is not None
    assert network.result(factory.client.whenAuthenticated()) is None
    network.result(factory.client.close())
    assert network.connections == 0


def test_resultRaisesFailure() -> None:
    """
    L{MemoryNetwork.result} raises what a Deferred failed with.
    """
    with pytest.raises(ZeroDivisionError):
        MemoryNetwork().result(fail(ZeroDivisionError()))


def test_severalServerAddresses() -> None:
    """
    A client with several server addresses tries the next when one fails,
    fails only when every one has, and reconnects to whichever is up.
    """
    network = MemoryNetwork()
    attempts: List[int] = []
    connectTCP = network.connectTCP

    def counting(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        attempts.append(port)
        return connectTCP(host, port, *args, **kwargs)

    network.connectTCP = counting
    second = serverOn(network, 8002)
    client = Client("localhost", 8001, "pw", reactor=network, servers=[("localhost", 8002)],
                    reconnectInterval=1)
    network.result(client.connect())
    assert second.clients != [] and attempts[-1] == 8002 and set(attempts) <= {8001, 8002}
    network.result(second.close())
    serverOn(network, 8001)
    network.wait(2)
    assert client.isAuthenticated and attempts[-1] == 8001
    network.result(client.disconnect())

    nowhere = Client("localhost", 9001, "pw", reactor=network, servers=[("localhost", 9002)])
    del attempts[:]
    with pytest.raises(ConnectionFailed):
        network.result(nowhere.connect())
    assert sorted(attempts) == [9001, 9002]
