"""
Hostile input over real TLS on 127.0.0.1: every bad line gets a clear error
and the connection is handled as documented; the server keeps serving
others; memory stays bounded; guessing passwords is slowed down; a crowd of
connections that never authenticate is dropped.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any, List, cast

import pytest
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.task import deferLater

from txtlsjson import (
    AuthenticationTimeout,
    Client,
    ConnectionLost,
    InvalidMessage,
    InvalidOutgoingMessage,
    LineTooLong,
    Server,
    UnknownResponse,
    clientTLSOptions,
)
from txtlsjson.tap import Options, makeService
from txtlsjson.throttle import AuthenticationThrottle

from .conftest import PKI
from .faults import Firehose, RawLines, memoryOf
from .inreactor import blockOn, inReactor
from .processes import twistd
from .test_faults import freePort, nextEvent

MiB = 1024 * 1024


async def rawClient(pki: PKI, port: int, tls: bool = True, bindAddress: Any = None) -> RawLines:
    """
    A connection that sends whatever the test writes.
    """
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port, bindAddress=bindAddress)
    if tls:
        endpoint = wrapClientTLS(clientTLSOptions("localhost", [pki.caCert]), endpoint)
    return await connectProtocol(endpoint, RawLines())  # type: ignore[no-any-return]


async def authenticatedRaw(pki: PKI, port: int) -> RawLines:
    raw = await rawClient(pki, port)
    raw.transport.write(b'{"password":"s3cret"}\n')  # type: ignore[union-attr]
    await raw.waitFor(b'{"authenticated":true}\n')
    return raw


@pytest.fixture
def passwordFile(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return path


@inReactor
async def test_hugeLines(pki: PKI, passwordFile: Path) -> None:
    """
    A 200 MiB line with no newline, before and after authentication, against
    a real twistd server with its default limits: the connection is dropped
    at the limit (64 KiB before authentication, 32 MiB after), the server's
    peak memory grows by far less than the line, and it keeps serving.
    """
    port = freePort()
    process = twistd("-n", "--pidfile=", "--logfile=-", "tlsjson", "--port", str(port),
                     "--interface", "127.0.0.1", "--cert", str(pki.serverCert),
                     "--key", str(pki.serverKey), "--password-file", str(passwordFile),
                     cwd=passwordFile.parent)
    try:
        await process.waitFor("tls-json server listening on")
        pid = process.transport.pid  # type: ignore[union-attr]
        before = memoryOf(pid, "VmHWM")
        x = b"x" * 65536

        for authenticated in (False, True):
            raw = await (authenticatedRaw(pki, port) if authenticated else rawClient(pki, port))
            hose = Firehose(raw.transport, 200 * MiB, lambda n: x[:n])
            raw.transport.registerProducer(hose, False)  # type: ignore[union-attr]
            await raw.ended
            assert hose.written < 200 * MiB
        await process.waitFor("line exceeds the limit of 65536 bytes")
        await process.waitFor("line exceeds the limit of 33554432 bytes")
        growth = memoryOf(pid, "VmHWM") - before
        assert growth < 100 * MiB, growth

        client = Client("localhost", port, "s3cret", ca=[pki.caCert])
        await client.connect()
        assert await client.request({"still": "serving"}) == {"still": "serving"}
        await client.disconnect()
    finally:
        process.signal("TERM")
        await process.ended


@pytest.fixture
def server(pki: PKI) -> Any:
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey)
    blockOn(server.listen(0, "127.0.0.1"))
    yield server
    blockOn(server.close())


BAD_LINES = [
    (b"{not json", InvalidMessage, "not valid JSON"),
    (b'{"a":"\xff\xfe"}', InvalidMessage, "not valid UTF-8"),
    (b"[1,2,3]", InvalidMessage, "an array, not a JSON object"),
    (b"42", InvalidMessage, "a number, not a JSON object"),
    (b"null", InvalidMessage, "null, not a JSON object"),
    (b"[" * 100000, InvalidMessage, "nested more than 1024 deep"),
    (b'{"a":NaN}', InvalidMessage, "not valid JSON"),
    (b'{"a":Infinity}', InvalidMessage, "not valid JSON"),
    (b'{"requestId":0}', InvalidMessage, "requestId must be an integer"),
    (b'{"requestId":"x"}', InvalidMessage, "requestId must be an integer"),
    (b'{"requestId":-5}', InvalidMessage, "requestId must be an integer"),
    (b'{"requestId":123456789012345678901234567890}', InvalidMessage,
     "requestId must be an integer"),
    (b'{"responseId":42}', UnknownResponse, "unknown request id 42"),
    (b'{"password":"s3cret"}', InvalidMessage, "a password after authentication"),
]


@inReactor
async def test_badLines(server: Server, pki: PKI) -> None:
    """
    Each kind of bad line from an authenticated client: an error event with
    a clear exception, the line dropped, the connection kept, the next line
    delivered.
    """
    errors: List[Any] = []
    messages: List[Any] = []
    server.on("error", lambda i, e: errors.append(e))
    server.on("message", lambda i, m: messages.append(m))
    raw = await authenticatedRaw(pki, server.port)  # type: ignore[arg-type]
    for number, (line, kind, text) in enumerate(BAD_LINES):
        arrived = nextEvent(server, "message")
        raw.transport.write(line + b"\n" + b'{"after":%d}\n' % number)  # type: ignore[union-attr]
        await arrived
        assert isinstance(errors[-1], kind), (line[:40], errors[-1])
        assert text in str(errors[-1])
    assert len(errors) == len(BAD_LINES)
    assert messages == [{"after": n} for n in range(len(BAD_LINES))]
    assert not raw.ended.called


@inReactor
async def test_badLinesFromClientSide(pki: PKI) -> None:
    """
    The client side treats a hostile server the same way.
    """
    from twisted.internet.protocol import Factory

    from txtlsjson.tls import serverTLSOptions

    class Hostile(RawLines):
        def dataReceived(self, data: bytes) -> None:
            super().dataReceived(data)
            if b"password" in data:
                self.transport.write(  # type: ignore[union-attr]
                    b'{"authenticated":true}\n[1]\n{"responseId":9}\n{"__ping":"x"}\n'
                    b'{"requestId":-1}\n{"ok":1}\n')

    factory = Factory.forProtocol(Hostile)
    port = cast(Any, reactor).listenSSL(0, factory, serverTLSOptions(pki.serverCert, pki.serverKey),
                             interface="127.0.0.1")
    client = Client("localhost", port.getHost().port, "s3cret", ca=[pki.caCert])
    errors: List[Any] = []
    client.on("error", errors.append)
    try:
        ok = nextEvent(client, "message")
        await client.connect()
        assert await ok == ({"ok": 1},)
        assert [type(e) for e in errors] == [InvalidMessage, UnknownResponse, InvalidMessage,
                                              InvalidMessage]
        assert client.isAuthenticated
    finally:
        await client.disconnect()
        await port.stopListening()


@inReactor
async def test_loneSurrogateRefusedLocally(server: Server, pki: PKI) -> None:
    """
    Sending a lone surrogate fails locally with a clear error; the
    connection is unaffected.
    """
    client = Client("localhost", server.port, "s3cret", ca=[pki.caCert])  # type: ignore[arg-type]
    server.on("request", lambda i, req, res: res.send(req))
    await client.connect()
    try:
        with pytest.raises(InvalidOutgoingMessage, match="lone surrogate"):
            client.send({"text": "\ud800"})
        with pytest.raises(InvalidOutgoingMessage, match="lone surrogate"):
            await client.request({"text": "\udfff"})
        assert await client.request({"text": "\U0001f600"}) == {"text": "\U0001f600"}
    finally:
        await client.disconnect()


@inReactor
async def test_lineTooLongAfterAuthentication(pki: PKI) -> None:
    """
    An over-long line from an authenticated client is reported
    (L{LineTooLong}) and its connection closed; other clients stay.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    maxLineLength=100_000)
    await server.listen(0, "127.0.0.1")
    try:
        other = Client("localhost", server.port, "s3cret", ca=[pki.caCert])  # type: ignore[arg-type]
        await other.connect()
        errors: List[Any] = []
        server.on("error", lambda i, e: errors.append(e))
        raw = await authenticatedRaw(pki, server.port)  # type: ignore[arg-type]
        raw.transport.write(b'{"a":"' + b"y" * 200_000)  # type: ignore[union-attr]
        await raw.ended
        assert isinstance(errors[0], LineTooLong)
        server.on("request", lambda i, req, res: res.send(req))
        assert await other.request({"fine": True}) == {"fine": True}
        await other.disconnect()
    finally:
        await server.close()


