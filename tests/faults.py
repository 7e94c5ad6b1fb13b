"""
Fault-injection tools for the reliability tests and the soak benchmark: a
TCP proxy that cuts connections at random moments, a raw TLS client that
sends whatever bytes it is told to, and process memory readings.

Everything here targets 127.0.0.1 only.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, List, Optional, Set

from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.python.failure import Failure

LOOPBACK = "127.0.0.1"


class _ProxySide(protocol.Protocol):
    peer: Optional["_ProxySide"] = None
    link: "_Link"

    def dataReceived(self, data: bytes) -> None:
        self.link.passing(self, data)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.link.sideLost(self)


class _Link:
    """
    One proxied connection: the accepted side, the side towards the
    target, and the cut scheduled for it.
    """

    def __init__(self, proxy: "FlakyProxy", inbound: _ProxySide) -> None:
        self.proxy = proxy
        self.inbound = inbound
        self.outbound: Optional[_ProxySide] = None
        self.pending: List[bytes] = []
        self.cutTimer: Optional[IDelayedCall] = None
        self.bytesLeft: Optional[int] = None
        self.closed = False
        self.sidesOpen = 1

    def passing(self, side: _ProxySide, data: bytes) -> None:
        if self.closed:
            return
        if self.bytesLeft is not None:
            if len(data) >= self.bytesLeft:
                # Cut in the middle of what is passing: mid-message.
                data = data[: self.bytesLeft]
                self._forward(side, data)
                self.cut()
                return
            self.bytesLeft -= len(data)
        self._forward(side, data)

    def _forward(self, side: _ProxySide, data: bytes) -> None:
        if side is self.inbound:
            if self.outbound is None:
                self.pending.append(data)
            else:
                self.outbound.transport.write(data)  # type: ignore[union-attr]
        else:
            self.inbound.transport.write(data)  # type: ignore[union-attr]

    def outboundConnected(self, side: _ProxySide) -> None:
        self.sidesOpen += 1
        if self.closed:
            side.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.outbound = side
        for data in self.pending:
            side.transport.write(data)  # type: ignore[union-attr]
        self.pending = []

    def cut(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.proxy.cuts += 1
        self._end()

    def sideLost(self, side: _ProxySide) -> None:
        if not self.closed:
            self.closed = True
            self._end()
        self.sidesOpen -= 1
        if self.sidesOpen == 0:
            self.proxy._linkGone(self)

    def _end(self) -> None:
        if self.cutTimer is not None and self.cutTimer.active():
            self.cutTimer.cancel()
        self.cutTimer = None
        for side in (self.inbound, self.outbound):
            if side is not None and side.transport is not None:
                side.transport.abortConnection()  # type: ignore[attr-defined]


class FlakyProxy(protocol.Factory):
    """
    Listens on 127.0.0.1, forwards each connection to C{targetPort} and, with
    probability C{flakiness}, cuts it: after a random time up to C{maxLife}
    seconds (often in the TLS handshake) or after a random number of bytes
    (often in the middle of a message).

    @ivar connections: connections accepted so far.
    @ivar cuts: connections cut so far.
    """

    def __init__(self, reactor: Any, targetPort: int, seed: int = 1, flakiness: float = 1.0,
                 maxLife: float = 0.5, maxBytes: int = 20000) -> None:
        self._reactor = reactor
        self._targetPort = targetPort
        self._random = random.Random(seed)
        self.flakiness = flakiness
        self.maxLife = maxLife
        self.maxBytes = maxBytes
        self.connections = 0
        self.cuts = 0
        self._links: Set[_Link] = set()
        self._port: Optional[IListeningPort] = None
        self._closing: List[Deferred[None]] = []

    def listen(self) -> int:
        """
        Start listening on an ephemeral port of 127.0.0.1.

        @return: the port number.
        """
        self._port = self._reactor.listenTCP(0, self, interface=LOOPBACK)
        return self._port.getHost().port  # type: ignore[union-attr,no-any-return]

    def buildProtocol(self, addr: Any) -> _ProxySide:
        self.connections += 1
        inbound = _ProxySide()
        link = inbound.link = _Link(self, inbound)
        self._links.add(link)
        if self._random.random() < self.flakiness:
            if self._random.random() < 0.5:
                link.cutTimer = self._reactor.callLater(
                    self._random.uniform(0, self.maxLife), link.cut)
            else:
                link.bytesLeft = self._random.randint(1, self.maxBytes)
        outbound = _ProxySide()
        outbound.link = link
        d = connectProtocol(TCP4ClientEndpoint(self._reactor, LOOPBACK, self._targetPort),
                            outbound)
        d.addCallbacks(link.outboundConnected, lambda f: link.cut())
        return inbound

    def _linkGone(self, link: _Link) -> None:
        self._links.discard(link)
        if not self._links:
            closing, self._closing = self._closing, []
            for d in closing:
                d.callback(None)

    def stop(self) -> "Deferred[None]":
        """
        Stop listening and cut every connection.

        @return: a Deferred that fires once all are gone.
        """
        port, self._port = self._port, None
        stopped = port.stopListening() if port is not None else None
        for link in list(self._links):
            link.cut()
        if not self._links:
            done: Deferred[None] = succeed(None)
        else:
            done = Deferred()
            self._closing.append(done)
        if isinstance(stopped, Deferred):
            return stopped.addCallback(lambda _: done)
        return done


class RawLines(protocol.Protocol):
    """
    A client that speaks bytes, not tls-json: it records what arrives and
    when the connection ends.
    """

    def __init__(self) -> None:
        self.received = b""
        self.ended: Deferred[None] = Deferred()
        self.reason: Optional[Failure] = None
        self._waiting: List[Any] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for waiter in list(self._waiting):
            if waiter[0] in self.received:
                self._waiting.remove(waiter)
                waiter[1].callback(None)

    def waitFor(self, text: bytes) -> "Deferred[None]":
        d: Deferred[None] = Deferred()
        if text in self.received:
            d.callback(None)
        else:
            self._waiting.append((text, d))
        return d

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        for _, d in self._waiting:
            d.errback(reason)
        self._waiting = []
        self.reason = reason
        self.ended.callback(None)


class Firehose:
    """
    A pull producer that writes C{total} bytes made by C{chunk()} to a
    transport, 64 KiB at a time, until done or the connection goes.

    @ivar written: bytes handed to the transport.
    """

    def __init__(self, transport: Any, total: int, chunk: Callable[[int], bytes]) -> None:
        self._transport = transport
        self._total = total
        self._chunk = chunk
        self.written = 0
        self.finished: Deferred[None] = Deferred()

    def resumeProducing(self) -> None:
        if self.written >= self._total:
            self._transport.unregisterProducer()
            if not self.finished.called:
                self.finished.callback(None)
            return
        data = self._chunk(min(65536, self._total - self.written))
        self.written += len(data)
        self._transport.write(data)

    def stopProducing(self) -> None:
        if not self.finished.called:
            self.finished.callback(None)


def memoryOf(pid: int, field: str = "VmRSS") -> int:
    """
    @return: a process's resident memory (C{VmRSS}) or its peak (C{VmHWM}),
        in bytes, from C{/proc}.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no {field} for process {pid}")
