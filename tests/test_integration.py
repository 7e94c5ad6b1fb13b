"""
Integration tests: real TLS on 127.0.0.1 (port 0), certificates generated
for the run, both API layers.
"""

from __future__ import annotations

from socket import IPPROTO_TCP, TCP_NODELAY
from typing import Any, List, cast

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import LogEvent

from txtlsjson import (
    AuthenticationFailed,
    CertificateNameError,
    Client,
    ConnectionFailed,
    ConnectionLost,
    NotConnected,
    Server,
    TLSJSONClientFactory,
    TLSJSONServerFactory,
    TLSJSONServerProtocol,
    clientTLSOptions,
    serverTLSOptions,
)

from .conftest import PKI
from .inreactor import blockOn, inReactor

#: Upper bound on any single wait; each test's work takes milliseconds.
WAIT = 10.0


def nextEvent(emitter: Any, name: str) -> "Deferred[Any]":
    """
    @return: a Deferred that fires with the arguments of the next C{name}
        event, failing if it does not come within L{WAIT} seconds.
    """
    d: Deferred[Any] = Deferred()

    def handler(*args: Any) -> None:
        emitter.off(name, handler)
        if not d.called:
            d.callback(args)

    emitter.on(name, handler)
    return d.addTimeout(WAIT, reactor)


class Recorder:
    """
    Records every event of an emitter.
    """

    def __init__(self, emitter: Any) -> None:
        self.events: List[Any] = []
        for name in sorted(emitter.events):
            emitter.on(name, self._record(name))

    def _record(self, name: str) -> Any:
        return lambda *args: self.events.append((name,) + args)

    def names(self) -> List[str]:
        return [e[0] for e in self.events]


@pytest.fixture
def server(pki: PKI) -> Any:
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
    yield server
    blockOn(server.close())


def makeClient(server: Server, pki: PKI, password: str = "s3cret", **kwargs: Any) -> Client:
    return Client("localhost", server.port, password, ca=[pki.caCert], **kwargs)  # type: ignore[arg-type]


@inReactor
async def test_eventsBothWays(server: Server, pki: PKI) -> None:
    """
    Every event of both sides, with send and request both directions.
    """
    await server.listen(0, "127.0.0.1")
    serverEvents = Recorder(server)
    server.on("request", lambda i, req, res: res.send({"doubled": req["n"] * 2}))
    client = makeClient(server, pki)
    clientEvents = Recorder(client)
    client.on("request", lambda req, res: res.send({"tripled": req["n"] * 3}))
    authenticated = nextEvent(server, "authenticated")
    await client.connect()
    [connectionId, peer] = await authenticated
    assert peer.host == "127.0.0.1"
    assert server.clients == [connectionId]

    received = nextEvent(server, "message")
    client.send({"hello": "server", "text": "\u4e16\u754c"})
    assert await received == (connectionId, {"hello": "server", "text": "\u4e16\u754c"})
    assert await client.request({"n": 21}) == {"doubled": 42}

    received = nextEvent(client, "message")
    server.send(connectionId, {"hello": "client"})
    assert await received == ({"hello": "client"},)
    assert await server.request(connectionId, {"n": 5}) == {"tripled": 15}

    closed = nextEvent(server, "close")
    await client.disconnect()
    assert await closed == (connectionId,)
    assert serverEvents.names() == ["authenticated", "message", "request", "close"]
    assert clientEvents.names() == ["authenticated", "message", "request", "close"]


@inReactor
async def test_requestHandlerErrorsIsolated(server: Server, pki: PKI,
                                           logged: List[LogEvent]) -> None:
    """
    On either side, a C{request} handler that raises is logged, and the
    handlers after it still run: one of them answers.
    """
    await server.listen(0, "127.0.0.1")
    server.on("request", lambda i, request, res: 1 / 0)
    server.on("request", lambda i, request, res: res.send({"from": "server"}))
    client = makeClient(server, pki)
    client.on("request", lambda request, res: 1 / 0)
    client.on("request", lambda request, res: res.send({"from": "client"}))
    authenticated = nextEvent(server, "authenticated")
    await client.connect()
    [connectionId, _] = await authenticated
    assert await client.request({}) == {"from": "server"}
    assert await server.request(connectionId, {}) == {"from": "client"}
    await client.disconnect()
    failures = [event["log_failure"] for event in logged if "log_failure" in event]
    assert [failure.check(ZeroDivisionError) for failure in failures] == [ZeroDivisionError] * 2