@inReactor
async def test_passwordGuessingSlowed(pki: PKI) -> None:
    """
    After a wrong password from 127.0.0.1, its further attempts are answered
    one at a time after growing waits, however many connections it opens;
    meanwhile a client from 127.0.0.2 with the right password is let in at
    once.
    """
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    authFailureDelay=0.2, authFailureMaxDelay=5)
    await server.listen(0, "127.0.0.1")
    throttle = server.factory.throttle
    assert isinstance(throttle, AuthenticationThrottle)
    answers: List[str] = []
    try:
        first = await rawClient(pki, server.port)  # type: ignore[arg-type]
        first.transport.write(b'{"password":"guess0"}\n')  # type: ignore[union-attr]
        await first.waitFor(b'{"error":"incorrect password"}\n')
        assert throttle.delayFor("127.0.0.1") == 0.2

        guessers = [await rawClient(pki, server.port) for _ in range(3)]  # type: ignore[arg-type]
        refusals = []
        for n, guesser in enumerate(guessers, 1):
            guesser.transport.write(b'{"password":"guess%d"}\n' % n)  # type: ignore[union-attr]
            refused = guesser.waitFor(b'{"error":"incorrect password"}\n')
            def answered(_: object, n: int = n) -> None:
                answers.append(f"guess{n}")

            refused.addCallback(answered)
            refusals.append(refused)
        for _ in range(500):  # bounded: at most 5 s for the guesses to arrive
            if throttle.attemptsFrom("127.0.0.1") == 3:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert throttle.attemptsFrom("127.0.0.1") == 3
        honest = Client("localhost", server.port, "s3cret", ca=[pki.caCert],  # type: ignore[arg-type]
                        bindAddress=("127.0.0.2", 0))
        await honest.connect()
        answers.append("honest")
        await gatherResults(refusals)
        assert answers == ["honest", "guess1", "guess2", "guess3"]
        assert throttle.delayFor("127.0.0.1") == 1.6  # 0.2 doubled per failure
        await honest.disconnect()
        for raw in [first] + guessers:
            raw.transport.loseConnection()  # type: ignore[union-attr]
            await raw.ended
    finally:
        await server.close()


