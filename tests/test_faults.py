"""
Reliability under faults, with real processes and real TLS on 127.0.0.1:
a server killed and restarted, frozen and resumed, a link that keeps
breaking, a client that stops reading, and a graceful shutdown.  Every wait
is bounded.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any, Dict, List

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import cooperate, deferLater

from txtlsjson import (
    Client,
    ConnectionLost,
    IdleTimeout,
    NotConnected,
    RequestTimeout,
    Server,
    SlowConsumer,
)

from .conftest import PKI
from .faults import FlakyProxy
from .inreactor import inReactor
from .processes import REPOSITORY, tlsjson, twistd

WAIT = 20.0


def nextEvent(emitter: Any, name: str, where: Any = None) -> "Deferred[Any]":
    """
    The next C{name} event (whose arguments satisfy C{where}), within
    L{WAIT} seconds.
    """
    d: Deferred[Any] = Deferred()

    def handler(*args: Any) -> None:
        if where is None or where(*args):
            emitter.off(name, handler)
            if not d.called:
                d.callback(args)

    emitter.on(name, handler)
    return d.addTimeout(WAIT, reactor)


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


@pytest.fixture
def passwordFile(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return path


def serverProcess(pki: PKI, passwordFile: Path, port: int, *extra: str) -> Any:
    return twistd("-n", "--pidfile=", "--logfile=-", "tlsjson", "--port", str(port),
                  "--interface", "127.0.0.1", "--cert", str(pki.serverCert),
                  "--key", str(pki.serverKey), "--password-file", str(passwordFile),
                  "--handler", "tests.faulthandlers:Holder", *extra,
                  env={"PYTHONPATH": str(REPOSITORY)}, cwd=passwordFile.parent)


async def stopProcess(process: Any) -> None:
    if not process.ended.called:
        process.signal("KILL")
    await process.ended


@inReactor
async def test_serverKilledAndRestarted(pki: PKI, passwordFile: Path) -> None:
    """
    SIGKILL the server process: the client's pending request fails at once
    with L{ConnectionLost} (not after its 60 s timeout); when a new server
    process listens on the same port, the client reconnects and
    re-authenticates by itself.
    """
    port = freePort()
    first = serverProcess(pki, passwordFile, port)
    second = None
    client = Client("localhost", port, "s3cret", ca=[pki.caCert], reconnectInterval=0.1,
                    requestTimeout=60)
    try:
        await first.waitFor("tls-json server listening on")
        await client.connect()
        held = client.request({"hold": True})
        assert await client.request({"n": 1}) == {"echo": {"n": 1}}
        first.signal("KILL")
        with pytest.raises(ConnectionLost):
            await held
        await first.ended
        authenticatedAgain = nextEvent(client, "authenticated")
        second = serverProcess(pki, passwordFile, port)
        await second.waitFor("tls-json server listening on")
        await authenticatedAgain
        assert await client.request({"n": 2}) == {"echo": {"n": 2}}
    finally:
        await client.disconnect()
        await stopProcess(first)
        if second is not None:
            await stopProcess(second)


@inReactor
async def test_serverFrozen(pki: PKI, passwordFile: Path) -> None:
    """
    SIGSTOP the server for longer than the keepalive interval plus timeout:
    the client notices the silence (L{IdleTimeout}), drops the connection,
    and after SIGCONT reconnects and is served again.
    """
    port = freePort()
    process = serverProcess(pki, passwordFile, port, "--keepalive-interval", "0.3",
                            "--keepalive-timeout", "0.3")
    client = Client("localhost", port, "s3cret", ca=[pki.caCert], reconnectInterval=0.2,
                    idleTimeout=1.2, requestTimeout=5)
    try:
        await process.waitFor("tls-json server listening on")
        await client.connect()
        pending = client.request({"hold": True})
        idle = nextEvent(client, "error", lambda e: isinstance(e, IdleTimeout))
        process.signal("STOP")
        await idle
        with pytest.raises(ConnectionLost):
            await pending
        authenticatedAgain = nextEvent(client, "authenticated")
        process.signal("CONT")
        await authenticatedAgain
        assert await client.request({"back": True}) == {"echo": {"back": True}}
    finally:
        await client.disconnect()
        process.signal("CONT")
        await stopProcess(process)


@inReactor
async def test_clientFrozen(pki: PKI) -> None:
    """
    SIGSTOP a client process: the server times it out (no pong) and drops
    it; after SIGCONT the client reconnects by itself.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    keepAliveInterval=0.3, keepAliveTimeout=0.3)
    await server.listen(0, "127.0.0.1")
    process = tlsjson("listen", "--port", str(server.port), "--ca", str(pki.caCert),
                      "--reconnect-interval", "0.2", env={"TLSJSON_PASSWORD": "s3cret"})
    try:
        await process.waitFor("connected to")
        timedOut = nextEvent(server, "timeout")
        process.signal("STOP")
        await timedOut
        authenticatedAgain = nextEvent(server, "authenticated")
        process.signal("CONT")
        await authenticatedAgain
    finally:
        process.signal("CONT")
        process.signal("INT")
        outcome = await process.ended
        await server.close()
    assert outcome.code == 0, outcome


