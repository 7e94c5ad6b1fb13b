"""
The official NATS client, C{nats-py}, for a Twisted program: on its own
asyncio loop in a thread, with everything it reports delivered in the
reactor's thread.

nats-py is written for asyncio.  Running Twisted on its asyncio reactor
would put every connection of the server on asyncio's loop, which measured
slower than epoll on txtlsjson's own hot paths; so the NATS client gets a
loop of its own, and the two threads meet only here: calls go to the NATS
loop with C{call_soon_threadsafe}, results and messages come back with
C{reactor.callFromThread}.  Nothing else of txtlsjson runs in that thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable, Coroutine, Dict, List, Optional, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.errors import ClusterUnavailable
from txtlsjson.observers import Observers

#: Called in the reactor's thread with a message's subject, data and reply
#: subject ("" if none).
MessageHandler = Callable[[str, bytes, str], None]


class NATSConnection:
    """
    One connection to a NATS cluster, reconnecting by itself.

    @ivar connected: whether the connection is up (as last reported).
    """

    log = Logger()

    def __init__(self, reactor: Any, servers: Sequence[str], name: str = "txtlsjson",
                 reconnectWait: float = 0.5, options: Optional[Dict[str, Any]] = None) -> None:
        """
        @param reactor: the Twisted reactor, whose thread hears everything.
        @param servers: NATS URLs (C{nats://host:4222}, C{tls://...}).
        @param name: the client's name, as C{nats-server} shows it.
        @param reconnectWait: seconds between connection attempts.
        @param options: more keyword arguments of C{nats.connect} (TLS,
            credentials).
        """
        self._reactor = reactor
        self._servers = list(servers)
        self._name = name
        self._reconnectWait = reconnectWait
        self._options = dict(options or {})
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._client: Any = None
        self._subscriptions: List[Any] = []
        self._stopping = False
        self.connected = False
        self._whenConnected: Observers[None] = Observers()
        self._onConnected: List[Callable[[], None]] = []
        self._onDisconnected: List[Callable[[], None]] = []

    # -- life ----------------------------------------------------------------

    def start(self) -> None:
        """
        Start connecting, in the background, until L{stop}: a NATS server
        that is down at first is tried again every C{reconnectWait}
        seconds.
        """
        if self._thread is not None:
            return
        loop = self._loop = asyncio.new_event_loop()
        self._threadEnded: Deferred[None] = Deferred()
        self._thread = threading.Thread(target=self._runLoop, args=(loop,),
                                        name="txtlsjson-nats", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), loop)

    def _runLoop(self, loop: asyncio.AbstractEventLoop) -> None:
        """
        The NATS thread: the loop, until L{stop}.
        """
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()
            self._fromThread(self._threadEnded.callback, None)

    async def _connect(self) -> None:
        import nats

        while not self._stopping:
            try:
                self._client = await nats.connect(
                    servers=self._servers, name=self._name, allow_reconnect=True,
                    max_reconnect_attempts=-1, reconnect_time_wait=self._reconnectWait,
                    connect_timeout=2, disconnected_cb=self._lost, reconnected_cb=self._back,
                    error_cb=self._error, **self._options)
            except Exception as e:
                self._fromThread(self.log.warn, "cannot reach NATS at {servers}: {error}; "
                                 "trying again", servers=self._servers, error=e)
                await asyncio.sleep(self._reconnectWait)
                continue
            self._fromThread(self._up)
            return

    def _fromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._reactor.callFromThread(f, *args, **kwargs)

    async def _lost(self) -> None:
        self._fromThread(self._down)

    async def _back(self) -> None:
        self._fromThread(self._up)

    async def _error(self, error: Exception) -> None:
        self._fromThread(self.log.warn, "NATS: {error}", error=error)

    def _up(self) -> None:
        if self._stopping:
            return
        was, self.connected = self.connected, True
        if not was:
            self.log.info("connected to NATS")
        for callback in list(self._onConnected):
            callback()
        self._whenConnected.fire(None)

    def _down(self) -> None:
        if self.connected:
            self.connected = False
            if not self._stopping:
                self.log.warn("lost NATS; reconnecting")
            for callback in list(self._onDisconnected):
                callback()

    def whenConnected(self) -> "Deferred[None]":
        """
        @return: a new Deferred that fires once connected (at once if so).
        """
        return succeed(None) if self.connected else self._whenConnected.whenFired()

    def onConnected(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} (in the reactor's thread) each time the connection
        comes up.
        """
        self._onConnected.append(callback)

    def onDisconnected(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} (in the reactor's thread) each time the connection
        goes down.
        """
        self._onDisconnected.append(callback)

    def stop(self) -> "Deferred[None]":
        """
        Close the connection and end the thread.

        @return: a Deferred that fires when both are done.
        """
        self._stopping = True
        self.connected = False
        self._whenConnected.fail(ClusterUnavailable("the NATS connection was closed"))
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return succeed(None)
        self._loop = self._thread = None

        async def close() -> None:
            client = self._client
            if client is not None and not client.is_closed:
                try:
                    # Bounded: nats-py's close can wait on a connection
                    # that was re-established under it.
                    await asyncio.wait_for(client.close(), 2.0)
                except Exception:  # closing: whatever it says, it is over
                    pass

        def finished(_: Any) -> None:
            # In either thread (the future may be done before this is
            # added): the loop ends, and then the thread.
            loop.call_soon_threadsafe(loop.stop)

        asyncio.run_coroutine_threadsafe(close(), loop).add_done_callback(finished)
        return self._threadEnded

    # -- messages --------------------------------------------------------------

    def _run(self, coroutine: Callable[[], Coroutine[Any, Any, Any]]) -> "Deferred[Any]":
        """
        Run C{coroutine()} on the NATS loop; its outcome fires the returned
        Deferred in the reactor's thread.
        """
        loop = self._loop
        if loop is None or not self.connected:
            return fail(ClusterUnavailable("not connected to NATS"))
        d: Deferred[Any] = Deferred()

        def done(future: "concurrent.futures.Future[Any]") -> None:
            error = future.exception()
            if error is None:
                self._fromThread(d.callback, future.result())
            else:
                self._fromThread(d.errback, Failure(error))

        asyncio.run_coroutine_threadsafe(coroutine(), loop).add_done_callback(done)
        return d

    def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        """
        Publish C{data} on C{subject} (at most once).

        @raise ClusterUnavailable: if not connected: nothing was sent.
        """
        loop = self._loop
        if loop is None or not self.connected:
            raise ClusterUnavailable("not connected to NATS")
        client = self._client

        def send() -> None:
            asyncio.ensure_future(client.publish(subject, data, reply=reply))

        loop.call_soon_threadsafe(send)

    def request(self, subject: str, data: bytes, timeout: float) -> "Deferred[bytes]":
        """
        Send a request and wait at most C{timeout} seconds for its reply.

        @return: a Deferred that fires with the reply's data, or fails with
            L{ClusterUnavailable} (not connected), C{nats}' C{NoRespondersError}
            (nobody listens on C{subject}) or C{TimeoutError}.
        """
        client = self._client

        async def ask() -> bytes:
            message = await client.request(subject, data, timeout=timeout)
            payload: bytes = message.data
            return payload

        return self._run(ask)

    def subscribe(self, subject: str, handler: MessageHandler,
                  queue: str = "") -> "Deferred[None]":
        """
        Hand every message on C{subject} to C{handler}, in the reactor's
        thread.
        """
        client = self._client

        async def callback(message: Any) -> None:
            self._fromThread(handler, message.subject, message.data, message.reply)

        async def subscribe() -> None:
            self._subscriptions.append(await client.subscribe(subject, queue=queue, cb=callback))

        return self._run(subscribe)
