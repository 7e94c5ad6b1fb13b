"""
What a server does to many clients at once: rooms, broadcast, presence.

L{ManyClients} is a part of L{Server<txtlsjson.server.Server>}, kept apart
so that each reads at once.  A message sent to many is encoded once and
the same line written to each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Collection, FrozenSet, Iterable, List, Mapping, Optional

from twisted.internet.defer import Deferred, fail, succeed

from txtlsjson.codec import encodeLimitedLine
from txtlsjson.errors import ClusterUnavailable, NotConnected
from txtlsjson.rooms import Rooms
from txtlsjson.settings import ServerSettings
from txtlsjson.wire import JSONObject

if TYPE_CHECKING:
    from txtlsjson.cluster import Cluster
    from txtlsjson.protocol import TLSJSONServerProtocol


class ManyClients:
    """
    Rooms, broadcast and presence over a server's connections.
    """

    settings: ServerSettings
    cluster: Optional["Cluster"]
    _connections: "Mapping[int, TLSJSONServerProtocol]"
    _rooms: Rooms[int]
    emit: Callable[..., None]

    @property
    def clientCount(self) -> int:
        """
        How many clients are connected and authenticated.
        """
        return sum(1 for p in self._connections.values() if p.isAuthenticated)

    def isConnected(self, connectionId: int) -> bool:
        """
        Whether client C{connectionId} is connected to this node and
        authenticated.
        """
        protocol = self._connections.get(connectionId)
        return protocol is not None and protocol.isAuthenticated

    def isConnectedAnywhere(self, connectionId: int) -> "Deferred[bool]":
        """
        Whether client C{connectionId} is connected and authenticated on
        any node of the cluster (this node's, without one).
        """
        cluster = self.cluster
        if cluster is None or cluster.isLocal(connectionId):
            return succeed(self.isConnected(connectionId))
        return cluster.isConnected(connectionId)

    @property
    def clusterClientCount(self) -> int:
        """
        How many clients the cluster has: this node's now, the others' at
        their last heartbeat (at most a heartbeat interval old).
        """
        cluster = self.cluster
        return self.clientCount + (cluster.clientCount if cluster is not None else 0)

    def join(self, connectionId: int, room: str) -> "Deferred[None]":
        """
        Put client C{connectionId} in C{room} -- in a cluster, on whichever
        node holds it; it leaves every room when it disconnects.

        @return: a Deferred that fires once it is in the room (at once for
            a client of this node), or fails with L{NotConnected} if there
            is no such client (or with the cluster's errors).  A message
            sent to the room after it fires reaches the client.
        """
        if connectionId in self._connections:
            self._rooms.join(connectionId, room)
            return succeed(None)
        cluster = self._clusterOf(connectionId)
        if cluster is None:
            return fail(NotConnected(f"no connection {connectionId!r} to put in room {room!r}"))
        return cluster.join(connectionId, room)

    def leave(self, connectionId: int, room: str) -> "Deferred[None]":
        """
        Take client C{connectionId} out of C{room} (if it is in it) -- in a
        cluster, on whichever node holds it.

        @return: a Deferred that fires once it is out.
        """
        cluster = self._clusterOf(connectionId)
        if cluster is not None:
            return cluster.leave(connectionId, room)
        self._rooms.leave(connectionId, room)
        return succeed(None)

    def _clusterOf(self, connectionId: int) -> "Optional[Cluster]":
        """
        The cluster, if C{connectionId} is another node's; else L{None}.
        """
        cluster = self.cluster
        if cluster is None or cluster.isLocal(connectionId) or connectionId in self._connections:
            return None
        return cluster

    def roomsOf(self, connectionId: int) -> FrozenSet[str]:
        """
        @return: the rooms client C{connectionId} is in.
        """
        return self._rooms.roomsOf(connectionId)

    def members(self, room: str) -> List[int]:
        """
        @return: the ids of the clients in C{room}, in order.
        """
        return sorted(self._rooms.members(room))

    def sendToRoom(self, room: str, message: JSONObject,
                   exclude: Collection[int] = ()) -> int:
        """
        Send C{message} to every authenticated client in C{room} but those
        in C{exclude} (socket.io's C{io.to(room).emit}) -- in a cluster, on
        every node.  The message is encoded once per node.

        @return: how many clients of this node it was written to.
        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; nothing was sent.
        """
        return self._toMany(room, message, exclude)

    def broadcast(self, message: JSONObject, exclude: Collection[int] = ()) -> int:
        """
        Send C{message} to every authenticated client but those in
        C{exclude} -- in a cluster, on every node.  The message is encoded
        once per node.

        @return: how many clients of this node it was written to.
        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; nothing was sent.
        """
        return self._toMany(None, message, exclude)

    def _toMany(self, room: Optional[str], message: JSONObject,
                exclude: Collection[int]) -> int:
        """
        Send C{message} to this node's clients in C{room} (all, if
        L{None}), and have every other node do the same.
        """
        sent = self._fanOutLocal(room, message, exclude)
        cluster = self.cluster
        if cluster is not None:
            try:
                if room is None:
                    cluster.broadcast(message, exclude)
                else:
                    cluster.sendToRoom(room, message, exclude)
            except ClusterUnavailable as e:
                # This node's clients have it; the others are reported.
                self.emit("error", None, e)
        return sent

    def _fanOutLocal(self, room: Optional[str], message: JSONObject,
                     exclude: Collection[int]) -> int:
        """
        Send C{message} to this node's clients: those in C{room}, or all.
        """
        line = encodeLimitedLine(message, self.settings.maxLineLength)
        connections = self._connections
        connectionIds: Iterable[int] = (
            list(connections) if room is None else self._rooms.members(room))
        sent = 0
        for connectionId in connectionIds:
            protocol = connections.get(connectionId)
            if protocol is not None and protocol.isAuthenticated and connectionId not in exclude:
                protocol.writeLine(line)
                sent += 1
        return sent
