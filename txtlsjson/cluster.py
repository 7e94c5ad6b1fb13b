"""
A cluster of servers joined by NATS: connection ids unique and routable
across nodes, and send, request, rooms and broadcast reaching clients on
any node.

    server = Server(password, certificate=..., privateKey=...,
                    cluster=Cluster(["nats://127.0.0.1:4222"]))

Each node (a worker, or a process on another host) picks a random serial
of 28 bits; its connection ids are C{serial << 24 | n}, so the id says which
node holds the connection.  Everything between nodes goes through NATS
subjects under a prefix (C{tlsjson} by default):

  - C{<prefix>.node.<serial>}: requests to one node, answered by it --
    C{send}, C{request}, C{join}, C{leave}, C{has} a connection of its own;
  - C{<prefix>.broadcast} and C{<prefix>.room}: messages every node
    delivers to its own clients (the sender's node delivers its own share
    directly, so local clients get them without NATS);
  - C{<prefix>.heartbeat}: every node says it is alive, with how many
    clients it has, every C{heartbeatInterval}; a node not heard from for
    three intervals is gone, and requests waiting on its clients fail with
    L{ConnectionLost}.

What is guaranteed (as NATS core gives it): at most once across nodes;
messages from one node to one client keep their order; a request to a
client on another node is answered, or fails -- with the client's own
error (C{RequestTimeout}, C{ConnectionLost}), with L{NotConnected} if no
node holds the id, with L{ConnectionLost} if its node goes, or with
L{ClusterUnavailable} at once while NATS is unreachable -- never silently.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Collection, Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.codec import decodeLine, encodeLimitedLine, encodeMessageLine
from txtlsjson.errors import (
    ClusterUnavailable,
    ConnectionLost,
    InvalidOutgoingMessage,
    NotConnected,
    RequestTimeout,
    TLSJSONError,
)
from txtlsjson.clusterwire import LOCAL_BITS, answerValue, eachLine, encode, nodeOf
from txtlsjson.natsthread import NATSConnection
from txtlsjson.nodeservice import NodeService
from txtlsjson.observers import Observers
from txtlsjson.requests import PendingRequests
from txtlsjson.wire import JSONObject

if TYPE_CHECKING:
    from txtlsjson.pacing import ClusterPacer
    from txtlsjson.server import Server


class Cluster:
    """
    This node's membership of a cluster: give it to a
    L{Server<txtlsjson.server.Server>} (C{cluster=}).

    @ivar serial: this node's serial, the high bits of its connection ids.
    @ivar nodes: the serials of the other nodes heard from lately, with how
        many clients each has.
    """

    log = Logger()

    def __init__(self, servers: Sequence[str], *, prefix: str = "tlsjson",
                 heartbeatInterval: float = 1.0, options: Optional[Dict[str, Any]] = None,
                 reactor: Any = None, connection: Optional[NATSConnection] = None) -> None:
        """
        @param servers: the NATS server URLs (several: NATS tries the next).
        @param prefix: the first token of every subject, so that several
            clusters can share a NATS.
        @param heartbeatInterval: seconds between heartbeats; a node not
            heard from for three is taken for gone.
        @param options: more keyword arguments of C{nats.connect} (TLS,
            credentials; see L{natsOptions}).
        @param reactor: the reactor; the global one by default.
        @param connection: the NATS connection to use (tests); made from
            C{servers} by default.
        """
        if reactor is None:
            from twisted.internet import reactor as globalReactor

            reactor = globalReactor
        self._reactor = reactor
        self.prefix = prefix
        self.heartbeatInterval = heartbeatInterval
        self.serial = random.randrange(1, 2**28)
        # Every serial this node has taken: ids of each stay its own.
        self._serials = [self.serial]
        self._nats = connection or NATSConnection(reactor, servers, options=options,
                                                  reconnectWait=min(1.0, heartbeatInterval))
        self._server: Optional["Server"] = None
        self._service: Optional[NodeService] = None
        self._counter = 0
        self.nodes: Dict[int, int] = {}
        self._lastHeard: Dict[int, float] = {}
        # Questions to each node waiting for their answers; those that may
        # wait long (password attempts) in tables of their own.
        self._tables: Dict[int, PendingRequests] = {}
        self._untimedTables: Dict[int, PendingRequests] = {}
        # Paces password attempts for the cluster, once the server is known.
        self.pacer: Optional["ClusterPacer"] = None
        self._requestTimeout = 0.0
        self._heartbeat: Optional[IDelayedCall] = None
        self._subscribed = False
        # Subscribed, and so reachable: the observers of whenConnected.
        self._ready = False
        self._readyObservers: Observers[None] = Observers()
        self._stopped = False

    # -- life ----------------------------------------------------------------

    def attach(self, server: "Server") -> None:
        """
        Serve C{server}'s connections to the cluster (L{start} joins it).
        """
        self._server = server
        self._service = NodeService(self, server)
        # A question to another node waits as long as a request to a
        # client, and a little more: the client's own timeout is what the
        # asker should see.
        timeout = server.settings.requestTimeout
        self._requestTimeout = timeout + 2.0 if timeout > 0 else 0.0
        self._nats.onConnected(self._connected)
        self._nats.onDisconnected(self._disconnected)

    def start(self) -> None:
        """
        Start joining the cluster, in the background: local traffic never
        waits for NATS.  The server calls this when it starts listening
        (after twistd has daemonized: the NATS thread would not survive
        the fork).
        """
        if self._heartbeat is not None or self._stopped:
            return
        self._nats.start()
        self._beat()

    def startPublishing(self) -> "Deferred[None]":
        """
        Connect to NATS to send to the cluster's clients without being a
        node (as C{tlsjson publish} does): no clients, no subscriptions, no
        heartbeats; L{send}, L{sendToRoom} and L{broadcast} work.

        @return: a Deferred that fires once connected.
        """
        self.serial = 0  # no node's: every node delivers what this sends
        self._nats.start()
        return self._nats.whenConnected()

    def whenConnected(self) -> "Deferred[None]":
        """
        @return: a new Deferred that fires once connected to NATS and
            subscribed.
        """
        if self._ready and self._nats.connected:
            return succeed(None)
        return self._readyObservers.whenFired()

    @property
    def connected(self) -> bool:
        """
        Whether the cluster bus is up.
        """
        return self._nats.connected

    def stop(self) -> "Deferred[None]":
        """
        Say goodbye, leave the cluster and close the NATS connection.
        """
        self._stopped = True
        self._readyObservers.fail(ClusterUnavailable("this node left the cluster"))
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.cancel()
        self._heartbeat = None
        self._failAll(ConnectionLost("this node left the cluster"))
        if self._nats.connected and self._server is not None:
            try:
                self._nats.publish(f"{self.prefix}.heartbeat", encode(
                    {"node": self.serial, "serials": self._serials, "gone": True}))
            except ClusterUnavailable:
                pass
        return self._nats.stop()

    def _connected(self) -> None:
        service = self._service
        if self._subscribed or service is None:
            return
        self._subscribed = True
        subscriptions = [
            self._nats.subscribe(f"{self.prefix}.broadcast", eachLine(service.onBroadcast)),
            self._nats.subscribe(f"{self.prefix}.room", eachLine(service.onRoom)),
            self._nats.subscribe(f"{self.prefix}.heartbeat", eachLine(self._onHeartbeat)),
        ]
        for serial in self._serials:
            subscriptions.extend(self._subscribeSerial(serial))

        def ready(_: object) -> None:
            self._ready = True
            self._readyObservers.fire(None)

        gatherResults(subscriptions).addCallbacks(
            ready, lambda f: self.log.failure("cannot subscribe", f))

    def _subscribeSerial(self, serial: int) -> "List[Deferred[None]]":
        """
        Subscribe to what is addressed to this node under C{serial}.
        """
        assert self._service is not None
        return [
            self._nats.subscribe(f"{self.prefix}.node.{serial}",
                                 eachLine(self._service.onNodeRequest)),
            self._nats.subscribe(f"{self.prefix}.reply.{serial}", eachLine(self._onReply)),
        ]

    def _disconnected(self) -> None:
        # Nodes may come and go meanwhile: forget them, they will beat again.
        self.nodes.clear()
        self._lastHeard.clear()
        self._failAll(ClusterUnavailable("lost the connection to NATS"))

    # -- ids -------------------------------------------------------------------

    def newConnectionId(self) -> int:
        """
        An id for a new connection of this node, unique in the cluster.
        After 2**24 connections the node takes a new serial, and keeps
        answering to the old ones: their ids are still its clients'.
        """
        if self._counter >= 2**LOCAL_BITS:
            self.serial = random.randrange(1, 2**28)
            self._serials.append(self.serial)
            self._counter = 0
            if self._subscribed and self._nats.connected:
                for subscribed in self._subscribeSerial(self.serial):
                    subscribed.addErrback(lambda f: self.log.failure("cannot subscribe", f))
        self._counter += 1
        return self.serial << LOCAL_BITS | (self._counter - 1)

    def isOwnSerial(self, serial: object) -> bool:
        """
        Whether C{serial} is one this node has taken.
        """
        return serial in self._serials

    def isLocal(self, connectionId: int) -> bool:
        """
        Whether C{connectionId} is (or was) one of this node's.
        """
        return nodeOf(connectionId) in self._serials

    # -- to other nodes ------------------------------------------------------------

    def _ask(self, connectionId: int, operation: JSONObject, timeout: float) -> "Deferred[Any]":
        """
        Send C{operation} to the node holding C{connectionId}; its answer's
        value, or its error rebuilt here.

        A node asks through its own reply subject, matching answers to
        questions with the request table every connection uses (one timer
        for all); a publisher, which knows no nodes, through a NATS request,
        for NATS to say at once when no node holds the id.
        """
        if self._stopped or not self._nats.connected:
            return fail(ClusterUnavailable(
                f"cannot reach connection {connectionId}: not connected to NATS"))
        node = nodeOf(connectionId)
        if self._server is None:
            return self._askThroughNATS(node, connectionId, operation, timeout)
        if node not in self.nodes:
            return fail(NotConnected(f"no node holds connection {connectionId}"))
        operation["id"] = connectionId
        return self.askNode(node, operation)

    def askNode(self, node: int, operation: JSONObject, untimed: bool = False
                 ) -> "Deferred[Any]":
        """
        Send C{operation} to C{node}, numbered (its C{rid}) in the table of
        questions to it (C{untimed}: the table whose questions wait as long
        as they must, for password attempts).

        @return: a Deferred of the answer's value, or failing with its
            error rebuilt here.
        """
        tables = self._untimedTables if untimed else self._tables
        table = tables.get(node)
        if table is None:
            table = tables[node] = PendingRequests(
                self._reactor, 0.0 if untimed else self._requestTimeout)
        operation.update(rid=table.nextId, reply=self.serial)
        if untimed:
            operation["q"] = "untimed"
        try:
            self._nats.publish(f"{self.prefix}.node.{node}", encode(operation))
        except (InvalidOutgoingMessage, ClusterUnavailable):
            return fail()
        return table.issue().addCallback(answerValue)

    def _askThroughNATS(self, node: int, connectionId: int, operation: JSONObject,
                        timeout: float) -> "Deferred[Any]":
        operation["id"] = connectionId
        try:
            data = encode(operation)
        except InvalidOutgoingMessage:
            return fail()

        def failed(failure: Failure) -> Any:
            name = type(failure.value).__name__
            if name == "NoRespondersError":
                raise NotConnected(f"no node holds connection {connectionId}")
            if name == "TimeoutError":
                raise RequestTimeout()
            if isinstance(failure.value, TLSJSONError):
                return failure
            raise ClusterUnavailable(
                f"cannot reach connection {connectionId}: {failure.getErrorMessage()}")

        d = self._nats.request(f"{self.prefix}.node.{node}", data, timeout)
        return d.addCallbacks(lambda reply: answerValue(decodeLine(reply)), failed)

    def send(self, connectionId: int, message: JSONObject) -> None:
        """
        Send C{message} to a client of another node, at most once: if that
        node no longer holds it, it says so and the server's C{error} event
        reports L{NotConnected}.

        @raise NotConnected: if no node holds the id.
        @raise ClusterUnavailable: if NATS is not connected.
        @raise InvalidOutgoingMessage: if the message cannot be encoded, or
            is longer than C{maxLineLength} or than NATS carries.
        """
        if self._stopped or not self._nats.connected:
            raise ClusterUnavailable(
                f"cannot reach connection {connectionId}: not connected to NATS")
        node = nodeOf(connectionId)
        if node not in self.nodes:
            raise NotConnected(f"no node holds connection {connectionId}")
        # Not an operation in JSON like the others: "S <id> <asker> " and
        # the client's own line, encoded here, which the node writes as it
        # is -- a message crosses nodes encoded once, and never decoded.
        server = self._server
        line = encodeLimitedLine(message, server.settings.maxLineLength) \
            if server is not None else encodeMessageLine(message)
        self._nats.publish(f"{self.prefix}.node.{node}",
                           b"S %d %d %s" % (connectionId, self.serial, line))

    def sendConfirmed(self, connectionId: int, message: JSONObject) -> "Deferred[None]":
        """
        Send C{message} to a client of the cluster and wait for its node to
        say it was written (as C{tlsjson publish --to} does).
        """
        return self._ask(connectionId, {"op": "send", "message": message}, 5.0)

    def request(self, connectionId: int, request: JSONObject,
                timeout: float) -> "Deferred[JSONObject]":
        """
        Send C{request} to a client of another node.

        @param timeout: the request timeout (C{0}: the node's own); the
            NATS request waits a little longer, so that the node's own
            timeout is what the caller sees.
        """
        wait = (timeout if timeout > 0 else 3600.0) + 2.0
        return self._ask(connectionId, {"op": "request", "request": request}, wait)

    def join(self, connectionId: int, room: str) -> "Deferred[None]":
        """
        Put a client of another node in C{room}.
        """
        return self._ask(connectionId, {"op": "join", "room": room}, 5.0)

    def leave(self, connectionId: int, room: str) -> "Deferred[None]":
        """
        Take a client of another node out of C{room}.
        """
        return self._ask(connectionId, {"op": "leave", "room": room}, 5.0)

    def isConnected(self, connectionId: int) -> "Deferred[bool]":
        """
        Whether a client of another node is connected and authenticated.
        """
        def nowhere(failure: Failure) -> bool:
            failure.trap(NotConnected)
            return False

        return self._ask(connectionId, {"op": "has"}, 5.0).addErrback(nowhere)

    def broadcast(self, message: JSONObject, exclude: Collection[int]) -> None:
        """
        Have every other node send C{message} to all its clients.

        @raise ClusterUnavailable: if NATS is not connected.
        """
        self._nats.publish(f"{self.prefix}.broadcast", encode(
            {"origin": self.serial, "message": message, "exclude": list(exclude)}))

    def sendToRoom(self, room: str, message: JSONObject, exclude: Collection[int]) -> None:
        """
        Have every other node send C{message} to its clients in C{room}.

        @raise ClusterUnavailable: if NATS is not connected.
        """
        self._nats.publish(f"{self.prefix}.room", encode(
            {"origin": self.serial, "room": room, "message": message,
             "exclude": list(exclude)}))

    @property
    def clientCount(self) -> int:
        """
        How many clients the other nodes had at their last heartbeats.
        """
        return sum(self.nodes.values())

    # -- from other nodes --------------------------------------------------------

    def reply(self, subject: str, answer: JSONObject) -> None:
        """
        Publish an answer on C{subject}; lost if NATS is not connected.
        """
        if subject:
            try:
                self._nats.publish(subject, encode(answer))
            except ClusterUnavailable:
                pass

    def _onReply(self, subject: str, data: bytes, reply: str) -> None:
        answer = decodeLine(data)
        undeliverable = answer.get("undeliverable")
        if undeliverable is not None:
            if self._server is not None:
                self._server.emit("error", undeliverable, NotConnected(answer.get("message", "")))
            return
        tables = self._untimedTables if answer.pop("q", None) == "untimed" else self._tables
        table = tables.get(answer.get("node", -1))
        rid = answer.pop("rid", None)
        if table is None or not table.resolve(rid, answer):
            self.log.debug("a late answer from node {node}", node=answer.get("node"))

    def publishTo(self, node: int, operation: JSONObject) -> None:
        """
        Send C{operation} to C{node}, expecting no answer; lost if NATS is
        not connected.
        """
        try:
            self._nats.publish(f"{self.prefix}.node.{node}", encode(operation))
        except ClusterUnavailable:
            pass

    # -- heartbeats ------------------------------------------------------------------

    def _beat(self) -> None:
        self._heartbeat = self._reactor.callLater(self.heartbeatInterval, self._beat)
        now = self._reactor.seconds()
        for node, heard in list(self._lastHeard.items()):
            if now - heard > 3 * self.heartbeatInterval:
                self._gone(node)
        server = self._server
        if server is not None and self._nats.connected and self._subscribed:
            try:
                self._nats.publish(f"{self.prefix}.heartbeat", encode(
                    {"node": self.serial, "serials": self._serials,
                     "clients": server.clientCount}))
            except ClusterUnavailable:
                pass

    def _onHeartbeat(self, subject: str, data: bytes, reply: str) -> None:
        beat = decodeLine(data)
        node = beat.get("node")
        if type(node) is not int or node in self._serials:
            return
        # A node that has taken several serials answers to each; its
        # clients are counted once, under the newest.
        serials = [serial for serial in beat.get("serials", [node]) if type(serial) is int]
        for serial in serials or [node]:
            if beat.get("gone"):
                self._gone(serial)
                continue
            if serial not in self.nodes:
                self.log.info("node {node} joined the cluster", node=serial)
            self.nodes[serial] = int(beat.get("clients", 0)) if serial == node else 0
            self._lastHeard[serial] = self._reactor.seconds()

    def _gone(self, node: int) -> None:
        self._lastHeard.pop(node, None)
        if self.nodes.pop(node, None) is not None:
            self.log.info("node {node} left the cluster", node=node)
        for tables in (self._tables, self._untimedTables):
            table = tables.pop(node, None)
            if table is not None:
                table.failAll(ConnectionLost(f"node {node} left the cluster"))
        if self.pacer is not None:
            self.pacer.nodeGone(node)

    def _failAll(self, error: TLSJSONError) -> None:
        for tables in (self._tables, self._untimedTables):
            waiting = list(tables.values())
            tables.clear()
            for table in waiting:
                table.failAll(error)
        if self.pacer is not None:
            self.pacer.nodeGone(None)


def natsOptions(credentialsFile: Optional[str] = None, ca: Optional[str] = None,
                environ: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """
    The C{nats.connect} options for credentials and TLS, from a file or the
    environment -- never from a command line: C{credentialsFile} (a NATS
    C{.creds} file), else C{TLSJSON_NATS_TOKEN}, else C{TLSJSON_NATS_USER}
    and C{TLSJSON_NATS_PASSWORD}; C{ca} (a PEM file) to verify a C{tls://}
    NATS server with.
    """
    import os
    import ssl

    env = os.environ if environ is None else environ
    options: Dict[str, Any] = {}
    if credentialsFile:
        options["user_credentials"] = credentialsFile
    elif env.get("TLSJSON_NATS_TOKEN"):
        options["token"] = env["TLSJSON_NATS_TOKEN"]
    elif env.get("TLSJSON_NATS_USER"):
        options["user"] = env["TLSJSON_NATS_USER"]
        options["password"] = env.get("TLSJSON_NATS_PASSWORD", "")
    if ca:
        options["tls"] = ssl.create_default_context(cafile=ca)
    return options