@inReactor
async def test_unauthenticatedCrowd(pki: PKI) -> None:
    """
    500 connections that never authenticate (half stuck before TLS, half
    after the handshake) are dropped after the auth timeout, while an
    authenticated client keeps being served.
    """
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    if limit[0] < 1500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, limit[1]), limit[1]))
    server = Server("s3cret", certificate=pki.serverCert, privateKey=pki.serverKey,
                    authTimeout=1.5)
    await server.listen(0, "127.0.0.1")
    timeouts: List[int] = []
    def error(i: int, e: Exception) -> None:
        if isinstance(e, AuthenticationTimeout):
            timeouts.append(i)

    server.on("error", error)
    server.on("request", lambda i, req, res: res.send(req))
    client = Client("localhost", server.port, "s3cret", ca=[pki.caCert])  # type: ignore[arg-type]
    try:
        await client.connect()
        crowd = [ensureDeferred(rawClient(pki, server.port, tls=n % 2 == 0))  # type: ignore[arg-type]
                 for n in range(500)]
        raws = await gatherResults(crowd)
        served = 0
        while len(timeouts) < 500:
            assert await client.request({"n": served}) == {"n": served}
            served += 1
            assert served < 1_000_000, f"only {len(timeouts)} of 500 timed out"
        await gatherResults([r.ended for r in raws])
        assert served > 0
        assert server.clients == [0]
        assert sorted(timeouts) == list(range(1, 501))
    finally:
        await client.disconnect()
        await server.close()


@inReactor
async def test_serviceStopFailsPending(pki: PKI, tmp_path: Path) -> None:
    """
    Stopping the twistd service closes its clients and errbacks their
    pending requests.
    """
    (tmp_path / "pw").write_text("s3cret")
    options = Options()
    options.parseOptions([
        "--port", "0", "--interface", "127.0.0.1", "--cert", str(pki.serverCert), "--key",
        str(pki.serverKey), "--password-file", str(tmp_path / "pw"),
        "--handler", "tests.faulthandlers:Holder"])
    service = makeService(options)
    service.privilegedStartService()
    service.startService()
    client = Client("localhost", service.server.port, "s3cret",  # type: ignore[attr-defined]
                    ca=[pki.caCert], requestTimeout=60)
    await client.connect()
    held = client.request({"hold": True})
    await service.stopService()
    with pytest.raises(ConnectionLost):
        await held
    await client.disconnect()