@inReactor
async def test_nativeLayer(pki: PKI) -> None:
    """
    The Twisted-native factories over C{listenSSL}/C{connectSSL}, with a
    protocol subclass answering requests from a coroutine.
    """

    class Doubler(TLSJSONServerProtocol):
        async def requestReceived(self, request: Any) -> Any:
            return {"doubled": request["n"] * 2}

    serverFactory = TLSJSONServerFactory("pw")
    serverFactory.protocol = Doubler
    port = cast(Any, reactor).listenSSL(0, serverFactory, serverTLSOptions(pki.serverCert, pki.serverKey),
                             interface="127.0.0.1")
    try:
        connected: Deferred[Any] = Deferred()

        class Telling(TLSJSONClientFactory):
            def connectionMade(self, protocol: Any) -> None:
                super().connectionMade(protocol)
                if not connected.called:
                    connected.callback(protocol)

        clientFactory = Telling("pw")
        connector = cast(Any, reactor).connectSSL("127.0.0.1", port.getHost().port, clientFactory,
                                       clientTLSOptions("localhost", [pki.caCert]))
        protocol: Any = await connected.addTimeout(WAIT, reactor)
        await protocol.whenAuthenticated().addTimeout(WAIT, reactor)
        assert await protocol.request({"n": 4}) == {"doubled": 8}
        socket = protocol.transport.transport.getHandle()  # under the TLS layer
        assert socket.getsockopt(IPPROTO_TCP, TCP_NODELAY)
        # A plain loseConnection (what connector.disconnect does) closes at
        # once: the backpressure producer does not hold the TLS close up.
        connector.disconnect()
        await protocol.whenClosed().addTimeout(1, reactor)
        await serverFactory.closeConnections()
    finally:
        await port.stopListening()


@inReactor
async def test_wrongPassword(server: Server, pki: PKI) -> None:
    """
    A wrong password fails the client's C{connect()} with
    L{AuthenticationFailed}; the server reports it and closes.
    """
    await server.listen(0, "127.0.0.1")
    serverError = nextEvent(server, "error")
    serverClose = nextEvent(server, "close")
    client = makeClient(server, pki, password="guess", reconnectInterval=0.05)
    with pytest.raises(AuthenticationFailed, match="incorrect password"):
        await client.connect()
    [_, error] = await serverError
    assert isinstance(error, AuthenticationFailed)
    await serverClose
    assert not client.factory.continueTrying
    assert server.clients == []


@inReactor
async def test_hostnameMismatch(pki: PKI) -> None:
    """
    A server whose certificate names another host is refused before the
    password is sent.
    """
    server = Server("s3cret", certificate=pki.wrongNameCert, privateKey=pki.wrongNameKey)
    await server.listen(0, "127.0.0.1")
    try:
        serverEvents = Recorder(server)
        client = makeClient(server, pki)
        with pytest.raises(ConnectionFailed) as info:
            await client.connect()
        assert info.value.reason.check(CertificateNameError)
        closed = nextEvent(server, "close")
        await closed
        assert "authenticated" not in serverEvents.names()
    finally:
        await server.close()


@inReactor
async def test_noSubjectAltName(pki: PKI) -> None:
    """
    A certificate with the right CN but no subjectAltName is refused with an
    error that says to add one.
    """
    server = Server("s3cret", certificate=pki.noSANCert, privateKey=pki.noSANKey)
    await server.listen(0, "127.0.0.1")
    try:
        client = makeClient(server, pki)
        with pytest.raises(ConnectionFailed, match="subjectAltName"):
            await client.connect()
    finally:
        await server.close()


@inReactor
async def test_serverCloseFailsPendingRequests(server: Server, pki: PKI) -> None:
    """
    C{server.close()} closes every client: requests pending on both sides
    errback with L{ConnectionLost} at once.
    """
    await server.listen(0, "127.0.0.1")
    server.on("request", lambda i, req, res: None)  # never answered
    client = makeClient(server, pki, requestTimeout=60)
    client.on("request", lambda req, res: None)
    authenticated = nextEvent(server, "authenticated")
    await client.connect()
    [connectionId, _] = await authenticated
    fromClient = client.request({"q": 1})
    fromServer = server.request(connectionId, {"q": 2})
    clientClosed = nextEvent(client, "close")
    await server.close()
    with pytest.raises(ConnectionLost):
        await fromServer
    with pytest.raises(ConnectionLost):
        await fromClient
    await clientClosed
    with pytest.raises(NotConnected):
        await client.request({})


