"""
What a server counts, and its Prometheus exposition.

C{Server(..., metrics=ServerMetrics())} counts; a server without one counts
nothing and pays nothing: only a server with metrics builds its
connections from the metered protocol class (which counts in the hooks it
has anyway, and times requests with L{TimedPendingRequests} and
L{answerTimedRequest<txtlsjson.answers.answerTimedRequest>}), so the paths
of every message stay as they are otherwise.
The counts are plain attributes of L{ServerMetrics} (read them in Python),
and L{MetricsCollector} turns them into Prometheus metrics when scraped --
with C{pip install 'txtlsjson[metrics]'}, L{metricsResource} serves them
over HTTP from any Twisted web server, and C{twistd tlsjson --metrics
ENDPOINT} does it for you.

The metrics, all prefixed C{tlsjson_}:

  - C{connections} (gauge) and C{connections_total}: open, and accepted;
  - C{authentications_total} and C{authentication_failures_total};
  - C{messages_received_total}, C{messages_sent_total},
    C{requests_received_total}, C{requests_sent_total};
  - C{request_duration_seconds} (histogram) with C{direction="received"}
    (from the read that brought a client's request to its answer being
    handed to the transport) and
    C{direction="sent"} (a request to a client, until its response
    arrives);
  - C{received_bytes_total}, C{sent_bytes_total}: on the wire, TLS records
    included;
  - C{keepalive_timeouts_total}, C{slow_consumer_drops_total},
    C{line_too_long_total}.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from txtlsjson.requests import PendingRequests
from txtlsjson.wire import JSONObject

#: The upper bounds of the latency buckets, in seconds: a round trip on one
#: host takes a few hundred microseconds; a slow handler, seconds.
BUCKETS: Tuple[float, ...] = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                              0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """
    Request durations in buckets, cheap to add to (no lock: the reactor's
    thread is the only writer).

    @ivar counts: how many durations fell in each bucket (not cumulative),
        the last one for those above every bound.
    @ivar total: the sum of the durations, in seconds.
    """

    def __init__(self, bounds: Sequence[float] = BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts: List[int] = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        """
        Add a duration, C{times} times (requests answered together).
        """
        self.counts[bisect_left(self.bounds, seconds)] += times
        self.total += seconds * times

    @property
    def count(self) -> int:
        """
        How many durations were added.
        """
        return sum(self.counts)

    def cumulative(self) -> List[Tuple[str, int]]:
        """
        The buckets as Prometheus has them: C{(le, count at or below)},
        ending with C{("+Inf", count)}.
        """
        buckets = []
        running = 0
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets


#: The counters: (name, help, attribute of L{ServerMetrics}).
_COUNTERS = [
    ("connections", "Connections accepted.", "connectionsTotal"),
    ("authentications", "Clients authenticated.", "authentications"),
    ("authentication_failures", "Password attempts refused.", "authenticationFailures"),
    ("messages_received", "Application messages received from clients.", "messagesReceived"),
    ("messages_sent", "Application messages sent to clients.", "messagesSent"),
    ("requests_received", "Requests received from clients.", "requestsReceived"),
    ("requests_sent", "Requests sent to clients.", "requestsSent"),
    ("received_bytes", "Bytes read from clients' sockets (TLS records included).", "receivedBytes"),
    ("sent_bytes", "Bytes written to clients' sockets (TLS records included).", "sentBytes"),
    ("keepalive_timeouts", "Clients dropped for not answering a keepalive ping.",
     "keepAliveTimeouts"),
    ("slow_consumer_drops", "Clients dropped for not reading what waited for them.",
     "slowConsumerDrops"),
    ("line_too_long", "Connections closed for a line over the length limit.", "lineTooLong"),
]


class ServerMetrics:
    """
    The counts of one server (all its connections), as plain attributes.

    @ivar connectionsTotal: connections accepted.
    @ivar connectionsOpen: connections open now.
    @ivar authentications: clients authenticated.
    @ivar authenticationFailures: password attempts refused.
    @ivar messagesReceived: application messages from clients.
    @ivar messagesSent: application messages to clients.
    @ivar requestsReceived: requests from clients.
    @ivar requestsSent: requests to clients.
    @ivar receivedBytes: bytes read from clients' sockets.
    @ivar sentBytes: bytes written to clients' sockets.
    @ivar keepAliveTimeouts: clients dropped for not answering a ping.
    @ivar slowConsumerDrops: clients dropped for not reading.
    @ivar lineTooLong: connections closed for a line over the limit.
    @ivar answerDurations: from a client's request to its answer.
    @ivar requestDurations: from a request to a client to its outcome.
    """

    # The counts start at 0 here; each instance's first += makes its own.
    connectionsTotal = connectionsOpen = authentications = authenticationFailures = 0
    messagesReceived = messagesSent = requestsReceived = requestsSent = 0
    receivedBytes = sentBytes = keepAliveTimeouts = slowConsumerDrops = lineTooLong = 0

    def __init__(self) -> None:
        self.answerDurations = LatencyHistogram()
        self.requestDurations = LatencyHistogram()

    def __repr__(self) -> str:
        return (f"<ServerMetrics {self.connectionsOpen} open, {self.messagesReceived} messages "
                f"and {self.requestsReceived} requests received>")

    #: The names of the plain counts (everything but the histograms).
    COUNTS = ("connectionsOpen",) + tuple(attribute for _, _, attribute in _COUNTERS)

    def snapshot(self) -> Dict[str, Any]:
        """
        The counts as JSON-ready data (how a C{--workers} worker reports
        them to its parent).
        """
        data: Dict[str, Any] = {name: getattr(self, name) for name in self.COUNTS}
        for name in ("answerDurations", "requestDurations"):
            histogram: LatencyHistogram = getattr(self, name)
            data[name] = {"counts": list(histogram.counts), "total": histogram.total}
        return data

    @classmethod
    def fromSnapshot(cls, data: Dict[str, Any]) -> "ServerMetrics":
        """
        The metrics a L{snapshot} was taken of.

        @raise ValueError: if C{data} is not one.
        """
        metrics = cls()
        try:
            for name in cls.COUNTS:
                setattr(metrics, name, int(data[name]))
            for name in ("answerDurations", "requestDurations"):
                histogram: LatencyHistogram = getattr(metrics, name)
                counts = [int(count) for count in data[name]["counts"]]
                if len(counts) != len(histogram.counts):
                    raise ValueError("histogram buckets differ")
                histogram.counts, histogram.total = counts, float(data[name]["total"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a metrics snapshot: {e!r}") from None
        return metrics


class TimedPendingRequests(PendingRequests):
    """
    A connection's L{PendingRequests} that times each request until its
    response arrives (requests that time out, are cancelled or lose their
    connection are not timed; the metered protocol counts them all).
    """

    def __init__(self, clock: IReactorTime, timeout: float, metrics: ServerMetrics) -> None:
        super().__init__(clock, timeout)
        self._durations = metrics.requestDurations

    def resolve(self, ident: object, response: JSONObject) -> bool:
        entry = self._pending.get(ident) if type(ident) is int else None
        if entry is not None:
            # LatencyHistogram.observe, inline: every response's path.
            seconds = self._seconds() - entry[1]
            durations = self._durations
            durations.counts[bisect_left(durations.bounds, seconds)] += 1
            durations.total += seconds
        return PendingRequests.resolve(self, ident, response)


def meterWire(protocol: Any, metrics: ServerMetrics) -> None:
    """
    Count the bytes of C{protocol}'s socket, beneath TLS: what TLS reads and
    what it writes (or the protocol's own, without TLS).  Per socket read
    and write, not per message.
    """
    tls = protocol.transport
    socket = getattr(tls, "transport", None)
    if socket is None or getattr(socket, "protocol", None) is not tls:
        socket, tls = tls, protocol
    write = socket.write
    writeSequence = socket.writeSequence
    received = tls.dataReceived

    def countWrite(data: bytes) -> None:
        metrics.sentBytes += len(data)
        write(data)

    def countWriteSequence(data: Sequence[bytes]) -> None:
        metrics.sentBytes += sum(map(len, data))
        writeSequence(data)

    def countReceived(data: bytes) -> None:
        metrics.receivedBytes += len(data)
        received(data)

    socket.write = countWrite
    socket.writeSequence = countWriteSequence
    tls.dataReceived = countReceived


# -- Prometheus -----------------------------------------------------------------

class MetricsCollector:
    """
    A Prometheus collector of one L{ServerMetrics}, or of several told apart
    by a label (a C{--workers} parent's, one per C{worker}): register it
    with a C{prometheus_client} registry; it reads the counts when scraped.
    """

    def __init__(self, metrics: "Union[ServerMetrics, Callable[[], Dict[str, ServerMetrics]]]",
                 prefix: str = "tlsjson", label: str = "worker") -> None:
        """
        @param metrics: the metrics; or a callable returning them by the value
            of C{label}, called at each scrape.
        """
        self.metrics = metrics
        self.prefix = prefix
        self.label = label

    def _sources(self) -> List[Tuple[List[str], ServerMetrics]]:
        if isinstance(self.metrics, ServerMetrics):
            return [([], self.metrics)]
        return [([value], metrics) for value, metrics in sorted(self.metrics().items())]

    def collect(self) -> Iterator[Any]:
        """
        The metrics, as C{prometheus_client} metric families.
        """
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        p = self.prefix
        sources = self._sources()
        labels = [self.label] if not isinstance(self.metrics, ServerMetrics) else []
        gauge = GaugeMetricFamily(f"{p}_connections", "Connections open now.", labels=labels)
        for values, m in sources:
            gauge.add_metric(values, m.connectionsOpen)
        yield gauge
        for name, help, attribute in _COUNTERS:
            counter = CounterMetricFamily(f"{p}_{name}", help, labels=labels)
            for values, m in sources:
                counter.add_metric(values, getattr(m, attribute))
            yield counter
        durations = HistogramMetricFamily(
            f"{p}_request_duration_seconds",
            "Request durations: received, from a client's request to its answer; sent, from "
            "a request to a client to its response.", labels=labels + ["direction"])
        for values, m in sources:
            for direction, histogram in (("received", m.answerDurations),
                                         ("sent", m.requestDurations)):
                durations.add_metric(values + [direction], histogram.cumulative(), histogram.total)
        yield durations



def metricsResource(metrics: "Union[ServerMetrics, MetricsCollector]", prefix: str = "tlsjson",
                    refresh: "Optional[Callable[[], Deferred[None]]]" = None) -> Any:
    """
    A C{twisted.web} resource serving C{metrics} in Prometheus's text format
    (C{pip install 'txtlsjson[metrics]'}); put it at C{/metrics} of a
    C{Site}, as C{twistd tlsjson --metrics} does.  It renders in the
    reactor's thread, where the counts are kept.

    @param refresh: called at each scrape; the page is rendered when its
        Deferred fires (a C{--workers} parent asks its workers for their
        counts).
    """
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET

    registry = CollectorRegistry(auto_describe=False)
    collector = metrics if isinstance(metrics, MetricsCollector) else MetricsCollector(metrics, prefix)
    registry.register(collector)

    class MetricsPage(Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
            if refresh is None:
                return generate_latest(registry)
            gone: List[bool] = []
            request.notifyFinish().addErrback(lambda failure: gone.append(True))

            def render(_: object) -> None:
                if not gone:
                    request.write(generate_latest(registry))
                    request.finish()

            refresh().addCallback(render)
            return NOT_DONE_YET

    return MetricsPage()  # type: ignore[no-untyped-call]


def metricsSite(metrics: "Union[ServerMetrics, MetricsCollector]",
                refresh: "Optional[Callable[[], Deferred[None]]]" = None) -> Any:
    """
    A C{twisted.web} C{Site} with L{metricsResource} at C{/metrics} (and
    at C{/}).
    """
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    root = Resource()
    page = metricsResource(metrics, refresh=refresh)
    root.putChild(b"metrics", page)
    root.putChild(b"", page)
    site = Site(root)
    site.noisy = False
    # A scrape every few seconds is no news: no access log line for each.
    site.log = lambda request: None  # type: ignore[method-assign]
    return site
