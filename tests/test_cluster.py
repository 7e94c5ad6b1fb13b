"""
Servers joined by a real NATS (C{nats-server} on 127.0.0.1): send,
request, rooms, broadcast and presence across nodes; a node that leaves;
NATS stopped and started again.  Two nodes in this process here, each with
its own NATS connection; C{test_clusterProcesses} runs nodes as processes.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, List, Tuple

import pytest
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater

from txtlsjson import Client, Server
from txtlsjson.cluster import Cluster
from txtlsjson.errors import (
    AuthenticationFailed,
    ClusterUnavailable,
    ConnectionLost,
    InvalidOutgoingMessage,
    NotConnected,
)
from txtlsjson.settings import ServerSettings

from .conftest import PKI
from .inreactor import inReactor
from .natsserver import NATSServer, freePort
from .test_integration import WAIT, nextEvent

#: Seconds between heartbeats in these tests (a node is gone after three).
BEAT = 0.2


async def until(condition: Any, what: str, seconds: float = WAIT) -> None:
    """
    Wait (at most C{seconds}) for C{condition()} to be true.
    """
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError(f"not within {seconds} s: {what}")


async def node(pki: PKI, nats: NATSServer) -> Server:
    """
    A server listening on 127.0.0.1, joined to the cluster.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    cluster=Cluster([nats.url], heartbeatInterval=BEAT))
    await server.listen(0, "127.0.0.1")
    assert server.cluster is not None
    await server.cluster.whenConnected().addTimeout(WAIT, reactor)
    return server


async def clientOf(server: Server, pki: PKI, **settings: Any) -> Tuple[Client, List[Any], int]:
    """
    A client of C{server}: the client, the messages it receives, its id.
    """
    client = Client("localhost", server.port or 0, "s3cret", ca=[pki.caCert], **settings)
    messages: List[Any] = []
    client.on("message", messages.append)
    authenticated = nextEvent(server, "authenticated")
    await client.connect()
    (connectionId, _) = await authenticated
    return client, messages, connectionId


@asynccontextmanager
async def twoNodes(pki: PKI) -> AsyncIterator[Tuple[NATSServer, Server, Server]]:
    """
    A nats-server and two nodes that know each other; all stopped after.
    """
    nats = await NATSServer().start()
    try:
        a, b = await node(pki, nats), await node(pki, nats)
        try:
            assert a.cluster is not None and b.cluster is not None
            await until(lambda: b.cluster.serial in a.cluster.nodes
                        and a.cluster.serial in b.cluster.nodes,
                        "the nodes see each other")
            yield nats, a, b
        finally:
            await a.close()
            await b.close()
    finally:
        await nats.stop()


@inReactor
async def test_acrossNodes(pki: PKI) -> None:
    """
    A client held by node B is reached from node A by its id: messages,
    requests (both answers and the client's own errors), rooms, broadcast
    and presence; and the ids of the two nodes never collide.
    """
    async with twoNodes(pki) as (nats, a, b):
        clientA, messagesA, idA = await clientOf(a, pki)
        clientB, messagesB, idB = await clientOf(b, pki)
        assert idA != idB
        clientB.on("request", lambda request, res: res.send({"seen": request["n"]}))

        a.send(idB, {"from": "a"})
        assert await a.request(idB, {"n": 7}) == {"seen": 7}
        await until(lambda: messagesB == [{"from": "a"}], "the message crossed")

        await a.join(idB, "room")
        assert b.members("room") == [idB]
        await a.join(idA, "room")
        assert a.sendToRoom("room", {"to": "room"}) == 1
        await until(lambda: messagesA[-1:] == [{"to": "room"}]
                    and messagesB[-1:] == [{"to": "room"}], "the room message arrived")
        assert b.broadcast({"to": "all"}) == 1
        await until(lambda: messagesA[-1:] == [{"to": "all"}]
                    and messagesB[-1:] == [{"to": "all"}], "the broadcast arrived")

        assert await a.isConnectedAnywhere(idB) is True
        assert await a.isConnectedAnywhere(idB + 1) is False
        await until(lambda: a.clusterClientCount == 2, "the count includes B's client")

        errors: List[Any] = []
        a.on("error", lambda i, e: errors.append((i, e)))
        a.send(idB + 1, {"to": "nobody"})
        await until(lambda: len(errors) == 1, "the failed send was reported")
        assert errors[0][0] == idB + 1 and isinstance(errors[0][1], NotConnected)
        with pytest.raises(NotConnected):
            await a.request(idB + 1, {"n": 1})
        with pytest.raises(InvalidOutgoingMessage, match="more than NATS carries"):
            a.send(idB, {"big": "x" * (2 * 1024 * 1024)})
        await clientA.disconnect()
        await clientB.disconnect()


