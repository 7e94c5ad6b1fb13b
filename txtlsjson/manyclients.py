"""
What a server does to many clients at once: rooms, broadcast, presence.

L{ManyClients} is a part of L{Server<txtlsjson.server.Server>}, kept apart
so that each reads at once.  A message sent to many is encoded once and
the same line written to each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Collection, FrozenSet, Iterable, List, Mapping

from txtlsjson.codec import encodeMessageLine
from txtlsjson.errors import InvalidOutgoingMessage, NotConnected
from txtlsjson.rooms import Rooms
from txtlsjson.settings import ServerSettings
from txtlsjson.wire import JSONObject

if TYPE_CHECKING:
    from txtlsjson.protocol import TLSJSONServerProtocol


class ManyClients:
    """
    Rooms, broadcast and presence over a server's connections.
    """

    settings: ServerSettings
    _connections: "Mapping[int, TLSJSONServerProtocol]"
    _rooms: Rooms[int]

    @property
    def clientCount(self) -> int:
        """
        How many clients are connected and authenticated.
        """
        return sum(1 for p in self._connections.values() if p.isAuthenticated)

    def isConnected(self, connectionId: int) -> bool:
        """
        Whether client C{connectionId} is connected and authenticated.
        """
        protocol = self._connections.get(connectionId)
        return protocol is not None and protocol.isAuthenticated

    def join(self, connectionId: int, room: str) -> None:
        """
        Put client C{connectionId} in C{room}; it leaves every room when it
        disconnects.

        @raise NotConnected: if there is no such connection.
        """
        if connectionId not in self._connections:
            raise NotConnected(f"no connection {connectionId!r} to put in room {room!r}")
        self._rooms.join(connectionId, room)

    def leave(self, connectionId: int, room: str) -> None:
        """
        Take client C{connectionId} out of C{room} (if it is in it).
        """
        self._rooms.leave(connectionId, room)

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
        in C{exclude} (socket.io's C{io.to(room).emit}).  The message is
        encoded once.

        @return: how many clients it was written to.
        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; nothing was sent.
        """
        return self._fanOut(self._rooms.members(room), message, exclude)

    def broadcast(self, message: JSONObject, exclude: Collection[int] = ()) -> int:
        """
        Send C{message} to every authenticated client but those in
        C{exclude}.  The message is encoded once.

        @return: how many clients it was written to.
        @raise InvalidOutgoingMessage: if the message cannot be sent as it
            is; nothing was sent.
        """
        return self._fanOut(list(self._connections), message, exclude)

    def _fanOut(self, connectionIds: Iterable[int], message: JSONObject,
                exclude: Collection[int]) -> int:
        line = encodeMessageLine(message)
        if len(line) > self.settings.maxLineLength + 1:
            raise InvalidOutgoingMessage(
                f"message of {len(line) - 1} bytes exceeds maxLineLength "
                f"({self.settings.maxLineLength})")
        sent = 0
        connections = self._connections
        for connectionId in connectionIds:
            protocol = connections.get(connectionId)
            if protocol is not None and protocol.isAuthenticated and connectionId not in exclude:
                protocol.writeLine(line)
                sent += 1
        return sent
