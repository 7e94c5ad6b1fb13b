"""
Interoperability with a real Node.js peer over real TLS on 127.0.0.1: a
Node client against a txtlsjson server, and a txtlsjson client against a
Node server.  The Node side (tests/node/peer.js) speaks the protocol the
way the tls-json package does, with Node's own tls module.
"""

from __future__ import annotations

import json
import shutil
from typing import Any, List

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from txtlsjson import Client, Server

from .conftest import PKI
from .inreactor import inReactor
from .processes import REPOSITORY, spawn
from .test_faults import nextEvent

PEER = str(REPOSITORY / "tests" / "node" / "peer.js")


def node() -> str:
    path = shutil.which("node")
    assert path, "Node.js is part of this project's machines; the interop tests need it"
    return path


def events(text: str) -> List[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@inReactor
async def test_nodeClientTxtlsjsonServer(pki: PKI) -> None:
    """
    A Node client authenticates, sends a message and a request, answers a
    request and the server's pings, and gets its response.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    keepAliveInterval=0.05)
    messages: List[Any] = []
    server.on("message", lambda i, m: messages.append(m))
    server.on("request", lambda i, req, res: res.send({"doubled": req["n"] * 2}))
    answers: List[Any] = []

    def authenticated(connectionId: int, peer: Any) -> None:
        server.send(connectionId, {"hi": "node"})
        server.request(connectionId, {"n": 21}).addCallback(answers.append)

    server.on("authenticated", authenticated)
    await server.listen(0, "127.0.0.1")
    try:
        closed = nextEvent(server, "close")
        outcome = await spawn([node(), PEER, "client", str(server.port), str(pki.caCert),
                               "s3cret"]).ended
        await closed
    finally:
        await server.close()
    seen = events(outcome.out)
    assert outcome.code == 0, outcome
    assert seen[0] == {"authenticated": True}
    assert {"message": {"hi": "node"}} in seen
    assert {"request": {"n": 21}} in seen
    assert {"response": {"doubled": 40}} in seen
    # The server pings again only after a pong: a second ping proves the
    # Node client's pong was taken.  Never 0: Node answers truthy pings only.
    pings = [e["ping"] for e in seen if "ping" in e]
    assert pings[:2] == [1, 2]
    assert {"done": True} in seen
    assert messages == [{"hello": "from node", "text": "\u4e16\u754c"}]
    assert answers == [{"doubled": 42}]


@inReactor
async def test_txtlsjsonClientNodeServer(pki: PKI) -> None:
    """
    A txtlsjson client authenticates with a Node server, gets its message,
    answers its request and ping, and has its own request answered.
    """
    process = spawn([node(), PEER, "server", str(pki.serverCert), str(pki.serverKey), "s3cret"])
    await process.waitFor("listening")
    port = events(process.text())[0]["listening"]
    client = Client("localhost", port, "s3cret", ca=[pki.caCert])
    messages: List[Any] = []
    client.on("message", messages.append)
    client.on("request", lambda req, res: res.send({"seen": req["n"]}))
    welcomed = nextEvent(client, "message")
    try:
        await client.connect()
        await welcomed
        assert await client.request({"n": 5}) == {"tripled": 15}
        client.send({"bye": True})
        await process.waitFor('"message":{"bye":true}')
    finally:
        await client.disconnect()
    outcome = await process.ended
    seen = events(outcome.out)
    assert messages == [{"welcome": "from node"}]
    assert {"response": {"seen": 7}} in seen
    assert {"pong": 5} in seen
    assert {"request": {"n": 5}} in seen
    assert seen[-1] == {"close": True}


@inReactor
async def test_bigMessagesWithNodeServer(pki: PKI) -> None:
    """
    A request of 5 MiB of UTF-8 -- written in paced pieces that cut through
    multi-byte characters -- reaches a Node server whole, and its 5 MiB
    echo comes back whole; so does a second one, encoded as it is sent.
    """
    process = spawn([node(), PEER, "server", str(pki.serverCert), str(pki.serverKey), "s3cret"])
    await process.waitFor("listening")
    port = events(process.text())[0]["listening"]
    client = Client("localhost", port, "s3cret", ca=[pki.caCert])
    big = "\u00e9\u4e16" * (1024 * 1024)  # 2 + 3 bytes each: 5 MiB
    echo: Deferred[Any] = Deferred()
    def message(m: Any) -> None:
        if "echo" in m:
            echo.callback(m)

    client.on("message", message)
    try:
        await client.connect()
        answer = await client.request({"data": big})
        assert answer == {"length": len(big), "tail": big[-8:]}
        assert await echo.addTimeout(10, reactor) == {"echo": big}
        echo = Deferred()
        again = "\n\"\U0001f600" + big[1:]
        answer = await client.request({"data": again})
        # JavaScript counts the emoji as two UTF-16 code units.
        assert answer == {"length": len(again) + 1, "tail": again[-8:]}
        assert await echo.addTimeout(10, reactor) == {"echo": again}
    finally:
        await client.disconnect()
    outcome = await process.ended
    assert {"bigRequest": len(big)} in events(outcome.out)


@inReactor
async def test_nodeClientWrongPassword(pki: PKI) -> None:
    """
    A Node client with a wrong password reads the Node peer's error line.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
    await server.listen(0, "127.0.0.1")
    try:
        outcome = await spawn([node(), PEER, "client", str(server.port), str(pki.caCert),
                               "wrong"]).ended
    finally:
        await server.close()
    assert {"refused": {"error": "incorrect password"}} in events(outcome.out)
