"""
Test helpers: connections in memory, with or without TLS, and a scripted
connector for reconnect timelines.  The one C{iosim} import lives here.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, cast

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IConnector
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test import iosim

from txtlsjson.protocol import (
    TLSJSONClientFactory,
    TLSJSONServerFactory,
)
from txtlsjson.tls import clientTLSOptions, serverTLSOptions

SERVER_ADDRESS = IPv4Address("TCP", "127.0.0.1", 8888)
CLIENT_ADDRESS = IPv4Address("TCP", "127.0.0.1", 40000)


class RecordingTransport(StringTransport):
    """
    A StringTransport that records C{setTcpNoDelay}, and that really closes:
    C{loseConnection}/C{abortConnection} call the protocol's
    C{connectionLost}, as a real transport eventually does.
    """

    noDelay = False
    #: Who hears of the close: the protocol, or whatever stands for it.
    protocol: Any = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        super().loseConnection()  # type: ignore[no-untyped-call]
        self.protocol.connectionLost(Failure(ConnectionDone()))

    def abortConnection(self) -> None:
        self.loseConnection()

    def lines(self) -> List[bytes]:
        """
        @return: the lines written so far, without their newlines; the
            buffer is then emptied.
        """
        data: bytes = self.value()
        self.clear()
        assert data == b"" or data.endswith(b"\n"), data
        return data.split(b"\n")[:-1]


def connectProtocol(factory: Any, address: IPv4Address = CLIENT_ADDRESS
                    ) -> Tuple[Any, RecordingTransport]:
    """
    Build a protocol from C{factory} and connect it to a L{RecordingTransport}.

    @return: the protocol (as L{Any}: tests give it hooks by assignment)
        and its transport.
    """
    protocol = factory.buildProtocol(address)
    transport = RecordingTransport(peerAddress=address)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


def authenticatedServer(clock: Clock, **settings: Any
                        ) -> Tuple[Any, RecordingTransport]:
    """
    A server protocol whose client has sent the right password (C{"pw"}).
    """
    factory = TLSJSONServerFactory("pw", reactor=clock, **settings)
    protocol, transport = connectProtocol(factory)
    protocol.dataReceived(b'{"password":"pw"}\n')
    assert transport.lines() == [b'{"authenticated":true}']
    return protocol, transport


def authenticatedClient(clock: Clock, **settings: Any
                        ) -> Tuple[Any, RecordingTransport]:
    """
    A client protocol that the server has accepted.
    """
    factory = TLSJSONClientFactory("pw", reactor=clock, **settings)
    protocol, transport = connectProtocol(factory, SERVER_ADDRESS)
    assert transport.lines() == [b'{"password":"pw"}']
    protocol.dataReceived(b'{"authenticated":true}\n')
    return protocol, transport


def connectInMemory(serverFactory: Any, clientFactory: Any, clock: Optional[Clock] = None,
                    serverTLS: Any = None, clientTLS: Any = None) -> Tuple[Any, Any, iosim.IOPump]:
    """
    Connect a server and a client factory through iosim, over TLS in memory
    when C{serverTLS} and C{clientTLS} are given.

    @return: the client protocol, the server protocol (the TLS wrappers when
        TLS is used) and the pump.
    """
    if serverTLS is not None:
        # The clock matters: TLS aggregates small writes until the next
        # reactor turn, which must be this clock's, not the global reactor's.
        serverFactory = TLSMemoryBIOFactory(serverTLS, False, serverFactory, clock=clock)
        clientFactory = TLSMemoryBIOFactory(clientTLS, True, clientFactory, clock=clock)
    return iosim.connectedServerAndClient(
        lambda: serverFactory.buildProtocol(CLIENT_ADDRESS),
        lambda: clientFactory.buildProtocol(SERVER_ADDRESS),
        clock=clock,
    )


def inMemoryOverTLS(pki: Any) -> Any:
    """
    An authenticated txtlsjson server and client over TLS in memory (Twisted's
    TLS, which gathers small writes until the clock's next turn), whose
    server answers a request C{{"n": N}} with C{{"answer": N}}.

    @param pki: the test certificates (L{tests.conftest.PKI}).
    @return: the clock, the pump, and the client's and the server's
        protocols.
    """
    clock = Clock()
    serverFactory = TLSJSONServerFactory("pw", reactor=clock)
    built: List[Any] = []
    original = serverFactory.buildProtocol

    def build(addr: Any) -> Any:
        protocol: Any = original(addr)
        protocol.requestReceived = lambda request: {"answer": request["n"]}
        built.append(protocol)
        return protocol

    serverFactory.buildProtocol = build
    clientFactory = TLSJSONClientFactory("pw", reactor=clock)
    client, _, pump = connectInMemory(serverFactory, clientFactory, clock,
                                      serverTLSOptions(pki.serverCert, pki.serverKey),
                                      clientTLSOptions("localhost", [pki.caCert]))
    for _ in range(10):
        pump.flush()
        clock.advance(0)
    clientProtocol = client.wrappedProtocol
    assert clientProtocol.isAuthenticated and built[0].isAuthenticated
    return clock, pump, clientProtocol, built[0]


class ScriptedConnector:
    """
    A connector whose attempts the test decides: each C{connect()} is
    recorded, then the test calls L{fail}, L{succeed} or L{lose}.
    """

    def __init__(self, factory: TLSJSONClientFactory) -> None:
        self.factory = factory
        self.attempts = 0
        self.stopped = False
        self.protocol: Any = None
        self.transport: Optional[RecordingTransport] = None

    def connect(self) -> None:
        self.attempts += 1
        self.factory.startedConnecting(cast(IConnector, self))

    def stopConnecting(self) -> None:
        self.stopped = True

    def disconnect(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def getDestination(self) -> IPv4Address:
        return SERVER_ADDRESS

    def fail(self, error: Optional[Exception] = None) -> None:
        self.factory.clientConnectionFailed(self, Failure(error or ConnectionRefusedError()))

    def succeed(self, authenticate: bool = True) -> Any:
        protocol: Any = self.factory.buildProtocol(SERVER_ADDRESS)
        transport = RecordingTransport(peerAddress=SERVER_ADDRESS)
        transport.protocol = _Notifying(protocol, self)
        protocol.makeConnection(transport)
        self.protocol, self.transport = protocol, transport
        if authenticate:
            protocol.dataReceived(b'{"authenticated":true}\n')
        return protocol

    def lose(self) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class _Notifying:
    """
    Passes C{connectionLost} to the protocol and then the factory, as a real
    connector does.
    """

    def __init__(self, protocol: Any, connector: ScriptedConnector) -> None:
        self._protocol = protocol
        self._connector = connector

    def connectionLost(self, reason: Failure) -> None:
        self._protocol.connectionLost(reason)
        self._connector.protocol = self._connector.transport = None
        self._connector.factory.clientConnectionLost(self._connector, reason)


class ScriptedReactor(Clock):
    """
    A Clock whose C{connectSSL} hands out a L{ScriptedConnector} and starts
    its first attempt.
    """

    def __init__(self) -> None:
        super().__init__()
        self.connectors: List[ScriptedConnector] = []

    def connectSSL(self, host: str, port: int, factory: Any, contextFactory: Any,
                   timeout: float = 30, bindAddress: Any = None) -> ScriptedConnector:
        connector = ScriptedConnector(factory)
        self.connectors.append(connector)
        connector.connect()
        return connector
