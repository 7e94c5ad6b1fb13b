"""
The cheap path through Twisted's TLS transport (L{txtlsjson.fasttls}),
over real TLS in memory: what it delivers and writes is what Twisted's own
code would, in every size and in every piece, and the uncommon cases (a
close, a corrupt record) end the connection as Twisted's code ends it.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure

from txtlsjson import TLSJSONServerFactory, serverTLSOptions
from txtlsjson import fasttls
from txtlsjson.fasttls import fastTLS

from .conftest import PKI
from .helpers import CLIENT_ADDRESS, inMemoryOverTLS


def takesTheFastPath(transport: Any) -> bool:
    return isinstance(transport, BufferingTLSTransport) and type(transport) is not BufferingTLSTransport


def recordCalls(target: Any, name: str) -> List[Any]:
    """
    The argument of each call of C{target}'s method C{name}, which goes on
    as it is.
    """
    calls: List[Any] = []
    original = getattr(target, name)

    def record(argument: Any) -> None:
        calls.append(argument)
        original(argument)

    setattr(target, name, record)
    return calls


def recordLoss(protocol: Any) -> List[Failure]:
    """
    The reasons C{protocol}'s connection is lost with.
    """
    return recordCalls(protocol, "connectionLost")


def recordWrites(transport: Any) -> List[bytes]:
    """
    What is written to C{transport}, a write at a time.
    """
    return recordCalls(transport, "write")


def test_connectionsTakeTheFastPath(pki: PKI) -> None:
    """
    Both ends of a txtlsjson connection over Twisted's TLS take the cheap
    path, and a request is answered through it.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    assert takesTheFastPath(client.transport) and takesTheFastPath(server.transport)
    answers: List[Any] = []
    client.request({"n": 7}).addCallback(answers.append)
    clock.advance(0)
    pump.flush()
    assert answers == [{"answer": 7}]


def test_everySizeArrives(pki: PKI) -> None:
    """
    Messages below, at and above one TLS record's payload (16 KiB), and
    far above the 32 KiB read at once, arrive whole and in order both ways,
    whether written one per turn or gathered together.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    sizes = [0, 1, 16_300, 16_384, 16_385, 32_768, 40_000, 200_000]
    toClient: List[Any] = []
    toServer: List[Any] = []
    client.messageReceived = toClient.append
    server.messageReceived = toServer.append
    for size in sizes:  # gathered in one turn
        server.send({"x": "a" * size})
        client.send({"x": "b" * size})
    clock.advance(0)
    pump.flush()
    for size in sizes:  # one per turn
        server.send({"x": "c" * size})
        client.send({"x": "d" * size})
        clock.advance(0)
        pump.flush()
    assert [len(message["x"]) for message in toClient] == sizes * 2
    assert [len(message["x"]) for message in toServer] == sizes * 2
    assert {message["x"][:1] for message in toClient} == {"a", "c", ""}


def test_recordsInPieces(pki: PKI) -> None:
    """
    Ciphertext that arrives a byte at a time, records cut anywhere, is
    decrypted once each record is whole.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    received: List[Any] = []
    server.messageReceived = received.append
    for n in range(3):
        client.send({"n": n, "pad": "p" * 100})
    clock.advance(0)
    ciphertext = pump.clientIO.getOutBuffer()
    assert len(ciphertext) > 300
    for i in range(len(ciphertext)):
        pump.server.dataReceived(ciphertext[i:i + 1])
        if i < 20:
            assert received == []
    assert [message["n"] for message in received] == [0, 1, 2]


