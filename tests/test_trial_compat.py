"""
The same library under C{trial}: real TLS on 127.0.0.1 in
L{twisted.trial.unittest.TestCase}s, whose dirty-reactor check fails a test
that leaves any timer, connection or port behind.

Run with C{python -m twisted.trial tests.test_trial_compat}.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from txtlsjson import Client, ConnectionLost, Server
from txtlsjson.certs import makeCertificate, writeKeyPair


class RoundTripTests(TestCase):
    """
    A server and a client over real TLS, each test leaving a clean reactor.
    """

    def setUp(self) -> None:
        directory = Path(tempfile.mkdtemp())
        key, certificate = makeCertificate("localhost", ["localhost"], keyType="ecdsa")
        self.key, self.certificate = writeKeyPair(directory, "server", key, certificate)

    async def _serve(self, **settings: Any) -> Server:
        server = Server("pw", certificate=self.certificate, privateKey=self.key, **settings)
        await server.listen(0, "127.0.0.1")
        self.addCleanup(server.close)
        return server

    def _client(self, server: Server, **settings: Any) -> Client:
        client = Client("localhost", server.port, "pw",  # type: ignore[arg-type]
                        ca=[self.certificate], **settings)
        self.addCleanup(client.disconnect)
        return client

    def test_requestBothWays(self) -> Any:
        """
        Requests both ways resolve, and closing leaves nothing behind (with
        keepalive, idle and request timers all running).
        """
        async def run() -> None:
            server = await self._serve(keepAliveInterval=0.5)
            server.on("request", lambda i, req, res: res.send({"n": req["n"] + 1}))
            ids = []
            server.on("authenticated", lambda i, peer: ids.append(i))
            client = self._client(server, reconnectInterval=0.2, idleTimeout=5)
            client.on("request", lambda req, res: res.send({"n": req["n"] * 2}))
            await client.connect()
            self.assertEqual(await client.request({"n": 1}), {"n": 2})
            self.assertEqual(await server.request(ids[0], {"n": 4}), {"n": 8})

        return ensureDeferred(run())

    def test_pendingRequestFailsOnDisconnect(self) -> Any:
        """
        A pending request errbacks with L{ConnectionLost} when the client
        disconnects, and its timeout is cancelled.
        """
        async def run() -> None:
            server = await self._serve()
            client = self._client(server, requestTimeout=30)
            await client.connect()
            pending = client.request({"never": "answered"})
            await client.disconnect()
            with self.assertRaises(ConnectionLost):
                await pending

        return ensureDeferred(run())

    def test_reactorIsTheGlobalOne(self) -> None:
        """
        Without an injected reactor the global one is used.
        """
        server = Server("pw", certificate=self.certificate, privateKey=self.key)
        self.assertIs(server.factory.clock, reactor)
