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
from typing import Any, Callable, Coroutine, Dict, List, Optional, Sequence, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from txtlsjson.errors import ClusterUnavailable, InvalidOutgoingMessage
from txtlsjson.observers import Observers

#: The most bytes of messages to one subject joined into one NATS message
#: (NATS refuses messages over its max_payload, 1 MiB by default).
BATCH_BYTES = 256 * 1024

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
        #: The largest message the NATS server takes (its max_payload, as
        #: it says when connecting; NATS's default until then).
        self.maxPayload = 1024 * 1024
        self._whenConnected: Observers[None] = Observers()
        # Published in the reactor's thread, not yet handed to the NATS
        # thread; received in the NATS thread, not yet handed over.
        self._outbox: List[Tuple[str, bytes, str]] = []
        self._inbox: List[Tuple[MessageHandler, str, bytes, str]] = []
        self._inboxLock = threading.Lock()
        self._outboxLock = threading.Lock()
        # Made in the NATS thread, on its loop (Python 3.9 binds a lock to
        # the loop current when it is made).
        self._sendLock: Optional[asyncio.Lock] = None
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
            self._fromThread(self._up, getattr(self._client, "max_payload", self.maxPayload))
            return

    def _fromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._reactor.callFromThread(f, *args, **kwargs)

    async def _lost(self) -> None:
        self._fromThread(self._down)

    async def _back(self) -> None:
        self._fromThread(self._up, getattr(self._client, "max_payload", self.maxPayload))

    async def _error(self, error: Exception) -> None:
        self._fromThread(self.log.warn, "NATS: {error}", error=error)

    def _up(self, maxPayload: int) -> None:
        if self._stopping:
            return
        self.maxPayload = maxPayload
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

        Messages published in one turn of the reactor cross to the NATS
        thread together: one wake-up of its loop for all of them; and
        messages to one subject without a reply subject travel joined, so
        C{data} must be whole lines (its receivers split them).

        @raise ClusterUnavailable: if not connected: nothing was sent.
        """
        loop = self._loop
        if loop is None or not self.connected:
            raise ClusterUnavailable("not connected to NATS")
        if len(data) > self.maxPayload:
            raise InvalidOutgoingMessage(
                f"{len(data)} bytes are more than NATS carries in one message "
                f"(max_payload {self.maxPayload})")
        with self._outboxLock:
            self._outbox.append((subject, data, reply))
            first = len(self._outbox) == 1
        if first:
            loop.call_soon_threadsafe(self._sendOutbox)

    def _sendOutbox(self) -> None:
        """
        In the NATS thread: hand what was published to the client, in
        order, a run of messages to the same subject (with no reply
        subject) joined into one NATS message of at most L{BATCH_BYTES}:
        what costs is the NATS message, not its size.
        """
        with self._outboxLock:
            outbox, self._outbox = self._outbox, []
        batches: List[Tuple[str, bytes, str]] = []
        run: List[bytes] = []
        runSubject, runBytes = "", 0
        for subject, data, reply in outbox:
            if run and (subject != runSubject or reply or runBytes + len(data) > BATCH_BYTES):
                batches.append((runSubject, b"".join(run), ""))
                run, runBytes = [], 0
            if reply:
                batches.append((subject, data, reply))
                continue
            run.append(data)
            runSubject, runBytes = subject, runBytes + len(data)
        if run:
            batches.append((runSubject, b"".join(run), ""))
        if batches:
            asyncio.ensure_future(self._publishAll(batches))

    async def _publishAll(self, outbox: List[Tuple[str, bytes, str]]) -> None:
        # One batch after another: a publish may wait for the client's
        # buffer to flush, and a later batch must not overtake it.
        if self._sendLock is None:
            self._sendLock = asyncio.Lock()
        async with self._sendLock:
            client = self._client
            for subject, data, reply in outbox:
                await client.publish(subject, data, reply=reply)

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

    def _deliverInbox(self) -> None:
        """
        In the reactor's thread: hand every message received to its
        handler, in order.
        """
        while True:
            with self._inboxLock:
                inbox, self._inbox = self._inbox, []
            if not inbox:
                return
            for handler, subject, data, reply in inbox:
                try:
                    handler(subject, data, reply)
                except Exception:
                    self.log.failure("handling a NATS message on {subject}", subject=subject)

    def subscribe(self, subject: str, handler: MessageHandler,
                  queue: str = "") -> "Deferred[None]":
        """
        Hand every message on C{subject} to C{handler}, in the reactor's
        thread.
        """
        client = self._client

        async def callback(message: Any) -> None:
            # Messages cross to the reactor's thread in batches: one
            # callFromThread (and one wake-up) for all that came meanwhile.
            with self._inboxLock:
                self._inbox.append((handler, message.subject, message.data, message.reply))
                first = len(self._inbox) == 1
            if first:
                self._fromThread(self._deliverInbox)

        async def subscribe() -> None:
            self._subscriptions.append(await client.subscribe(subject, queue=queue, cb=callback))

        return self._run(subscribe)
