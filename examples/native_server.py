"""
The Twisted-native layer: a protocol subclass with hooks, served by
reactor.listenSSL.  Works with examples/client.py.

    python examples/native_server.py
"""

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.python import log

from txtlsjson import TLSJSONServerFactory, TLSJSONServerProtocol, serverTLSOptions

CERTS = Path(__file__).resolve().parent.parent / "certs"


class Adder(TLSJSONServerProtocol):
    def authenticated(self):
        self.send({"welcome": "native"})

    def messageReceived(self, message):
        print("message:", message, flush=True)

    async def requestReceived(self, request):
        # A value, a Deferred or (as here) a coroutine's result is the response.
        return {"sum": sum(request["numbers"])}


factory = TLSJSONServerFactory((CERTS / "dev-password").read_text().strip())
factory.protocol = Adder
port = int(sys.argv[1]) if len(sys.argv) > 1 else 8888
listening = reactor.listenSSL(
    port, factory, serverTLSOptions(CERTS / "localhost.crt", CERTS / "localhost.key"),
    interface="127.0.0.1")
print(f"listening on 127.0.0.1:{listening.getHost().port}", flush=True)
log.startLogging(sys.stderr, setStdout=False)
reactor.run()
