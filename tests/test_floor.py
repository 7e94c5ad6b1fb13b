"""
The benchmarks' floor peer (C{benchmarks.peer.FloorPeer}) speaks the
tls-json wire: a txtlsjson client and server, which speak it as the Node
peers do, work with it over real TLS on 127.0.0.1.  Its figures against
Node mean something only if it does.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from benchmarks.peer import FloorPeer, Handler, connectFloor, listen
from benchmarks.workloads import QUICK
from txtlsjson import AuthenticationFailed, Client, Server, clientTLSOptions

from .conftest import PKI
from .inreactor import inReactor

PASSWORD = "benchmark-password"
WAIT = 10.0


@inReactor
async def test_floorServerAnswersTheTxtlsjsonClient(pki: PKI) -> None:
    """
    The floor server accepts the password, answers requests (echoes, and
    the control requests), and counts messages -- but not the keepalive's
    answers, which are no messages.
    """
    handler = Handler(QUICK)
    port = listen(FloorPeer, 0, str(pki.serverCert), str(pki.serverKey), handler)
    client = Client("localhost", port.getHost().port, PASSWORD, ca=[pki.caCert])
    try:
        await client.connect()
        answer = await client.request({"seq": 7, "payload": "x"}).addTimeout(WAIT, reactor)
        assert answer == {"seq": 7, "payload": "x"}
        for i in range(3):
            client.send({"seq": i})
        # As the keepalive answers a ping; the server must not count it.
        protocol: Any = client.factory.client
        protocol.session._transport.writeLine(b'{"__pong":1}\n')
        counted = await client.request({"op": "count"}).addTimeout(WAIT, reactor)
        assert counted == {"count": 3}
        assert "cpu" in await client.request({"op": "cpu"}).addTimeout(WAIT, reactor)
    finally:
        await client.disconnect()
        await port.stopListening()


@inReactor
async def test_floorServerRefusesAWrongPassword(pki: PKI) -> None:
    """
    A wrong password is answered with an error, and the connection closed.
    """
    port = listen(FloorPeer, 0, str(pki.serverCert), str(pki.serverKey), Handler(QUICK))
    client = Client("localhost", port.getHost().port, "wrong", ca=[pki.caCert])
    try:
        with pytest.raises(AuthenticationFailed, match="incorrect password"):
            await client.connect().addTimeout(WAIT, reactor)
    finally:
        await client.disconnect()
        await port.stopListening()


@inReactor
async def test_floorClientWithTheTxtlsjsonServer(pki: PKI) -> None:
    """
    The floor client authenticates with a txtlsjson server, has its
    requests answered, and its messages arrive.
    """
    server = Server(PASSWORD, certificate=pki.serverCert, privateKey=pki.serverKey)
    server.on("request", lambda i, request, res: res.send({"doubled": request["n"] * 2}))
    received: "Deferred[Any]" = Deferred()
    server.on("message", lambda i, message: received.callback(message))
    await server.listen(0, "127.0.0.1")
    try:
        floor = await connectFloor(server.port, str(pki.caCert), Handler(QUICK))  # type: ignore[arg-type]
        assert await floor.request({"n": 21}).addTimeout(WAIT, reactor) == {"doubled": 42}
        floor.send({"hello": "world"})
        assert await received.addTimeout(WAIT, reactor) == {"hello": "world"}
    finally:
        await server.close()


class _WrongPassword(Protocol):
    """
    Sends a wrong password and a message after it; answers whatever comes
    with another message.
    """

    def __init__(self) -> None:
        self.received: List[bytes] = []
        self.closed: "Deferred[None]" = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b'{"password":"wrong"}\n{"seq":1}\n')  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        self.transport.write(b'{"seq":2}\n')  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


@inReactor
async def test_floorServerReadsNothingAfterARefusal(pki: PKI) -> None:
    """
    What a refused peer sends after its password, in the same read or
    later, is not read: its messages are not counted.
    """
    handler = Handler(QUICK)
    port = listen(FloorPeer, 0, str(pki.serverCert), str(pki.serverKey), handler)
    peer = _WrongPassword()
    endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port,
                                  clientTLSOptions("localhost", [str(pki.caCert)]))
    try:
        await connectProtocol(endpoint, peer)
        await peer.closed.addTimeout(WAIT, reactor)
        assert b"".join(peer.received) == b'{"error":"incorrect password"}\n'
        assert handler.count == 0
    finally:
        await port.stopListening()