@inReactor
async def test_nodeLeaves(pki: PKI) -> None:
    """
    A request waiting on a client of a node that leaves fails promptly
    with L{ConnectionLost}; the node's ids are then reported gone.
    """
    async with twoNodes(pki) as (nats, a, b):
        clientB, _, idB = await clientOf(b, pki)
        clientB.on("request", lambda request, res: None)  # never answers
        pending = a.request(idB, {"wait": True})
        closed = b.close()
        with pytest.raises(ConnectionLost):
            await pending.addTimeout(3, reactor)
        await closed
        await until(lambda: a.cluster is not None and not a.cluster.nodes, "B is gone")
        with pytest.raises(NotConnected, match=f"no node holds connection {idB}"):
            await a.request(idB, {"n": 1})
        await clientB.disconnect()


@inReactor
async def test_natsRestarted(pki: PKI) -> None:
    """
    With NATS down, local traffic goes on and cross-node operations fail at
    once with L{ClusterUnavailable}; when NATS is back, the nodes reconnect
    by themselves and cross-node traffic resumes.
    """
    async with twoNodes(pki) as (nats, a, b):
        clientA, messagesA, idA = await clientOf(a, pki)
        clientA.on("request", lambda request, res: res.send({"local": request["n"]}))
        clientB, messagesB, idB = await clientOf(b, pki)
        clientB.on("request", lambda request, res: res.send({"remote": request["n"]}))
        await nats.stop()
        await until(lambda: a.cluster is not None and not a.cluster.connected, "A saw NATS go")
        with pytest.raises(ClusterUnavailable):
            await a.request(idB, {"n": 1})
        assert await a.request(idA, {"n": 2}) == {"local": 2}
        errors: List[Any] = []
        a.on("error", lambda i, e: errors.append(e))
        assert a.broadcast({"while": "down"}) == 1
        assert isinstance(errors[0], ClusterUnavailable)

        await nats.start()
        await until(lambda: a.cluster is not None and a.cluster.connected
                    and b.cluster is not None and a.cluster.serial in b.cluster.nodes
                    and b.cluster.serial in a.cluster.nodes, "the nodes are back", 15)
        assert await a.request(idB, {"n": 3}) == {"remote": 3}
        assert await b.request(idA, {"n": 4}) == {"local": 4}
        await clientA.disconnect()
        await clientB.disconnect()


@inReactor
async def test_passwordGuessesPacedAsOne(pki: PKI) -> None:
    """
    Guesses from one address spread over two nodes are paced by one of
    them: answered one at a time, each after the last failure's delay --
    not two at a time, as two nodes pacing alone would.
    """
    nats = await NATSServer().start()
    settings = ServerSettings(authFailureDelay=0.2, authFailureMaxDelay=10.0)
    a = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
               cluster=Cluster([nats.url], heartbeatInterval=BEAT), settings=settings)
    b = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
               cluster=Cluster([nats.url], heartbeatInterval=BEAT), settings=settings)
    await a.listen(0, "127.0.0.1")
    await b.listen(0, "127.0.0.1")
    try:
        assert a.cluster is not None and b.cluster is not None
        await until(lambda: b.cluster.serial in a.cluster.nodes
                    and a.cluster.serial in b.cluster.nodes,
                    "the nodes see each other")
        assert a.cluster.pacer is not None and b.cluster.pacer is not None
        assert a.cluster.pacer.ownerOf("127.0.0.1") == b.cluster.pacer.ownerOf("127.0.0.1")
        refusedAt: List[float] = []

        async def guess(server: Server) -> None:
            client = Client("localhost", server.port or 0, "wrong", ca=[pki.caCert])
            with pytest.raises(AuthenticationFailed):
                await client.connect().addTimeout(WAIT, reactor)
            refusedAt.append(reactor.seconds())

        from twisted.internet.defer import gatherResults
        await gatherResults([ensureDeferred(guess(server)) for server in (a, b, a, b)])
        refusedAt.sort()
        gaps = [later - earlier for earlier, later in zip(refusedAt, refusedAt[1:])]
        # 0.2, 0.4, 0.8 s after each failure (less a little for timers).
        assert gaps[0] > 0.15 and gaps[1] > 0.35 and gaps[2] > 0.7, gaps
    finally:
        await a.close()
        await b.close()
        await nats.stop()


