"""
Metrics: what a server counts (in memory, with time under the test's
control), its Prometheus text, and C{twistd tlsjson --metrics} scraped over
HTTP for real.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from txtlsjson import Client, Server, TLSJSONClientFactory, TLSJSONClientProtocol
from txtlsjson.errors import ConnectionFailed, AuthenticationFailed
from txtlsjson.metrics import LatencyHistogram, MetricsCollector, ServerMetrics
from txtlsjson.server import _MeteredServerProtocol, _ServerProtocol
from txtlsjson.session import Session
from txtlsjson.testing import MemoryNetwork

from .conftest import PKI
from .inreactor import inReactor
from .processes import twistd


def meteredServer(network: MemoryNetwork, **settings: Any) -> Server:
    server = Server("pw", reactor=network, metrics=ServerMetrics(), **settings)
    server.on("request", lambda i, request, res: res.send({"echo": request}))
    network.result(server.listenOn(network.endpoint(8888)))
    return server


def samples(metrics: ServerMetrics) -> Dict[str, float]:
    """
    The Prometheus text of C{metrics}, parsed: each sample by its name and
    labels.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics))
    return parse(generate_latest(registry).decode())


def parse(text: str) -> Dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return found


def test_countsWhatPasses() -> None:
    """
    Connections, authentications, messages and requests both ways, their
    durations and the bytes on the wire are counted as they pass.
    """
    network = MemoryNetwork()
    server = meteredServer(network)
    metrics = server.metrics
    assert metrics is not None
    client = Client("localhost", 8888, "pw", reactor=network)
    client.on("request", lambda request, res: res.send({"seen": request["n"]}))
    network.result(client.connect())
    for n in range(3):
        client.send({"n": n})
    for n in range(2):
        network.result(client.request({"n": n}))
    server.send(0, {"to": "client"})
    network.result(server.request(0, {"n": 5}))
    network.flush()
    assert (metrics.connectionsTotal, metrics.connectionsOpen, metrics.authentications) == (1, 1, 1)
    assert (metrics.messagesReceived, metrics.requestsReceived) == (3, 2)
    assert (metrics.messagesSent, metrics.requestsSent) == (1, 1)
    assert metrics.answerDurations.count == 2 and metrics.requestDurations.count == 1
    # The password line, five messages or requests, two answers: all on the wire.
    assert metrics.receivedBytes > len(b'{"password":"pw"}\n') * 3
    assert metrics.sentBytes > len(b'{"authenticated":true}\n')
    network.result(client.disconnect())
    network.flush()
    assert metrics.connectionsOpen == 0 and metrics.connectionsTotal == 1


def test_countsFailuresAndDrops() -> None:
    """
    A refused password, a line over the limit and a missed keepalive ping
    are each counted.
    """
    network = MemoryNetwork()
    server = meteredServer(network, maxLineLength=1024, keepAliveInterval=5, keepAliveTimeout=2,
                           authFailureDelay=0)
    metrics = server.metrics
    assert metrics is not None
    wrong = Client("localhost", 8888, "nope", reactor=network)
    failures: List[Any] = []
    wrong.connect().addErrback(failures.append)
    network.flush()
    assert failures and failures[0].check(AuthenticationFailed)
    long = Client("localhost", 8888, "pw", reactor=network, maxLineLength=4096)
    network.result(long.connect())
    long.send({"x": "y" * 2000})
    network.flush()
    silent = TLSJSONClientFactory("pw", reactor=network)
    silent.protocol = Deaf
    network.connectSSL("localhost", 8888, silent, None)
    network.wait(8)
    assert (metrics.authenticationFailures, metrics.lineTooLong, metrics.keepAliveTimeouts) == (1, 1, 1)
    assert metrics.connectionsOpen == 0 and metrics.connectionsTotal == 3


class Deaf(TLSJSONClientProtocol):
    """
    A client that never answers a ping.
    """

    def _buildSession(self) -> Session:
        session = super()._buildSession()
        session._keepAlive = lambda value: None
        return session