def test_allEncryptedBytesWrittenTogether(pki: PKI) -> None:
    """
    However much OpenSSL has encrypted when the transport is flushed -- more
    than the 32 KiB read at once here -- all of it goes to the transport
    beneath, in one write.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    received: List[Any] = []
    server.messageReceived = received.append
    tls = client.transport
    writes = recordWrites(tls.transport)
    line = b'{"pad":"' + b"p" * 16_000 + b'"}\n'
    for _ in range(3):
        tls._tlsConnection.send(line)  # encrypted, not yet flushed
    tls._flushSendBIO()
    assert len(writes) == 1 and len(writes[0]) > 3 * 16_000
    pump.flush()
    assert [len(message["pad"]) for message in received] == [16_000] * 3


def test_answersToOneReadSentTogether(pki: PKI) -> None:
    """
    The records one read brings -- here three requests, each written in a
    turn of its own, so a record each -- are delivered a record at a time,
    as Twisted delivers them, and the answers to all of them go to the
    transport beneath in one write.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    answers: List[Any] = []
    for n in range(3):
        client.request({"n": n}).addCallback(answers.append)
        clock.advance(0)
    delivered: List[bytes] = recordCalls(server, "dataReceived")
    writes = recordWrites(server.transport.transport)
    pump.server.dataReceived(pump.clientIO.getOutBuffer())
    assert [data.count(b"\n") for data in delivered] == [1, 1, 1]
    assert len(writes) == 1
    pump.flush()
    assert answers == [{"answer": 0}, {"answer": 1}, {"answer": 2}]


def test_answersHeldNoLongerThanAFullWrite(pki: PKI) -> None:
    """
    What is held to be sent at the end of a read is sent as soon as it
    makes 64 KiB: ten answers of 15 KB to one read go out in two writes,
    none over 64 KiB and a record, and all arrive.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    server.requestReceived = lambda request: {"pad": "p" * 15_000}
    answers: List[Any] = []
    for n in range(10):
        client.request({"n": n}).addCallback(answers.append)
        clock.advance(0)
    writes = recordWrites(server.transport.transport)
    pump.server.dataReceived(pump.clientIO.getOutBuffer())
    assert len(writes) == 2
    assert all(len(data) < 80 * 1024 for data in writes)
    pump.flush()
    assert len(answers) == 10


@pytest.mark.parametrize("size, expectedWrites", [
    (16_384, 1), (40_000, 1), (65_536, 1), (65_537, 2), (200_000, 4)])
def test_longWriteInFewWrites(pki: PKI, size: int, expectedWrites: int) -> None:
    """
    A write longer than a record is encrypted a record at a time, and the
    records of each 64 KiB written on together: one write beneath, not one a
    record.  It arrives whole.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    received: List[Any] = []
    server.messageReceived = received.append
    writes = recordWrites(client.transport.transport)
    line = b'{"pad":"' + b"p" * (size - 11) + b'"}\n'
    assert len(line) == size
    client.transport.write(line)
    clock.advance(0)
    assert len(writes) == expectedWrites
    pump.flush()
    assert [len(message["pad"]) for message in received] == [size - 11]


def test_peerClosesTLS(pki: PKI) -> None:
    """
    The peer's TLS close (close_notify) read on the cheap path ends the
    connection cleanly, as Twisted's own code does.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    serverLost = recordLoss(server)
    client.transport.loseConnection()
    pump.flush()
    [reason] = serverLost
    assert reason.check(ConnectionDone)


def test_heldAnswersSentWhenDeliveryRaises(pki: PKI) -> None:
    """
    When the protocol raises while a read's records are delivered, what it
    answered to the records before still goes out, as it would have
    without holding: here the second of two requests in one read raises.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    answers: List[Any] = []
    for n in range(2):
        client.request({"n": n}).addCallback(answers.append)
        clock.advance(0)
    original = server.dataReceived
    delivered: List[bytes] = []

    def dataReceived(data: bytes) -> None:
        delivered.append(data)
        if len(delivered) == 2:
            raise RuntimeError("the protocol fails")
        original(data)

    server.dataReceived = dataReceived
    writes = recordWrites(server.transport.transport)
    with pytest.raises(RuntimeError, match="the protocol fails"):
        pump.server.dataReceived(pump.clientIO.getOutBuffer())
    assert len(writes) == 1
    pump.flush()
    assert answers == [{"answer": 0}]


