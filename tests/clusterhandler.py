"""
A C{--handler} for the cluster tests: it lets a client act on other
clients of the cluster by id, so that tests can drive cross-node traffic
from outside the server processes.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from txtlsjson.server import Server
from txtlsjson.wire import JSONObject


class Relay:
    """
    Requests: C{{"whoami": true}} answers the asker's id;
    C{{"send": ID, "message": M}}, C{{"ask": ID, "request": R}},
    C{{"join": ROOM}}, C{{"put": ID, "room": ROOM}}, C{{"room": ROOM,
    "message": M}}, C{{"all": M}} do
    what they say, on whichever node holds the client.
    """

    def __init__(self, server: Server) -> None:
        self.server = server

    def request(self, connectionId: int, request: JSONObject) -> Any:
        server = self.server
        if "whoami" in request:
            return {"id": connectionId}
        if "send" in request:
            server.send(request["send"], request["message"])
            return {"sent": True}
        if "ask" in request:
            d: Deferred[Any] = server.request(request["ask"], request["request"])
            return d.addCallbacks(lambda answer: {"answer": answer},
                                  lambda failure: _failed(failure))
        if "put" in request:
            put = request["put"]
            return server.join(put, request["room"]).addCallback(lambda _: {"put": put})
        if "join" in request:
            room = request["join"]
            return server.join(connectionId, room).addCallback(lambda _: {"joined": room})
        if "room" in request:
            return {"sent": server.sendToRoom(request["room"], request["message"])}
        if "all" in request:
            return {"sent": server.broadcast(request["all"])}
        return {"unknown": request}


def _failed(failure: Failure) -> JSONObject:
    return {"error": type(failure.value).__name__, "message": failure.getErrorMessage()}