def test_withoutMetricsNothingChanges() -> None:
    """
    A server without metrics uses the plain protocol: the paths of its
    messages are those of a server that never heard of metrics.
    """
    network = MemoryNetwork()
    server = Server("pw", reactor=network)
    assert server.metrics is None and server.factory.protocol is _ServerProtocol


def test_prometheusText() -> None:
    """
    The collector gives every counter, the open connections as a gauge and
    the durations as a histogram with cumulative buckets, by direction.
    """
    metrics = ServerMetrics()
    metrics.messagesReceived = 7
    metrics.connectionsOpen = 2
    for seconds in (0.0002, 0.003, 0.003, 20.0):
        metrics.answerDurations.observe(seconds)
    found = samples(metrics)
    assert found["tlsjson_messages_received_total"] == 7
    assert found["tlsjson_connections"] == 2
    assert found["tlsjson_request_duration_seconds_bucket{direction=received,le=0.00025}"] == 1
    assert found["tlsjson_request_duration_seconds_bucket{direction=received,le=0.005}"] == 3
    assert found["tlsjson_request_duration_seconds_bucket{direction=received,le=10.0}"] == 3
    assert found["tlsjson_request_duration_seconds_bucket{direction=received,le=+Inf}"] == 4
    assert found["tlsjson_request_duration_seconds_count{direction=received}"] == 4
    assert abs(found["tlsjson_request_duration_seconds_sum{direction=received}"] - 20.0062) < 1e-9
    assert found["tlsjson_request_duration_seconds_count{direction=sent}"] == 0
    for name in ("connections", "authentications", "authentication_failures", "messages_sent",
                 "requests_received", "requests_sent", "received_bytes", "sent_bytes",
                 "keepalive_timeouts", "slow_consumer_drops", "line_too_long"):
        assert f"tlsjson_{name}_total" in found, name


def test_histogramBounds() -> None:
    """
    A duration equal to a bound falls in that bound's bucket (Prometheus's
    C{le}); one above every bound in the last.
    """
    histogram = LatencyHistogram((1.0, 2.0))
    for seconds in (1.0, 1.5, 2.0, 3.0):
        histogram.observe(seconds)
    assert histogram.counts == [1, 2, 1]
    assert histogram.cumulative() == [("1.0", 1), ("2.0", 3), ("+Inf", 4)]


