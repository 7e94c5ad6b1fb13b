"""
What a node of a cluster does for the others: the operations they send to
its clients (send, request, join, leave, presence, password pacing), and
the broadcasts and room messages it delivers to its own clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger

from txtlsjson.clusterwire import errorAnswer
from txtlsjson.codec import decodeLine
from txtlsjson.errors import TLSJSONError

if TYPE_CHECKING:
    from txtlsjson.cluster import Cluster
    from txtlsjson.server import Server


class NodeService:
    """
    Serves the cluster's operations on one node's server.
    """

    log = Logger()

    def __init__(self, cluster: "Cluster", server: "Server") -> None:
        self._cluster = cluster
        self._server = server

    def onNodeRequest(self, subject: str, data: bytes, reply: str) -> None:
        """
        An operation for this node's clients (see L{Cluster}).
        """
        server = self._server
        cluster = self._cluster
        if data[:2] == b"S ":
            self._forward(server, data)
            return
        try:
            operation = decodeLine(data)
            op = operation["op"]
            connectionId = operation.get("id", -1)
        except Exception:
            self.log.warn("a malformed cluster request on {subject}; ignored", subject=subject)
            return
        result: Deferred[Any]
        if op == "has":
            result = succeed(server.isConnected(connectionId))
        elif op == "request":
            result = server._requestLocal(connectionId, operation["request"])
        elif op == "send":
            result = maybeDeferred(server._sendLocal, connectionId, operation["message"])
        elif op == "join":
            result = server.join(connectionId, operation["room"])
        elif op == "leave":
            result = server.leave(connectionId, operation["room"])
        elif op == "attempt" and cluster.pacer is not None:
            result = cluster.pacer.ownAttempt(operation["key"], operation["reply"], operation["rid"])
        elif op in ("withdraw", "finished") and cluster.pacer is not None:
            cluster.pacer.settle(operation)
            return
        else:
            result = fail(TLSJSONError(f"unknown cluster operation {op!r}"))
        # Where the answer goes: the NATS reply inbox of a publisher's
        # request, or the asking node's reply subject with its question's
        # number.
        asker = operation.get("reply")
        rid = operation.get("rid")
        if not reply and type(asker) is int and rid is not None:
            reply = f"{cluster.prefix}.reply.{asker}"
        # Tagged with the serial the question went to (the asker's table
        # is that serial's, even if this node has taken a newer one since).
        asked = int(subject.rsplit(".", 1)[1]) if subject.startswith(
            f"{cluster.prefix}.node.") else cluster.serial
        tag = {"rid": rid, "node": asked, "q": operation.get("q")}
        result.addCallbacks(lambda value: cluster.reply(reply, {"ok": value, **tag}),
                            lambda failure: cluster.reply(reply, {**errorAnswer(failure), **tag}))

    def _forward(self, server: "Server", data: bytes) -> None:
        """
        Write another node's message to a client of this node: C{data} is
        C{"S <id> <asker> <line>"} (see L{send}); if the client is gone,
        tell the asker.
        """
        cluster = self._cluster
        try:
            _, connectionId, asker, line = data.split(b" ", 3)
            target = int(connectionId)
        except ValueError:
            self.log.warn("a malformed cluster message; ignored")
            return
        if not server._writeLocal(target, line + b"\n"):
            cluster.reply(f"{cluster.prefix}.reply.{int(asker)}",
                        {"undeliverable": target,
                         "message": f"connection {target} is not connected"})

    def onBroadcast(self, subject: str, data: bytes, reply: str) -> None:
        """
        A broadcast from another node: to this node's clients.
        """
        server = self._server
        payload = decodeLine(data)
        if not self._cluster.isOwnSerial(payload.get("origin")):
            server._fanOutLocal(None, payload["message"], payload.get("exclude", ()))

    def onRoom(self, subject: str, data: bytes, reply: str) -> None:
        """
        A message to a room from another node: to this node's members.
        """
        server = self._server
        payload = decodeLine(data)
        if not self._cluster.isOwnSerial(payload.get("origin")):
            server._fanOutLocal(payload["room"], payload["message"], payload.get("exclude", ()))