def test_dataBeforeCloseInOneRead(pki: PKI) -> None:
    """
    Messages and the peer's TLS close arriving in one read: the messages
    are delivered, then the connection ends cleanly.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    received: List[Any] = []
    server.messageReceived = received.append
    serverLost = recordLoss(server)
    for n in range(3):
        client.send({"n": n})
        clock.advance(0)
    client.transport.loseConnection()
    pump.server.dataReceived(pump.clientIO.getOutBuffer())
    assert [message["n"] for message in received] == [0, 1, 2]
    pump.flush()
    [reason] = serverLost
    assert reason.check(ConnectionDone)


def test_dataBeforeCorruptRecordInOneRead(pki: PKI) -> None:
    """
    A request and a corrupt record after it in one read: the request is
    delivered and its answer sent before the connection ends with
    OpenSSL's error, as had they come in two reads.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    answers: List[Any] = []
    client.request({"n": 1}).addBoth(answers.append)
    clock.advance(0)
    serverLost = recordLoss(server)
    pump.server.dataReceived(pump.clientIO.getOutBuffer() + b"\x17\x03\x03\x00\x30" + b"\x01" * 0x30)
    pump.flush()
    [reason] = serverLost
    assert reason.check(SSL.Error)
    assert answers == [{"answer": 1}]


def test_corruptRecord(pki: PKI) -> None:
    """
    A record that does not decrypt (here, application data with a forged
    authentication tag) ends the connection with OpenSSL's error, as
    Twisted's own code does.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    serverLost = recordLoss(server)
    pump.server.dataReceived(b"\x17\x03\x03\x00\x30" + b"\x01" * 0x30)
    pump.flush()
    [reason] = serverLost
    assert reason.check(SSL.Error)


def test_connectionReleasedWithTheConnection(pki: PKI) -> None:
    """
    The parts of pyOpenSSL's C{Connection} the cheap path keeps are let go
    of when the connection is lost, as Twisted lets go of the C{Connection}
    itself: a protocol kept after its connection does not keep OpenSSL's
    buffers.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    kept = {fasttls._SSL, fasttls._INTO_SSL, fasttls._FROM_SSL}
    tls = server.transport
    assert kept <= set(vars(tls))
    client.transport.loseConnection()
    pump.flush()
    assert tls._tlsConnection is None
    assert not kept & set(vars(tls))


def test_callbackProblemOfTheCurrentContext(pki: PKI) -> None:
    """
    An exception that one of pyOpenSSL's callbacks stored on the
    connection's current C{Context} -- a server may switch a connection's
    C{Context} during the handshake (SNI) -- is raised by the next read, as
    pyOpenSSL raises it.
    """
    clock, pump, client, server = inMemoryOverTLS(pki)
    switched = SSL.Context(SSL.TLS_METHOD)
    switched.set_verify(SSL.VERIFY_NONE, lambda *arguments: True)
    server.transport._tlsConnection.set_context(switched)
    helper = switched._verify_helper
    assert helper is not None
    helper._problems.append(ValueError("raised in a callback"))
    client.send({"n": 1})
    clock.advance(0)
    with pytest.raises(ValueError, match="raised in a callback"):
        pump.server.dataReceived(pump.clientIO.getOutBuffer())


def test_otherTransportsLeftAlone(pki: PKI) -> None:
    """
    Only Twisted's own TLS transports, connected, are changed: not a
    subclass (whose overrides would be bypassed), not one still
    unconnected, not anything else.
    """
    assert not fastTLS(None)
    assert not fastTLS(object())
    factory = TLSMemoryBIOFactory(serverTLSOptions(pki.serverCert, pki.serverKey), False,
                                  TLSJSONServerFactory("pw"))
    unconnected = factory.buildProtocol(CLIENT_ADDRESS)
    assert type(unconnected) is BufferingTLSTransport
    assert not fastTLS(unconnected)
    assert type(unconnected) is BufferingTLSTransport

    class Subclass(BufferingTLSTransport):
        pass

    factory.protocol = Subclass
    subclass = factory.buildProtocol(CLIENT_ADDRESS)
    subclass._tlsConnection = unconnected._tlsConnection = SSL.Connection(
        SSL.Context(SSL.TLS_METHOD), None)
    assert not fastTLS(subclass)
    assert type(subclass) is Subclass
    assert fastTLS(unconnected)
    assert takesTheFastPath(unconnected)