@inReactor
async def test_scrapedOverHTTP(pki: PKI, tmp_path: Path) -> None:
    """
    C{twistd tlsjson --metrics tcp:0:interface=127.0.0.1} serves the
    metrics over HTTP; a client's traffic moves them between two scrapes.
    """
    passwordFile = tmp_path / "password"
    passwordFile.write_text("s3cret\n")
    process = twistd("-n", "--pidfile=", "--logfile=-", "tlsjson", "--port", "0",
                     "--interface", "127.0.0.1", "--cert", str(pki.serverCert),
                     "--key", str(pki.serverKey), "--password-file", str(passwordFile),
                     "--metrics", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    try:
        await process.waitFor("tls-json server listening on")
        await process.waitFor("Prometheus metrics")
        text = process.text()
        port = int(re.search(r"listening on .*port=(\d+)", text).group(1))  # type: ignore[union-attr]
        metricsPort = int(re.search(r"Prometheus metrics .* on .*port=(\d+)", text).group(1))  # type: ignore[union-attr]
        before = parse(await scrape(metricsPort))
        assert before["tlsjson_connections"] == 0
        client = Client("localhost", port, "s3cret", ca=[pki.caCert])
        await client.connect()
        for n in range(5):
            client.send({"n": n})
        for n in range(3):
            assert await client.request({"n": n}) == {"n": n}
        after = parse(await scrape(metricsPort))
        assert after["tlsjson_connections"] == 1
        assert after["tlsjson_authentications_total"] == before["tlsjson_authentications_total"] + 1
        assert after["tlsjson_messages_received_total"] == 5
        assert after["tlsjson_requests_received_total"] == 3
        assert after["tlsjson_request_duration_seconds_count{direction=received}"] == 3
        assert after["tlsjson_received_bytes_total"] > before["tlsjson_received_bytes_total"]
        await client.disconnect()
        wrong = Client("localhost", port, "guess", ca=[pki.caCert])
        try:
            await wrong.connect()
        except (AuthenticationFailed, ConnectionFailed):
            pass
        final = parse(await scrape(metricsPort))
        assert final["tlsjson_authentication_failures_total"] == 1
        assert "GET /metrics" not in process.text()  # scrapes are not logged
        process.signal("TERM")
        await process.ended
    finally:
        process.signal("KILL")


async def scrape(port: int) -> str:
    """
    GET http://127.0.0.1:PORT/metrics, for real.
    """
    from urllib.request import urlopen

    from twisted.internet.threads import deferToThread

    def get() -> str:
        with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return response.read().decode()  # type: ignore[no-any-return]

    return await deferToThread(get)


def test_laterAnswersTimedWhenSent() -> None:
    """
    An answer that comes later is timed when it is sent; a request the
    handler answers with nothing is counted but never timed.
    """
    from twisted.internet.defer import Deferred

    network = MemoryNetwork()
    server = Server("pw", reactor=network, metrics=ServerMetrics())
    waiting: List[Deferred[Any]] = []

    def later(request: Any) -> Any:
        if request.get("never"):
            return None
        d: Deferred[Any] = Deferred()
        waiting.append(d)
        return d

    class Later(_MeteredServerProtocol):
        def requestReceived(self, request: Any) -> Any:
            return later(request)

    server.factory.protocol = Later
    network.result(server.listenOn(network.endpoint(8888)))
    client = Client("localhost", 8888, "pw", reactor=network, requestTimeout=0)
    network.result(client.connect())
    answer = client.request({"n": 1})
    client.request({"never": True})
    network.flush()
    metrics = server.metrics
    assert metrics is not None
    assert metrics.requestsReceived == 2 and metrics.answerDurations.count == 0
    waiting[0].callback({"done": True})
    assert network.result(answer) == {"done": True}
    assert metrics.answerDurations.count == 1


def test_requestsHeldDuringPasswordCheckTimed() -> None:
    """
    A request that came with the password, held while the authenticator
    decided and answered outside any read, is timed too.
    """
    from twisted.internet.defer import Deferred
    from twisted.internet.task import Clock

    from .helpers import connectProtocol

    decided: Deferred[Any] = Deferred()
    server = Server(authenticator=lambda password, certificate: decided, reactor=Clock(),
                    metrics=ServerMetrics(), authFailureDelay=0)
    server.on("request", lambda i, request, res: res.send({"ok": True}))
    protocol, transport = connectProtocol(server.factory)
    protocol.dataReceived(b'{"password":"x"}\n{"n":1,"requestId":1}\n')
    metrics = server.metrics
    assert metrics is not None and metrics.requestsReceived == 0
    decided.callback("worker-1")
    assert transport.lines() == [b'{"authenticated":true}', b'{"ok":true,"responseId":1}']
    assert metrics.requestsReceived == 1 and metrics.answerDurations.count == 1


@inReactor
async def test_metricsServiceStopsListening() -> None:
    """
    The service serving metrics listens when started and, when stopped,
    stops listening: its stop fires and the port is closed.
    """
    import socket

    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    from txtlsjson.metrics import metricsSite
    from txtlsjson.service import ListeningService

    service = ListeningService("metrics", TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"),
                               metricsSite(ServerMetrics()))
    service.startService()
    listening = service._listening
    assert listening is not None
    port = (await listening).getHost().port
    assert "tlsjson_connections 0.0" in await scrape(port)
    await service.stopService()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
