"""
One side of a benchmark run: a server or a client process speaking one of
one of these implementations over TLS on 127.0.0.1, running one workload.

  - C{txtlsjson}: this package's tls-json-style Server and Client;
  - C{amp}: Twisted's AMP over TLS, with typed commands;
  - C{bare}: the ceiling -- JSON lines over Twisted's TLS with no password,
    no events and no request table (responses come back in order), using
    the same line splitter and JSON codec as txtlsjson;
  - C{bytes}, for the big workloads only: the floor beneath them -- a
    request's string sent as its UTF-8 bytes on one line, paced and split
    as txtlsjson does it, with no JSON at all;
  - C{floor}: the tls-json wire and nothing else, on txtlsjson's TLS path
    and codec: a peer of the Node client and server (C{run.py
    --against-node --impls floor/node,node/floor}) showing the least a
    Twisted implementation of the wire costs.

C{benchmarks/run.py} starts these processes; they are not meant to be run
by hand, but can be:

    python -m benchmarks.peer serve --impl bare --cert C --key K
    python -m benchmarks.peer client --impl bare --port P --ca C --workload send
"""

from __future__ import annotations

import argparse
import gc
import hmac
import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, cast

if os.environ.get("TXTLSJSON_BENCH_REACTOR") == "asyncio":
    # Before the default reactor is imported: run.py --reactor asyncio
    # measures what running on asyncio's loop costs.
    from twisted.internet import asyncioreactor

    asyncioreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, maybeDeferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater, react
from twisted.protocols import amp

from benchmarks.workloads import FULL, QUICK
from txtlsjson.codec import decodeLine, encodeLine
from txtlsjson.fasttls import encrypt, fastState, fastTLS
from txtlsjson.framing import LineBuffer
from txtlsjson.outgoing import OutgoingLines, sendAtOnce

PASSWORD = "benchmark-password"

#: The listen backlog of every implementation (txtlsjson's default), so
#: that "many" compares the protocols, not Twisted's default backlog of 50.
BACKLOG = 1024
PAYLOAD = "x" * 64


