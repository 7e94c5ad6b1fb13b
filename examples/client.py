"""
A tls-json client with the event API: talks to examples/server.py (or to
`twistd -n tlsjson --dev`).

    python examples/client.py
"""

import sys
from pathlib import Path

from twisted.internet.defer import ensureDeferred
from twisted.internet.task import react

from txtlsjson import Client

CERTS = Path(__file__).resolve().parent.parent / "certs"


async def main(reactor, port=8888):
    password = (CERTS / "dev-password").read_text().strip()
    client = Client("localhost", port, password, ca=[CERTS / "localhost.crt"],
                    reconnectInterval=2)
    client.on("message", lambda message: print("server says", message, flush=True))

    await client.connect()
    client.send({"hello": "server"})
    answer = await client.request({"numbers": [1, 2, 3]})
    print("answer:", answer, flush=True)
    await client.disconnect()


react(lambda reactor: ensureDeferred(main(reactor, *map(int, sys.argv[1:]))))
