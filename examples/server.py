"""
A tls-json server with the event API.

Run it from the checkout (it uses the development certificate and password
in certs/):

    python examples/server.py          # listens on 127.0.0.1:8888
"""

import sys
from pathlib import Path

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import react

from txtlsjson import Server

CERTS = Path(__file__).resolve().parent.parent / "certs"


async def main(reactor, port=8888):
    password = (CERTS / "dev-password").read_text().strip()
    server = Server(password, certificate=CERTS / "localhost.crt",
                    privateKey=CERTS / "localhost.key")

    server.on("authenticated", lambda id, peer: server.send(id, {"welcome": id}))
    server.on("message", lambda id, message: print(f"client {id} says {message}", flush=True))
    server.on("request", lambda id, request, res: res.send({"sum": sum(request["numbers"])}))
    server.on("close", lambda id: print(f"client {id} left", flush=True))
    server.on("error", lambda id, error: print(f"client {id}: {error}", flush=True))

    await server.listen(port, "127.0.0.1")
    print(f"listening on 127.0.0.1:{server.port}", flush=True)
    await Deferred()  # serve until Ctrl-C


react(lambda reactor: ensureDeferred(main(reactor, *map(int, sys.argv[1:]))))
