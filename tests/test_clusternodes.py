"""
Nodes as real processes joined by a real NATS: two C{twistd tlsjson
--nats} servers with a Python client on one and a Node.js client on the
other; C{tlsjson publish}; a node killed with SIGKILL; workers of one
C{twistd --workers 2 --nats} joining each other.  All on 127.0.0.1,
every wait bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, List, Optional, Tuple

import pytest
from twisted.internet.defer import Deferred

from txtlsjson import Client
from txtlsjson.clusterwire import nodeOf

from .conftest import PKI
from .inreactor import inReactor
from .natsserver import NATSServer
from .processes import REPOSITORY, RunningProcess, spawn, twistd
from .test_node_interop import PEER, node
from .test_twistd import _stoppedBySignal, serverArgs

RELAY = "tests.clusterhandler:Relay"


@pytest.fixture
def passwordFile(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return path


async def startNode(pki: PKI, passwordFile: Path, cwd: Path, nats: NATSServer,
                    *extra: str) -> Tuple[RunningProcess, int]:
    """
    A C{twistd tlsjson --nats} node, connected to NATS.
    """
    # The handler is in this checkout's tests, which the installed package
    # does not bring: the node finds it through PYTHONPATH.
    process = twistd(*serverArgs(pki, passwordFile), "--nats", nats.url, "--handler", RELAY,
                     *extra, cwd=cwd, limit=60, env={"PYTHONPATH": str(REPOSITORY)})
    await process.waitFor("tls-json server listening on")
    await process.waitFor("connected to NATS")
    port = int(re.search(r"port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]
    return process, port


def publish(nats: NATSServer, *args: str) -> RunningProcess:
    """
    C{tlsjson publish --nats URL ...}.
    """
    return spawn([sys.executable, "-m", "txtlsjson", "publish", "--nats", nats.url,
                  "--timeout", "5", *args])


def nodeEvents(process: RunningProcess) -> List[Any]:
    return [json.loads(line) for line in process.text().splitlines() if line.startswith("{")]


@inReactor
async def test_nodesAsProcesses(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    A Python client on node A reaches a Node.js tls-json client on node B
    by its id -- messages, requests, rooms, broadcast -- and so does
    C{tlsjson publish}; when B is killed, a request waiting on its client
    fails at once and its id is reported held by no node.
    """
    nats = await NATSServer().start()
    a, portA = await startNode(pki, passwordFile, tmp_path, nats)
    b, portB = await startNode(pki, passwordFile, tmp_path, nats)
    nodeClient = None
    client = Client("localhost", portA, "s3cret", ca=[pki.caCert])
    try:
        await a.waitFor("joined the cluster")
        await b.waitFor("joined the cluster")
        await client.connect()
        idA = (await client.request({"whoami": True}))["id"]
        nodeClient = spawn([node(), PEER, "stay", str(portB), str(pki.caCert), "s3cret"],
                           limit=60)
        await nodeClient.waitFor('{"response":{"id":')
        idB = next(e["response"]["id"] for e in nodeEvents(nodeClient) if "response" in e)
        assert nodeOf(idA) != nodeOf(idB)

        assert await client.request({"send": idB, "message": {"hi": "node"}}) == {"sent": True}
        await nodeClient.waitFor('{"message":{"hi":"node"}}')
        assert await client.request({"ask": idB, "request": {"n": 21}}) == {
            "answer": {"doubled": 42}}
        assert await client.request({"put": idB, "room": "r"}) == {"put": idB}
        await client.request({"room": "r", "message": {"to": "room"}})
        await nodeClient.waitFor('{"message":{"to":"room"}}')
        messages: List[Any] = []
        client.on("message", messages.append)
        await client.request({"all": {"to": "all"}})
        await nodeClient.waitFor('{"message":{"to":"all"}}')
        assert messages == [{"to": "all"}]

        for args, seen in ((["--to", str(idB), '{"from": "cli"}'], '{"from":"cli"}'),
                           (["--room", "r", '{"cli": "room"}'], '{"cli":"room"}'),
                           (["--all", '{"cli": "all"}'], '{"cli":"all"}')):
            outcome = await publish(nats, *args).ended
            assert outcome.code == 0, outcome
            await nodeClient.waitFor(seen)
        outcome = await publish(nats, "--to", str(idB + 1), "{}").ended
        assert outcome.code == 3 and f"no node holds client {idB + 1}" in outcome.err

        nodeClient.signal("STOP")  # it answers nothing now
        pending = client.request({"ask": idB, "request": {"n": 1}})
        b.signal("KILL")
        answer = await pending
        assert answer["error"] == "ConnectionLost" and "left the cluster" in answer["message"]
        outcome = await publish(nats, "--to", str(idB), "{}").ended
        assert outcome.code == 3, outcome
    finally:
        await client.disconnect()
        if nodeClient is not None:
            nodeClient.signal("KILL")
            await nodeClient.ended
        for process in (a, b):
            process.signal("TERM")
            await process.ended
        await nats.stop()
    assert "s3cret" not in a.text()