@inReactor
async def test_reconnectAfterServerRestart(pki: PKI) -> None:
    """
    A client with a C{reconnectInterval} reconnects and re-authenticates by
    itself when its server comes back on the same port.
    """
    first = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
    await first.listen(0, "127.0.0.1")
    port = first.port
    client = makeClient(first, pki, reconnectInterval=0.05)
    events = Recorder(client)
    try:
        await client.connect()
        closed = nextEvent(client, "close")
        await first.close()
        await closed
        second = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
        assert port is not None
        await second.listen(port, "127.0.0.1")
        try:
            again = nextEvent(client, "authenticated")
            await again
            assert await _echo(second, client) == {"ok": True}
        finally:
            await client.disconnect()
            await second.close()
    finally:
        await client.disconnect()
    names = events.names()
    assert names.count("authenticated") == 2
    assert "reconnectAttempt" in names
    assert "error" not in names  # refusals while reconnecting are suppressed


async def _echo(server: Server, client: Client) -> Any:
    server.on("request", lambda i, req, res: res.send(req))
    return await client.request({"ok": True})


@inReactor
async def test_mutualTLS(pki: PKI) -> None:
    """
    A server requiring client certificates serves a client that has one from
    the right CA and refuses one that has none.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    clientCA=[pki.caCert])
    await server.listen(0, "127.0.0.1")
    try:
        good = makeClient(server, pki, clientCertificate=pki.clientCert, clientKey=pki.clientKey)
        await good.connect()
        await good.disconnect()
        bad = makeClient(server, pki)
        with pytest.raises(ConnectionFailed, match="certificate"):
            await bad.connect()
    finally:
        await server.close()


@inReactor
async def test_listenPortInUse(server: Server, pki: PKI) -> None:
    """
    Listening on a port in use fails the Deferred with Twisted's
    C{CannotListenError}.
    """
    from twisted.internet.error import CannotListenError

    await server.listen(0, "127.0.0.1")
    other = Server("x", certificate=pki.serverCert, privateKey=pki.serverKey)
    with pytest.raises(CannotListenError):
        await other.listen(server.port, "127.0.0.1")  # type: ignore[arg-type]


class BufferWatch:
    """
    Watches a TCP transport's write buffer: the most it held after any
    write.
    """

    def __init__(self, tcp: Any) -> None:
        self.most = 0
        original = tcp.write

        def write(data: bytes) -> None:
            original(data)
            self.most = max(self.most, len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen)

        tcp.write = write


@inReactor
async def test_bigMessagesPaced(server: Server, pki: PKI) -> None:
    """
    Messages of megabytes go both ways whole and in order with the small
    ones written after them, while the sender's TCP buffer holds only a
    few pieces of them at a time (not the whole ciphertext); a client that
    disconnects right after sending one still delivers it whole.  Each
    side's first such message is encoded whole, the later ones as they are
    sent (see L{txtlsjson.pieced.encodeLongMessage}).
    """
    size = 8 * 1024 * 1024
    await server.listen(0, "127.0.0.1")
    received: List[Any] = []
    server.on("message", lambda i, message: received.append(message))
    server.on("request", lambda i, req, res: res.send({"len": len(req["data"])}))
    client = makeClient(server, pki)
    authenticated = nextEvent(server, "authenticated")
    await client.connect()
    [connectionId, _] = await authenticated
    clientTCP = client.factory.client.transport.transport  # type: ignore[union-attr]
    watch = BufferWatch(clientTCP)

    big = "\u00e9" * (size // 2)  # 8 MiB of UTF-8
    answers = [client.request({"data": big}), client.request({"data": "small"}),
               client.request({"data": big})]
    client.send({"n": 1})
    assert await answers[0] == {"len": size // 2}
    assert await answers[1] == {"len": 5}
    assert await answers[2] == {"len": size // 2}
    assert received == [{"n": 1}]
    assert watch.most < 2 * 1024 * 1024, watch.most

    messages: List[Any] = []
    arrived: Deferred[None] = Deferred()
    def message(m: Any) -> None:
        messages.append(m)
        if len(messages) == 3:
            arrived.callback(None)

    client.on("message", message)
    server.send(connectionId, {"data": big})
    server.send(connectionId, {"data": big, "again": True})
    server.send(connectionId, {"after": True})
    await arrived.addTimeout(WAIT, reactor)
    assert messages == [{"data": big}, {"data": big, "again": True}, {"after": True}]

    lastMessage = nextEvent(server, "message")
    closed = nextEvent(server, "close")
    client.send({"data": big, "last": True})
    await client.disconnect()
    assert await lastMessage == (connectionId, {"data": big, "last": True})
    await closed
