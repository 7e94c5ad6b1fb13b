"""
Rooms, broadcast and presence on one server (L{txtlsjson.rooms},
L{txtlsjson.manyclients}), with clients connected in memory.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest

from txtlsjson import Client, Server
from txtlsjson.errors import InvalidOutgoingMessage, NotConnected
from txtlsjson.rooms import Rooms
from txtlsjson.testing import MemoryNetwork


def test_roomsTable() -> None:
    """
    Members and rooms are kept both ways; an empty room is forgotten.
    """
    rooms: Rooms[int] = Rooms()
    rooms.join(1, "a")
    rooms.join(2, "a")
    rooms.join(1, "b")
    rooms.join(1, "b")
    assert rooms.members("a") == {1, 2} and rooms.roomsOf(1) == {"a", "b"}
    rooms.leave(2, "a")
    rooms.leave(2, "a")
    rooms.leave(3, "nowhere")
    assert rooms.members("a") == {1}
    rooms.forget(1)
    assert len(rooms) == 0 and rooms.roomsOf(1) == frozenset() and list(rooms) == []
    with pytest.raises(TypeError):
        rooms.join(1, 7)  # type: ignore[arg-type]


def connected(count: int) -> Tuple[MemoryNetwork, Server, List[Client], Dict[int, List[Any]]]:
    """
    A server and C{count} clients in memory; what each client receives.
    """
    network = MemoryNetwork()
    server = Server("pw", reactor=network)
    network.result(server.listenOn(network.endpoint(8888)))
    clients = []
    received: Dict[int, List[Any]] = {}
    for number in range(count):
        client = Client("localhost", 8888, "pw", reactor=network)
        received[number] = []
        client.on("message", received[number].append)
        network.result(client.connect())
        clients.append(client)
    return network, server, clients, received


def test_rooms() -> None:
    """
    A message to a room reaches its authenticated members but the excluded;
    a client that disconnects leaves its rooms.
    """
    network, server, clients, received = connected(3)
    assert server.clients == [0, 1, 2]
    for connectionId, room in ((0, "red"), (1, "red"), (2, "blue")):
        network.result(server.join(connectionId, room))
    assert server.members("red") == [0, 1] and server.roomsOf(0) == {"red"}
    assert server.sendToRoom("red", {"to": "red"}) == 2
    assert server.sendToRoom("red", {"but": 0}, exclude=[0]) == 1
    assert server.sendToRoom("empty", {"to": "nobody"}) == 0
    network.flush()
    assert received == {0: [{"to": "red"}], 1: [{"to": "red"}, {"but": 0}], 2: []}
    network.result(server.leave(0, "red"))
    network.result(clients[1].disconnect())
    assert server.members("red") == [] and server.roomsOf(1) == frozenset()


def test_broadcastAndPresence() -> None:
    """
    A broadcast reaches every authenticated client but the excluded;
    C{clientCount} and C{isConnected} tell who is there.
    """
    network, server, clients, received = connected(2)
    assert server.clientCount == 2 and server.isConnected(1) and not server.isConnected(5)
    assert server.broadcast({"all": True}, exclude={1}) == 1
    assert server.broadcast({"all": 2}) == 2
    network.flush()
    assert received == {0: [{"all": True}, {"all": 2}], 1: [{"all": 2}]}
    network.result(clients[0].disconnect())
    assert server.clientCount == 1 and not server.isConnected(0)


def test_refusals() -> None:
    """
    An unknown id cannot join a room; a message that cannot be sent is
    refused before anything is written.
    """
    network, server, clients, received = connected(1)
    with pytest.raises(NotConnected):
        network.result(server.join(9, "red"))
    network.result(server.join(0, "red"))
    with pytest.raises(InvalidOutgoingMessage):
        server.sendToRoom("red", {"requestId": 1})
    with pytest.raises(InvalidOutgoingMessage):
        server.broadcast({"big": "x" * (server.settings.maxLineLength + 1)})
    network.flush()
    assert received == {0: []}