@inReactor
async def test_workersJoinTheCluster(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    Each worker of C{--workers 2 --nats} is a node: they find each other,
    and stop cleanly with the parent.
    """
    nats = await NATSServer().start()
    try:
        process, port = await startNode(pki, passwordFile, tmp_path, nats, "--workers", "2")
        await process.waitFor("[worker 1] node ")
        for number in (1, 2):
            await process.waitFor(f"[worker {number}] node ", timeout=10)
        await process.waitFor("joined the cluster")
        text = process.text()
        serials = set(re.findall(r"\[worker \d\] node (\d+) joining the cluster", text))
        assert len(serials) == 2, text
        for serial in serials:
            await process.waitFor(f"node {serial} joined the cluster")
        process.signal("TERM")
        outcome = await process.ended
        assert _stoppedBySignal(outcome), outcome
    finally:
        await nats.stop()


@inReactor
async def test_guessesSpreadOverWorkersPacedAsOne(pki: PKI, passwordFile: Path,
                                                  tmp_path: Path) -> None:
    """
    Wrong passwords from one address, landing on either worker of
    C{--workers 2 --nats}, are answered one at a time, each after the
    growing delay.
    """
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred, gatherResults

    from txtlsjson.errors import AuthenticationFailed

    nats = await NATSServer().start()
    try:
        process, port = await startNode(pki, passwordFile, tmp_path, nats, "--workers", "2",
                                        "--auth-failure-delay", "0.3")
        for number in (1, 2):
            await process.waitFor(f"[worker {number}] node ")
        serials = re.findall(r"\[worker \d\] node (\d+) joining the cluster", process.text())
        for serial in serials:
            await process.waitFor(f"node {serial} joined the cluster")
        refusedAt: List[float] = []

        async def guess() -> None:
            client = Client("localhost", port, "wrong", ca=[pki.caCert])
            with pytest.raises(AuthenticationFailed):
                await client.connect().addTimeout(10, reactor)
            refusedAt.append(reactor.seconds())

        await gatherResults([ensureDeferred(guess()) for _ in range(4)])
        refusedAt.sort()
        gaps = [later - earlier for earlier, later in zip(refusedAt, refusedAt[1:])]
        # 0.3, 0.6, 1.2 s after each failure (less a little for timers).
        assert gaps[0] > 0.25 and gaps[1] > 0.5 and gaps[2] > 1.0, gaps
        process.signal("TERM")
        await process.ended
    finally:
        await nats.stop()


@inReactor
async def test_workerKilledUnderNATS(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    A worker of C{--workers 2 --nats} killed with SIGKILL: its client
    reconnects through the shared socket and gets a new id, the old id is
    reported held by no node, and the restarted worker joins the cluster.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from .test_workers import untilStarted, workerPids

    nats = await NATSServer().start()
    client: Optional[Client] = None
    try:
        process, port = await startNode(pki, passwordFile, tmp_path, nats, "--workers", "2")
        for number in (1, 2):
            await process.waitFor(f"[worker {number}] node ")
        client = Client("localhost", port, "s3cret", ca=[pki.caCert], reconnectInterval=0.2)
        await client.connect()
        oldId = (await client.request({"whoami": True}))["id"]
        serials = {int(serial): int(number) for number, serial in re.findall(
            r"\[worker (\d)\] node (\d+) joining the cluster", process.text())}
        holder = serials[nodeOf(oldId)]
        back: Deferred[None] = Deferred()

        def authenticated() -> None:
            if not back.called:
                back.callback(None)

        client.on("authenticated", authenticated)
        pids = workerPids(process)
        os.kill(pids[holder], signal.SIGKILL)
        await back.addTimeout(10, reactor)
        newId = (await client.request({"whoami": True}))["id"]
        assert newId != oldId
        for _ in range(200):  # bounded: the old node is gone within 3 heartbeats
            outcome = await publish(nats, "--to", str(oldId), "{}").ended
            if outcome.code == 3:
                break
            await deferLater(reactor, 0.1, lambda: None)
        assert outcome.code == 3 and f"no node holds client {oldId}" in outcome.err
        restarted = await untilStarted(process, holder, pids[holder])
        await process.waitFor(f"[worker {holder}] worker {holder} (pid {restarted}) accepting")
        joined = re.findall(rf"\[worker {holder}\] node (\d+) joining the cluster",
                            process.text())
        assert len(joined) == 2 and joined[0] != joined[1]
        process.signal("TERM")
        await process.ended
    finally:
        if client is not None:
            await client.disconnect()
        await nats.stop()


@inReactor
async def test_natsRestartedUnderNodes(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    With NATS stopped, each twistd node serves its own clients and reports
    cross-node requests as C{ClusterUnavailable} at once; started again, the
    nodes rejoin by themselves and cross-node traffic resumes.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    nats = await NATSServer().start()
    a, portA = await startNode(pki, passwordFile, tmp_path, nats)
    b, portB = await startNode(pki, passwordFile, tmp_path, nats)
    clientA = Client("localhost", portA, "s3cret", ca=[pki.caCert])
    clientB = Client("localhost", portB, "s3cret", ca=[pki.caCert])
    clientB.on("request", lambda request, res: res.send({"from": "b"}))
    try:
        await a.waitFor("joined the cluster")
        await clientA.connect()
        await clientB.connect()
        idB = (await clientB.request({"whoami": True}))["id"]
        assert await clientA.request({"ask": idB, "request": {}}) == {"answer": {"from": "b"}}
        await nats.stop()
        await a.waitFor("lost NATS")
        answer = await clientA.request({"ask": idB, "request": {}})
        assert answer["error"] == "ClusterUnavailable"
        assert "id" in await clientA.request({"whoami": True})  # local traffic goes on
        await nats.start()
        for _ in range(100):  # bounded: the nodes rejoin within seconds
            answer = await clientA.request({"ask": idB, "request": {}})
            if answer == {"answer": {"from": "b"}}:
                break
            await deferLater(reactor, 0.1, lambda: None)
        assert answer == {"answer": {"from": "b"}}
    finally:
        await clientA.disconnect()
        await clientB.disconnect()
        for process in (a, b):
            process.signal("TERM")
            await process.ended
        await nats.stop()
