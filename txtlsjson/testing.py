"""
Test doubles for applications built on txtlsjson, as C{treq.testing} serves
treq's users: servers and clients connected in memory, with no sockets, no
TLS and no real time, for an application's own trial or pytest tests.

L{MemoryNetwork} is a reactor (a L{MemoryReactorClock}) on which listening
and connecting work in memory.  Give it to the code under test as its
reactor, then let bytes move with L{MemoryNetwork.flush} and time pass with
L{MemoryNetwork.wait}::

    from txtlsjson import Client, Server
    from txtlsjson.testing import MemoryNetwork

    def test_sums():
        network = MemoryNetwork()
        server = Server("pw", reactor=network)
        myapp.attach(server)                       # the application's handlers
        server.listenOn(network.endpoint(8888))
        client = Client("localhost", 8888, "pw", reactor=network)
        network.result(client.connect())
        assert network.result(client.request({"numbers": [1, 2]})) == {"sum": 3}

Everything the real reactor would do happens, in order and at once: the
password step, keepalive pings (after L{MemoryNetwork.wait}), request
timeouts, closes and reconnections.  What TLS would add (certificates,
hostname checks) is not exercised: the TLS options given are ignored.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, TypeVar

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IConnector, IListeningPort
from twisted.internet.protocol import ClientFactory, Factory
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import implementer

from txtlsjson.errors import TLSJSONError

__all__ = ["MemoryNetwork", "StillWaiting"]

_T = TypeVar("_T")

#: The first port handed out for C{listen(0)}.
_FIRST_FREE_PORT = 40000


class StillWaiting(TLSJSONError):
    """
    L{MemoryNetwork.result} was asked for the result of a Deferred that has
    not fired, even with every byte delivered.
    """


@implementer(IListeningPort)
class _MemoryPort:
    """
    A port listening on a L{MemoryNetwork}.
    """

    def __init__(self, network: "MemoryNetwork", port: int, factory: Factory) -> None:
        self._network = network
        self._port = port
        self.factory = factory

    def startListening(self) -> None:
        """
        Listening starts when the port is made.
        """

    def stopListening(self) -> None:
        """
        Stop accepting connections; those made stay.
        """
        self._network._listening.pop(self._port, None)

    def getHost(self) -> IPv4Address:
        """
        @return: 127.0.0.1 and the port.
        """
        return IPv4Address("TCP", "127.0.0.1", self._port)


class _ClientTransport(iosim.FakeTransport):
    """
    The client's end of a connection: it tells the connector, as a real
    transport does, so that a C{ReconnectingClientFactory} reconnects.
    """

    connector: "_MemoryConnector"

    def reportDisconnect(self) -> None:
        super().reportDisconnect()  # type: ignore[no-untyped-call]
        self.connector._lost(Failure(self.disconnectReason))


@implementer(IConnector)
class _MemoryConnector:
    """
    A connection attempt on a L{MemoryNetwork}, made again on C{connect()}
    (as a C{ReconnectingClientFactory} does).
    """

    def __init__(self, network: "MemoryNetwork", host: str, port: int,
                 factory: ClientFactory) -> None:
        self._network = network
        self._host = host
        self._port = port
        self.factory = factory
        self._transport: Optional[_ClientTransport] = None
        self._attempt: Any = None

    def connect(self) -> None:
        """
        Start an attempt: it connects, or is refused, on the next turn.
        """
        self.factory.doStart()
        self.factory.startedConnecting(self)
        self._attempt = self._network.callLater(0, self._complete)

    def _complete(self) -> None:
        self._attempt = None
        serverFactory = self._network._listening.get(self._port)
        if serverFactory is None:
            self._failed(Failure(ConnectionRefusedError(f"nothing listens on port {self._port}")))
            return
        self._transport = self._network._connect(serverFactory, self.factory, self._port, self)

    def _failed(self, reason: Failure) -> None:
        self.factory.clientConnectionFailed(self, reason)
        self.factory.doStop()

    def _lost(self, reason: Failure) -> None:
        self._transport = None
        self.factory.clientConnectionLost(self, reason)
        self.factory.doStop()

    def stopConnecting(self) -> None:
        """
        Give up an attempt under way.
        """
        attempt, self._attempt = self._attempt, None
        if attempt is not None and attempt.active():
            attempt.cancel()
            self._failed(Failure(TLSJSONError("connection attempt stopped")))

    def disconnect(self) -> None:
        """
        Close the connection, or give up the attempt.
        """
        if self._transport is not None:
            self._transport.loseConnection()
        else:
            self.stopConnecting()

    def getDestination(self) -> IPv4Address:
        """
        @return: where this connects to.
        """
        return IPv4Address("TCP", self._host, self._port)


class MemoryNetwork(MemoryReactorClock):
    """
    A reactor on which servers listen and clients connect in memory.

    C{listenTCP}/C{listenSSL} (what L{Server.listen<txtlsjson.server.Server>},
    C{listenOn} and endpoints use) register a factory under a port;
    C{connectTCP}/C{connectSSL} (what L{Client<txtlsjson.client.Client>} and
    C{TLSJSONClientFactory} users call) connect to it, or are refused if
    nothing listens there.  The host is not looked at.

    @ivar connections: how many connections are open.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._listening: Dict[int, Factory] = {}
        self._pumps: List[iosim.IOPump] = []
        self._nextPort = _FIRST_FREE_PORT
        self._nextClientPort = 50000

    def endpoint(self, port: int = 0) -> TCP4ServerEndpoint:
        """
        @return: a server endpoint listening on C{port} of this network (for
            C{server.listenOn(...)}); C{0} picks a free port.
        """
        return TCP4ServerEndpoint(self, port)

    # -- IReactorTCP and IReactorSSL -----------------------------------------

    def listenTCP(self, port: int, factory: Factory, backlog: int = 50,
                  interface: str = "") -> _MemoryPort:
        """
        Listen on C{port} (C{0}: a free one) of this network.
        """
        if port == 0:
            port, self._nextPort = self._nextPort, self._nextPort + 1
        if port in self._listening:
            from twisted.internet.error import CannotListenError

            raise CannotListenError(interface, port, OSError("address already in use"))
        factory.doStart()
        self._listening[port] = factory
        return _MemoryPort(self, port, factory)

    def listenSSL(self, port: int, factory: Factory, contextFactory: Any, backlog: int = 50,
                  interface: str = "") -> _MemoryPort:
        """
        As L{listenTCP}: TLS is not done in memory.
        """
        return self.listenTCP(port, factory, backlog, interface)

    def connectTCP(self, host: str, port: int, factory: ClientFactory, timeout: float = 30,
                   bindAddress: Any = None) -> _MemoryConnector:
        """
        Connect to what listens on C{port}, on the next turn.
        """
        connector = _MemoryConnector(self, host, port, factory)
        connector.connect()
        return connector

    def connectSSL(self, host: str, port: int, factory: ClientFactory, contextFactory: Any,
                   timeout: float = 30, bindAddress: Any = None) -> _MemoryConnector:
        """
        As L{connectTCP}: TLS is not done in memory.
        """
        return self.connectTCP(host, port, factory, timeout, bindAddress)

    def _connect(self, serverFactory: Factory, clientFactory: ClientFactory, port: int,
                 connector: _MemoryConnector) -> _ClientTransport:
        clientAddress = IPv4Address("TCP", "127.0.0.1", self._nextClientPort)
        self._nextClientPort += 1
        serverAddress = IPv4Address("TCP", "127.0.0.1", port)
        serverProtocol = serverFactory.buildProtocol(clientAddress)
        clientProtocol = clientFactory.buildProtocol(serverAddress)
        serverTransport = iosim.FakeTransport(serverProtocol, True, serverAddress, clientAddress)
        clientTransport = _ClientTransport(clientProtocol, False, clientAddress, serverAddress)
        clientTransport.connector = connector
        pump = iosim.connect(serverProtocol, serverTransport, clientProtocol, clientTransport,
                             greet=False, clock=self)
        self._pumps.append(pump)
        return clientTransport

    # -- for the tests --------------------------------------------------------

    @property
    def connections(self) -> int:
        """
        How many connections are open.
        """
        return sum(1 for pump in self._pumps if not _closed(pump))

    def flush(self) -> None:
        """
        Deliver every byte written, and what it leads to, until nothing
        moves; timers due now run, time does not pass.
        """
        for _ in range(10_000):
            self.advance(0)
            moved = False
            for pump in list(self._pumps):
                if pump.pump(advanceClock=False):
                    moved = True
            self._pumps = [pump for pump in self._pumps if not _closed(pump)]
            if not moved:
                return
        raise RuntimeError("the network never went quiet (10,000 rounds)")

    def wait(self, seconds: float) -> None:
        """
        Let C{seconds} pass, delivering bytes before and after: timers fire
        (keepalives, timeouts, reconnections) as they would.
        """
        end = self.seconds() + seconds
        self.flush()
        for _ in range(100_000):
            due = [call.getTime() for call in self.getDelayedCalls() if call.active()]
            if not due or min(due) > end:
                break
            # One timer's time at a time, with the bytes it causes delivered
            # before the next: a ping's pong arrives before its deadline.
            self.advance(max(0.0, min(due) - self.seconds()))
            self.flush()
        else:
            raise RuntimeError("timers kept firing (100,000 rounds)")
        self.advance(max(0.0, end - self.seconds()))
        self.flush()

    def result(self, d: "Deferred[_T]") -> _T:
        """
        Deliver every byte, then give C{d}'s result (which C{d} no longer
        holds: as trial's C{successResultOf}).

        @raise StillWaiting: if C{d} has not fired.
        @raise Exception: C{d}'s failure, if it failed.
        """
        self.flush()
        if not d.called:
            # Nothing is added to d: it may still be asked for later.
            raise StillWaiting(f"{d!r} has not fired; nothing more is on the way")
        outcome: List[Tuple[bool, Any]] = []
        d.addCallbacks(lambda value: outcome.append((True, value)),
                       lambda failure: outcome.append((False, failure)))
        if not outcome:
            raise StillWaiting(f"{d!r} waits on another Deferred that has not fired")
        succeeded, value = outcome[0]
        if not succeeded:
            value.raiseException()
        result: _T = value
        return result


def _closed(pump: iosim.IOPump) -> bool:
    closed: bool = pump.clientIO.disconnected and pump.serverIO.disconnected
    return closed