@inReactor
async def test_natsServersJoinedByRoutes(pki: PKI) -> None:
    """
    Nodes on two NATS servers joined by routes -- as on two hosts, each
    with its own NATS -- reach each other's clients.
    """
    routeA, routeB = freePort(), freePort()
    first = NATSServer(extra=["--cluster_name", "txtlsjson", "--cluster",
                              f"nats://127.0.0.1:{routeA}", "--routes",
                              f"nats://127.0.0.1:{routeB}"])
    second = NATSServer(extra=["--cluster_name", "txtlsjson", "--cluster",
                               f"nats://127.0.0.1:{routeB}", "--routes",
                               f"nats://127.0.0.1:{routeA}"])
    await first.start()
    await second.start()
    a = await node(pki, first)
    b = await node(pki, second)
    try:
        assert a.cluster is not None and b.cluster is not None
        await until(lambda: b.cluster.serial in a.cluster.nodes
                    and a.cluster.serial in b.cluster.nodes,
                    "the nodes see each other through the route")
        clientB, messagesB, idB = await clientOf(b, pki)
        clientB.on("request", lambda request, res: res.send({"via": "route"}))
        assert await a.request(idB, {}) == {"via": "route"}
        a.send(idB, {"through": "the route"})
        await until(lambda: messagesB == [{"through": "the route"}], "the message crossed")
        await clientB.disconnect()
    finally:
        await a.close()
        await b.close()
        await first.stop()
        await second.stop()


@inReactor
async def test_tlsToNATS(pki: PKI) -> None:
    """
    A NATS server that requires TLS is reached over C{tls://} with the CA
    from C{natsOptions(ca=...)}, and the cluster works through it.
    """
    from txtlsjson.cluster import natsOptions

    nats = NATSServer(extra=["--tls", "--tlscert", str(pki.serverCert),
                             "--tlskey", str(pki.serverKey)])
    await nats.start()
    url = f"tls://localhost:{nats.port}"
    servers = [Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                      cluster=Cluster([url], heartbeatInterval=BEAT,
                                      options=natsOptions(ca=str(pki.caCert))))
               for _ in range(2)]
    try:
        for server in servers:
            await server.listen(0, "127.0.0.1")
            assert server.cluster is not None
            await server.cluster.whenConnected().addTimeout(WAIT, reactor)
        a, b = servers
        await until(lambda: b.cluster is not None and a.cluster is not None
                    and b.cluster.serial in a.cluster.nodes, "the nodes see each other")
        clientB, messagesB, idB = await clientOf(b, pki)
        a.send(idB, {"over": "tls"})
        await until(lambda: messagesB == [{"over": "tls"}], "the message crossed")
        await clientB.disconnect()
    finally:
        for server in servers:
            await server.close()
        await nats.stop()


@inReactor
async def test_newSerialKeepsOldIds(pki: PKI) -> None:
    """
    After 2**24 connections a node takes a new serial: clients with ids of
    the old one stay reachable from other nodes, and so are the new ones.
    """
    from txtlsjson.clusterwire import LOCAL_BITS, nodeOf

    async with twoNodes(pki) as (nats, a, b):
        assert a.cluster is not None and b.cluster is not None
        old, _, oldId = await clientOf(b, pki)
        old.on("request", lambda request, res: res.send({"client": "old"}))
        b.cluster._counter = 2**LOCAL_BITS
        new, _, newId = await clientOf(b, pki)
        new.on("request", lambda request, res: res.send({"client": "new"}))
        assert nodeOf(newId) != nodeOf(oldId) and b.isConnected(oldId)
        await until(lambda: nodeOf(newId) in a.cluster.nodes,
                    "A knows B's new serial")
        assert await a.request(oldId, {}) == {"client": "old"}
        assert await a.request(newId, {}) == {"client": "new"}
        await until(lambda: a.clusterClientCount == 2, "both counted once")
        await old.disconnect()
        await new.disconnect()