def rss() -> int:
    """
    This process's resident memory in bytes.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Channel:
    """
    One connection as the workloads see it: what they call on it is its
    implementation's own API (a txtlsjson C{Client} is one as it is, with
    no adapter's call in between), as the Node peer's workloads call its
    connection's.
    """

    def send(self, message: Dict[str, Any]) -> None:
        raise NotImplementedError()

    def request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        raise NotImplementedError()


class Handler:
    """
    What each side does with what it receives: counts messages, echoes
    requests, and runs workloads it is asked to run (the other direction).
    """

    def __init__(self, sizes: Dict[str, Any]) -> None:
        self.sizes = sizes
        self.count = 0

    def message(self, message: Dict[str, Any]) -> None:
        self.count += 1

    def serverMessage(self, connectionId: int, message: Dict[str, Any]) -> None:
        """
        L{message}, with the arguments of a txtlsjson server's event.
        """
        self.count += 1

    def request(self, channel: Channel, request: Dict[str, Any]) -> Any:
        op = request.get("op")
        if op is None:
            return request
        if op == "count":
            count, self.count = self.count, 0
            return {"count": count}
        if op == "len":
            return {"len": len(request["data"])}
        if op == "rss":
            gc.collect()
            return {"rss": rss()}
        if op == "cpu":
            return {"cpu": time.process_time()}
        if op == "run":
            return ensureDeferred(runWorkload(channel, request["workload"], self.sizes))
        raise ValueError(f"unknown op {op!r}")


# -- workloads -----------------------------------------------------------

async def runWorkload(channel: Channel, workload: str, sizes: Dict[str, Any]) -> Dict[str, Any]:
    """
    Run C{workload} over C{channel} and return its figure; for C{send},
    C{rtt} and C{conc}, also the CPU time each side spent on it, in
    microseconds per message or request (C{localCpu}: this side, running
    the loop; C{peerCpu}: the other, answering), which is steadier than the
    rate on a shared machine.
    """
    if workload.startswith("big"):
        return await _runWorkload(channel, workload, sizes)
    peerBefore = (await channel.request({"op": "cpu"}))["cpu"]
    localBefore = time.process_time()
    result = await _runWorkload(channel, workload, sizes)
    local = time.process_time() - localBefore
    peer = (await channel.request({"op": "cpu"}))["cpu"] - peerBefore
    n = sizes[workload]
    result.update(localCpu=local / n * 1e6, peerCpu=peer / n * 1e6)
    return result


async def _runWorkload(channel: Channel, workload: str, sizes: Dict[str, Any]) -> Dict[str, Any]:
    if workload == "send":
        n = sizes["send"]
        start = time.perf_counter()
        for i in range(n):
            channel.send({"seq": i, "payload": PAYLOAD})
            if i % 1000 == 999:
                # Let the transport write and the peer read meanwhile.
                await deferLater(reactor, 0, lambda: None)
        counted = (await channel.request({"op": "count"}))["count"]
        elapsed = time.perf_counter() - start
        if counted != n:
            raise AssertionError(f"sent {n} messages, {counted} arrived")
        return {"value": n / elapsed, "unit": "msgs/s"}
    if workload == "rtt":
        n = sizes["rtt"]
        start = time.perf_counter()
        for i in range(n):
            response = await channel.request({"seq": i, "payload": PAYLOAD})
            if response["seq"] != i:
                raise AssertionError(f"request {i} answered with {response}")
        return {"value": n / (time.perf_counter() - start), "unit": "req/s"}
    if workload == "conc":
        # Kept lean: this loop's own cost is paid by every implementation
        # alike and would only blur the differences between them.
        n, window = sizes["conc"], sizes["window"]
        done: Deferred[None] = Deferred()
        request = channel.request
        issued = answered = 0

        def onAnswer(response: Dict[str, Any], seq: int) -> None:
            nonlocal issued, answered
            if response["seq"] != seq:
                fail(AssertionError(f"request {seq} answered with {response}"))
                return
            answered += 1
            if issued < n:
                request({"seq": issued, "payload": PAYLOAD}).addCallbacks(
                    onAnswer, fail, callbackArgs=(issued,))
                issued += 1
            elif answered == n:
                done.callback(None)

        def fail(failure: Any) -> None:
            if not done.called:
                done.errback(failure)

        start = time.perf_counter()
        for _ in range(min(window, n)):
            request({"seq": issued, "payload": PAYLOAD}).addCallbacks(
                onAnswer, fail, callbackArgs=(issued,))
            issued += 1
        await done
        elapsed = time.perf_counter() - start
        return {"value": n / elapsed, "unit": "req/s"}
    if workload.startswith("big"):
        size = int(workload[3:]) * 1024 * 1024
        repeats = dict(sizes["big"])[size]
        data = "x" * size

        async def lengthRequest() -> None:
            answer = await channel.request({"op": "len", "data": data})
            if answer["len"] != size:
                raise AssertionError(f"{size} bytes sent, {answer} reported")

        # The first request of a size pays once for what later ones reuse
        # (both processes' heaps growing to hold the message, TCP buffers
        # growing): timed apart, so that the figure is the cost per byte,
        # which is what 1 MiB and 16 MiB are compared on.
        start = time.perf_counter()
        await lengthRequest()
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(repeats):
            await lengthRequest()
        elapsed = time.perf_counter() - start
        return {"value": size * repeats / elapsed / 1e6, "unit": "MB/s",
                "firstRequest": size / first / 1e6}
    raise ValueError(f"unknown workload {workload!r}")


# -- txtlsjson -------------------------------------------------------------

class _ServerSide(Channel):
    def __init__(self, server: Any, connectionId: int) -> None:
        self.server, self.connectionId = server, connectionId

    def send(self, message: Dict[str, Any]) -> None:
        self.server.send(self.connectionId, message)

    def request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        return self.server.request(self.connectionId, request)  # type: ignore[no-any-return]


def _answer(handler: Handler, channel: Channel, request: Dict[str, Any], res: Any) -> None:
    result = handler.request(channel, request)
    # type() first: isinstance against Deferred (an ABC) costs 0.1 us, as
    # much as some of what is measured.  The bare peer does the same.
    if type(result) is dict:
        res.send(result)
    else:
        result.addCallback(res.send)


def serveTxtlsjson(port: int, cert: str, key: str, handler: Handler, metered: bool = False) -> int:
    from txtlsjson import Server
    from txtlsjson.metrics import ServerMetrics

    server = Server(PASSWORD, certificate=cert, privateKey=key, requestTimeout=600,
                    maxLineLength=64 * 1024 * 1024, maxBufferedBytes=256 * 1024 * 1024,
                    metrics=ServerMetrics() if metered else None)
    channels: Dict[int, Channel] = {}
    server.on("authenticated", lambda i, peer: channels.__setitem__(i, _ServerSide(server, i)))
    server.on("close", lambda i: channels.pop(i, None))
    server.on("message", handler.serverMessage)
    server.on("request", lambda i, request, res: _answer(handler, channels[i], request, res))
    listening: List[Any] = []
    server.listen(port, "127.0.0.1").addCallback(listening.append)
    return server.port  # type: ignore[return-value]


async def connectTxtlsjson(port: int, ca: str, handler: Handler) -> Channel:
    from txtlsjson import Client

    client = Client("localhost", port, PASSWORD, ca=[ca], requestTimeout=600,
                    maxLineLength=64 * 1024 * 1024, maxBufferedBytes=256 * 1024 * 1024)
    # It has send and request, as a Channel.
    channel = cast(Channel, client)
    client.on("message", handler.message)
    client.on("request", lambda request, res: _answer(handler, channel, request, res))
    await client.connect()
    return channel


# -- AMP -------------------------------------------------------------------

class Message(amp.Command):
    arguments = [(b"seq", amp.Integer()), (b"payload", amp.Unicode())]
    requiresAnswer = False


class Echo(amp.Command):
    arguments = [(b"seq", amp.Integer()), (b"payload", amp.Unicode())]
    response = [(b"seq", amp.Integer()), (b"payload", amp.Unicode())]


class Control(amp.Command):
    arguments = [(b"request", amp.Unicode())]
    response = [(b"response", amp.Unicode())]


class _AMPPeer(amp.AMP, Channel):
    handler: Handler

    def send(self, message: Dict[str, Any]) -> None:
        self.callRemote(Message, seq=message["seq"], payload=message["payload"])

    def request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        answer: Deferred[Dict[str, Any]]
        if "op" in request:
            answer = self.callRemote(Control, request=json.dumps(request)).addCallback(
                lambda answer: json.loads(answer["response"]))
        else:
            answer = self.callRemote(Echo, seq=request["seq"], payload=request["payload"])
        return answer

    @Message.responder
    def _message(self, seq: int, payload: str) -> Dict[str, Any]:
        self.handler.message({"seq": seq})
        return {}

    @Echo.responder
    def _echo(self, seq: int, payload: str) -> Dict[str, Any]:
        return {"seq": seq, "payload": payload}

    @Control.responder
    def _control(self, request: str) -> Any:
        result = maybeDeferred(self.handler.request, self, json.loads(request))
        return result.addCallback(lambda answer: {"response": json.dumps(answer)})


def _tlsOptions(cert: str, key: str) -> Any:
    from txtlsjson import serverTLSOptions

    return serverTLSOptions(cert, key)


def listen(peerClass: type, port: int, cert: str, key: str, handler: Handler) -> Any:
    """
    Listen with TLS on 127.0.0.1 for C{peerClass} protocols that all use
    C{handler}.

    @return: the listening port.
    """
    factory = Factory.forProtocol(peerClass)
    original = factory.buildProtocol

    def build(addr: Any) -> Any:
        peer: Any = original(addr)
        peer.handler = handler
        return peer

    factory.buildProtocol = build  # type: ignore[method-assign]
    return reactor.listenSSL(port, factory, _tlsOptions(cert, key),  # type: ignore[attr-defined]
                             backlog=BACKLOG, interface="127.0.0.1")


def _serve(peerClass: type, port: int, cert: str, key: str, handler: Handler) -> int:
    """
    L{listen}, for the peer process: the port's number.
    """
    return listen(peerClass, port, cert, key, handler).getHost().port  # type: ignore[no-any-return]


def serveAMP(port: int, cert: str, key: str, handler: Handler) -> int:
    return _serve(_AMPPeer, port, cert, key, handler)


async def _connectTLS(port: int, ca: str, protocol: Protocol) -> Any:
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS

    from txtlsjson import clientTLSOptions

    endpoint = wrapClientTLS(clientTLSOptions("localhost", [ca]),
                             TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    return await connectProtocol(endpoint, protocol)


async def connectAMP(port: int, ca: str, handler: Handler) -> Channel:
    peer = _AMPPeer()
    peer.handler = handler
    await _connectTLS(port, ca, peer)
    _noDelay(peer)
    await _greet(peer)
    return peer


async def _greet(channel: Channel) -> None:
    """
    One round trip, so that a connection counts as made when its TLS
    handshake is done and the peer answers -- as a txtlsjson client's
    connect() waits for the password's answer.
    """
    await channel.request({"seq": -1, "payload": ""})


def _noDelay(protocol: Any) -> None:
    transport = protocol.transport
    inner = getattr(transport, "transport", transport)
    inner.setTcpNoDelay(True)


# -- bare JSON lines ---------------------------------------------------------

class _BarePeer(Protocol, Channel):
    """
    JSON lines over TLS and nothing else: requests are C{{"q": obj}} lines,
    answered in order with C{{"r": obj}} lines.
    """

    handler: Handler

    def connectionMade(self) -> None:
        _noDelay(self)
        self._lines = LineBuffer()
        self._waiting: Deque[Deferred[Dict[str, Any]]] = deque()

    def dataReceived(self, data: bytes) -> None:
        for line in self._lines.feed(data, 64 * 1024 * 1024):
            obj = decodeLine(line)
            if "q" in obj:
                result = self.handler.request(self, obj["q"])
                if type(result) is dict:
                    self._reply(result)
                else:
                    result.addCallback(self._reply)
            elif "r" in obj:
                self._waiting.popleft().callback(obj["r"])
            else:
                self.handler.message(obj)

    def _reply(self, answer: Dict[str, Any]) -> None:
        self.transport.write(encodeLine({"r": answer}))  # type: ignore[union-attr]

    def send(self, message: Dict[str, Any]) -> None:
        self.transport.write(encodeLine(message))  # type: ignore[union-attr]

    def request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        d: Deferred[Dict[str, Any]] = Deferred()
        self._waiting.append(d)
        self.transport.write(encodeLine({"q": request}))  # type: ignore[union-attr]
        return d


def serveBare(port: int, cert: str, key: str, handler: Handler) -> int:
    return _serve(_BarePeer, port, cert, key, handler)


async def connectBare(port: int, ca: str, handler: Handler) -> Channel:
    peer = _BarePeer()
    peer.handler = handler
    await _connectTLS(port, ca, peer)
    await _greet(peer)
    return peer


# -- bytes, the floor of the big workloads ----------------------------------

class _BytesPeer(Protocol, Channel):
    """
    A request's C{data} string goes as its UTF-8 bytes and a newline, handed
    to TLS by txtlsjson's own L{OutgoingLines} and split by its
    L{LineBuffer}; the answer is a line with the length received.  What the
    big workloads cost with txtlsjson's transport and no JSON: the bytes of
    a string are made once, for its first request, which is timed apart.
    """

    _data: Optional[str] = None
    _line = b""

    def connectionMade(self) -> None:
        _noDelay(self)
        self._lines = LineBuffer()
        self._waiting: Deque[Deferred[Dict[str, Any]]] = deque()
        self._outgoing = OutgoingLines(self.transport.write,  # type: ignore[union-attr]
                                       256 * 1024 * 1024, self._slow)
        self.transport.transport.registerProducer(self._outgoing, True)  # type: ignore[union-attr]

    def _slow(self, error: Exception) -> None:
        raise error

    def dataReceived(self, data: bytes) -> None:
        for line in self._lines.feed(data, 64 * 1024 * 1024):
            if self._waiting:
                self._waiting.popleft().callback({"len": int(line)})
            else:
                self._outgoing.writeLine(b"%d\n" % len(line))

    def send(self, message: Dict[str, Any]) -> None:
        raise NotImplementedError("bytes runs the big workloads only")

    def request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        d: Deferred[Dict[str, Any]] = Deferred()
        self._waiting.append(d)
        data = request.get("data", "")
        if data is not self._data:
            self._data, self._line = data, data.encode("utf-8") + b"\n"
        self._outgoing.writeLine(self._line)
        return d


def serveBytes(port: int, cert: str, key: str, handler: Handler) -> int:
    return _serve(_BytesPeer, port, cert, key, handler)


async def connectBytes(port: int, ca: str, handler: Handler) -> Channel:
    peer = _BytesPeer()
    await _connectTLS(port, ca, peer)
    await _greet(peer)
    return peer


# -- floor: the tls-json wire and nothing else --------------------------------

class FloorPeer(Protocol, Channel):
    """
    The tls-json wire over Twisted's TLS with nothing else: the least any
    Twisted peer of the Node client and server does, and so the floor
    beneath txtlsjson on this platform.

    The password line is checked and answered (or, connecting, sent and its
    answer awaited); then each line is decoded with txtlsjson's codec, a
    request answered by the handler at once, a response matched to its
    request by id, and what is written meanwhile (the answers, and the
    requests the responses' callbacks make) encrypted and sent together at
    the end of the read, on txtlsjson's cheap TLS path (L{fastTLS},
    L{sendAtOnce}).  No events, no timeouts, no keepalive, no
    backpressure, no checks of ids or reserved keys, no line limit but the
    benchmark's: what txtlsjson costs beyond it is what its own layers
    cost.
    """

    handler: Handler
    #: Connecting: fires once the server has accepted the password.
    accepted: Optional[Deferred[None]] = None
    #: Whether the password step failed (the connection is closing).
    _refused = False

    def connectionMade(self) -> None:
        _noDelay(self)
        tls: Any = self.transport
        self._tls = tls
        fastTLS(tls)
        sendAtOnce(tls.transport, tls)
        self._state = fastState(tls)
        self._lines = LineBuffer()
        self._authenticated = False
        self._pending: Dict[int, Deferred[Dict[str, Any]]] = {}
        self._nextId = 1
        self._held: Optional[List[bytes]] = None
        if self.accepted is not None:
            tls.write(encodeLine({"password": PASSWORD}))

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        # What is written meanwhile (answers, and requests made by the
        # callbacks of responses) goes out together at the end.
        answers: List[bytes] = []
        self._held = answers
        try:
            self._readLines(data, answers)
        finally:
            self._held = None
        if answers:
            data = b"".join(answers)
            if self._state is None:
                self._tls.write(data)
            else:
                # What was written before (a late answer) first, then these.
                self._tls._aggregator.flush()
                encrypt(self._tls, self._state, data)

    def _readLines(self, data: bytes, answers: List[bytes]) -> None:
        for line in self._lines.feed(data, 64 * 1024 * 1024):
            if not line:
                continue
            message = decodeLine(line)
            if not self._authenticated:
                self._authenticated = self._firstLine(message)
                if not self._authenticated:
                    # Refused: nothing after it is read.
                    self._refused = True
                    return
                continue
            requestId = message.pop("requestId", None)
            if requestId:
                result = self.handler.request(self, message)
                if type(result) is dict:
                    result["responseId"] = requestId
                    answers.append(encodeLine(result))
                else:
                    result.addCallback(self._respond, requestId)
                continue
            responseId = message.pop("responseId", None)
            if responseId:
                self._pending.pop(responseId).callback(message)
            elif "__ping" in message:
                answers.append(encodeLine({"__pong": message["__ping"]}))
            elif "__pong" not in message:
                self.handler.message(message)

    def _firstLine(self, message: Dict[str, Any]) -> bool:
        """
        The password step: as a server, check the password and answer; as
        a client, the server's answer.

        @return: whether it succeeded.
        """
        if self.accepted is not None:
            if message.get("authenticated") is True:
                self.accepted.callback(None)
                return True
            self.accepted.errback(ValueError(f"refused: {message}"))
            self._tls.loseConnection()
            return False
        if hmac.compare_digest(str(message.get("password", "")).encode(), PASSWORD.encode()):
            self._write(encodeLine({"authenticated": True}))
            return True
        self._tls.write(encodeLine({"error": "incorrect password"}))
        self._tls.loseConnection()
        return False

    def _write(self, line: bytes) -> None:
        if self._held is None:
            self._tls.write(line)
        else:
            self._held.append(line)

    def _respond(self, result: Dict[str, Any], requestId: int) -> None:
        result["responseId"] = requestId
        self._write(encodeLine(result))

    def send(self, message: Dict[str, Any]) -> None:
        self._write(encodeLine(message))

    def request(self, request: Dict[str, Any]) -> "Deferred[Dict[str, Any]]":
        ident = self._nextId
        self._nextId += 1
        d: Deferred[Dict[str, Any]] = Deferred()
        self._pending[ident] = d
        self._write(encodeLine({**request, "requestId": ident}))
        return d


def serveFloor(port: int, cert: str, key: str, handler: Handler) -> int:
    return _serve(FloorPeer, port, cert, key, handler)


async def connectFloor(port: int, ca: str, handler: Handler) -> Channel:
    peer = FloorPeer()
    peer.handler = handler
    peer.accepted = Deferred()
    await _connectTLS(port, ca, peer)
    await peer.accepted
    return peer


def serveMetered(port: int, cert: str, key: str, handler: Handler) -> int:
    return serveTxtlsjson(port, cert, key, handler, metered=True)


#: C{metered}: a txtlsjson server counting into L{ServerMetrics} (what
#: metrics cost), with the txtlsjson client.
SERVE: Dict[str, Callable[..., int]] = {
    "txtlsjson": serveTxtlsjson, "amp": serveAMP, "bare": serveBare, "bytes": serveBytes,
    "floor": serveFloor, "metered": serveMetered}
CONNECT: Dict[str, Callable[..., Any]] = {
    "txtlsjson": connectTxtlsjson, "amp": connectAMP, "bare": connectBare,
    "bytes": connectBytes, "floor": connectFloor, "metered": connectTxtlsjson}


# -- many ----------------------------------------------------------------------

async def runMany(impl: str, port: int, ca: str, sizes: Dict[str, Any]) -> Dict[str, Any]:
    """
    Hold C{sizes["many"]} authenticated connections at once: server memory
    per connection, connect+auth rate and the CPU each side spent per
    connection made (C{serverCpu}, C{clientCpu}: microseconds; the rate is
    the slower side's, the CPU figures each side's own), and one request
    round across all.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = sizes["many"]
    control = await CONNECT[impl](port, ca, Handler(sizes))
    await deferLater(reactor, 0.5, lambda: None)
    before = (await control.request({"op": "rss"}))["rss"]
    channels: List[Channel] = []
    serverBefore = (await control.request({"op": "cpu"}))["cpu"]
    clientBefore = time.process_time()
    start = time.perf_counter()
    pending = 0
    batch = 100  # connection attempts in flight at once
    attempts: List[Deferred[Any]] = []
    for _ in range(n):
        d = ensureDeferred(CONNECT[impl](port, ca, Handler(sizes)))
        d.addCallback(channels.append)
        attempts.append(d)
        pending += 1
        if pending == batch:
            await gatherResults(attempts)
            attempts, pending = [], 0
    await gatherResults(attempts)
    connectRate = n / (time.perf_counter() - start)
    clientCpu = time.process_time() - clientBefore
    serverCpu = (await control.request({"op": "cpu"}))["cpu"] - serverBefore
    await deferLater(reactor, 1.0, lambda: None)  # let the server settle
    after = (await control.request({"op": "rss"}))["rss"]
    start = time.perf_counter()
    answers = await gatherResults([c.request({"seq": i, "payload": PAYLOAD})
                                   for i, c in enumerate(channels)])
    roundRate = n / (time.perf_counter() - start)
    if [a["seq"] for a in answers] != list(range(n)):
        raise AssertionError("a request of the round was answered wrongly")
    return {"perConnection": (after - before) / n, "connectRate": connectRate,
            "serverCpu": serverCpu / n * 1e6, "clientCpu": clientCpu / n * 1e6,
            "roundRate": roundRate, "unit": "bytes"}


# -- command line --------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> None:
    """
    Serve, or run a workload as a client, printing one JSON line.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["serve", "client", "many"])
    parser.add_argument("--impl", choices=sorted(SERVE), required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--ca")
    parser.add_argument("--workload")
    parser.add_argument("--reverse", action="store_true",
                        help="have the server run the workload towards the client")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    if args.role == "serve":
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        port = SERVE[args.impl](args.port, args.cert, args.key, Handler(sizes))
        print(f"READY {port}", flush=True)
        reactor.run()
        return

    async def client(_: Any) -> None:
        if args.role == "many":
            result = await runMany(args.impl, args.port, args.ca, sizes)
        else:
            channel = await CONNECT[args.impl](args.port, args.ca, Handler(sizes))
            if args.reverse:
                result = await channel.request({"op": "run", "workload": args.workload})
            else:
                result = await runWorkload(channel, args.workload, sizes)
        print(json.dumps(result), flush=True)
        os._exit(0)  # thousands of connections need no orderly goodbye

    react(lambda r: ensureDeferred(client(r)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