@inReactor
async def test_flickeringLink(pki: PKI) -> None:
    """
    Through a proxy that cuts every connection at a random moment (in the
    TLS handshake, in the password step, in the middle of a message) for a
    bounded time, the client keeps reconnecting: it never holds two
    connections, authenticates once per connection, every request resolves
    or fails (none hangs), and once the link is sound it is connected and
    served.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
    server.on("request", lambda i, req, res: res.send({"echo": req}))
    await server.listen(0, "127.0.0.1")
    proxy = FlakyProxy(reactor, server.port, seed=20261126, maxLife=0.25,  # type: ignore[arg-type]
                       maxBytes=4000)
    proxyPort = proxy.listen()
    client = Client("localhost", proxyPort, "s3cret", ca=[pki.caCert], reconnectInterval=0.02,
                    requestTimeout=2, connectTimeout=2, idleTimeout=2)
    factory = client.factory
    state: Dict[str, Any] = {"open": 0, "maxOpen": 0, "connections": 0,
                             "authenticatedProtocols": [], "unauthenticatedCloses": 0}
    connectionMade, protocolClosed = factory.connectionMade, factory.protocolClosed

    def opened(protocol: Any) -> None:
        state["open"] += 1
        state["connections"] += 1
        state["maxOpen"] = max(state["maxOpen"], state["open"])
        connectionMade(protocol)

    def closed(protocol: Any) -> None:
        state["open"] -= 1
        if not protocol.isAuthenticated and protocol not in state["authenticatedProtocols"]:
            state["unauthenticatedCloses"] += 1
        protocolClosed(protocol)

    factory.connectionMade = opened
    factory.protocolClosed = closed
    client.on("authenticated", lambda: state["authenticatedProtocols"].append(factory.client))
    requests: List[Deferred[Any]] = []
    try:
        client.connect()
        for step in range(600):  # at most ~3 s of traffic
            if client.isAuthenticated:
                for n in range(5):
                    requests.append(client.request({"step": step, "n": n}))
            await deferLater(reactor, 0.005, lambda: None)
        proxy.flakiness = 0.0
        # The link is sound again; connections already doomed still get cut.
        for _ in range(400):
            if client.isAuthenticated:
                try:
                    assert await client.request({"final": True}) == {"echo": {"final": True}}
                    break
                except (ConnectionLost, NotConnected, RequestTimeout):
                    pass
            await deferLater(reactor, 0.01, lambda: None)
        else:
            raise AssertionError("never served after the link became sound")
    finally:
        await client.disconnect()
        await proxy.stop()
        await server.close()

    outcomes: List[Any] = []
    for d in requests:
        assert d.called, "a request was left hanging"
        d.addBoth(outcomes.append)
    resolved = [o for o in outcomes if isinstance(o, dict)]
    failed = [o for o in outcomes if not isinstance(o, dict)]
    assert all(f.check(ConnectionLost, RequestTimeout, NotConnected) for f in failed)
    assert all(r["echo"]["n"] in range(5) for r in resolved)
    assert resolved and failed
    assert state["maxOpen"] == 1
    authenticated = state["authenticatedProtocols"]
    assert len(authenticated) == len(set(map(id, authenticated)))
    assert state["unauthenticatedCloses"] > 0  # some cuts came before authentication
    assert proxy.cuts > 10


def _ours(call: Any) -> bool:
    func = call.func
    owner = getattr(func, "__self__", None)
    module = getattr(owner, "__module__", None) or getattr(func, "__module__", "") or ""
    return module.startswith("txtlsjson") or "txtlsjson" in repr(func)


@inReactor
async def test_slowConsumer(pki: PKI) -> None:
    """
    A client that stops reading while the server sends to it: the server
    keeps at most C{maxBufferedBytes} waiting for it (on top of the
    transport's buffer), then drops it with a clear reason; a client that
    reads, sent the same stream, is unaffected and still served.
    """
    limit = 1_000_000
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    maxBufferedBytes=limit)
    await server.listen(0, "127.0.0.1")
    ids: List[int] = []
    server.on("authenticated", lambda i, peer: ids.append(i))
    errors: List[Any] = []
    server.on("error", lambda i, e: errors.append((i, e)))
    server.on("request", lambda i, req, res: res.send({"echo": req}))
    slow = Client("localhost", server.port, "s3cret", ca=[pki.caCert])  # type: ignore[arg-type]
    fast = Client("localhost", server.port, "s3cret", ca=[pki.caCert])  # type: ignore[arg-type]
    fastMessages: List[int] = []
    fast.on("message", lambda m: fastMessages.append(m["n"]))
    try:
        await slow.connect()
        await fast.connect()
        slowId, fastId = ids
        slow.factory.client.transport.pauseProducing()  # type: ignore[union-attr]
        blob = "x" * 65536
        sent = 0

        def stream() -> Any:
            nonlocal sent
            for n in range(4000):  # bounded: at most ~260 MB per client
                if errors:
                    return
                server.send(slowId, {"n": n, "blob": blob})
                server.send(fastId, {"n": n, "blob": blob})
                sent = n + 1
                yield deferLater(reactor, 0, lambda: None)

        await cooperate(stream()).whenDone()
        [(droppedId, error)] = errors
        assert droppedId == slowId
        assert isinstance(error, SlowConsumer)
        waiting = int(re.search(r"(\d+) bytes wait", str(error)).group(1))  # type: ignore[union-attr]
        assert limit < waiting <= limit + 65536 + 100
        assert await fast.request({"still": "served"}) == {"echo": {"still": "served"}}
        for _ in range(2000):  # bounded: at most 20 s
            if len(fastMessages) >= sent:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert fastMessages == list(range(sent))
    finally:
        await slow.disconnect()
        await fast.disconnect()
        await server.close()


@inReactor
async def test_gracefulShutdown(pki: PKI) -> None:
    """
    C{server.close()} stops accepting, closes every client, errbacks the
    requests pending on both sides, and leaves no timer of txtlsjson's in
    the reactor.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    requestTimeout=60)
    await server.listen(0, "127.0.0.1")
    port = server.port
    ids: List[int] = []
    server.on("authenticated", lambda i, peer: ids.append(i))
    clients = [Client("localhost", port, "s3cret", ca=[pki.caCert], requestTimeout=60,  # type: ignore[arg-type]
                      idleTimeout=30) for _ in range(3)]
    for client in clients:
        client.on("request", lambda req, res: None)
        await client.connect()
    server.on("request", lambda i, req, res: None)
    fromClients = [c.request({"q": 1}) for c in clients]
    fromServer = [server.request(i, {"q": 2}) for i in ids]
    closes = [nextEvent(c, "close") for c in clients]
    await server.close()
    for d in fromClients + fromServer:
        with pytest.raises(ConnectionLost):
            await d
    for closed in closes:
        await closed
    for client in clients:
        await client.disconnect()
    assert [c for c in reactor.getDelayedCalls() if _ours(c)] == []
    refused = Client("localhost", port, "s3cret", ca=[pki.caCert])  # type: ignore[arg-type]
    with pytest.raises(Exception, match="refused"):
        await refused.connect()
