"""
C{twistd -n tlsjson --workers N}: real processes -- a parent holding the
listening socket and workers serving it -- and real TLS clients on
127.0.0.1.  Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any, Dict, List

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater

from txtlsjson import Client

from .conftest import PKI
from .inreactor import inReactor
from .processes import RunningProcess, twistd
from .test_twistd import _next, _stoppedBySignal, serverArgs


@pytest.fixture
def passwordFile(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text("s3cret\n")
    return path


async def startPool(pki: PKI, passwordFile: Path, cwd: Path, count: int = 2) -> Any:
    """
    Start C{twistd tlsjson --workers count}; wait until every worker
    accepts.

    @return: the process, the port, and each worker's pid by number.
    """
    process = twistd(*serverArgs(pki, passwordFile), "--workers", str(count), cwd=cwd)
    await process.waitFor(f"with {count} workers")
    for number in range(1, count + 1):
        await process.waitFor(f"[worker {number}] worker {number} (pid ")
    port = int(re.search(r"port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]
    return process, port, workerPids(process)


def workerPids(process: RunningProcess) -> Dict[int, int]:
    """
    The pid of each worker, the latest started.
    """
    pids: Dict[int, int] = {}
    for number, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", process.text()):
        pids[int(number)] = int(pid)
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def untilGone(pids: List[int], seconds: float = 10.0) -> List[int]:
    """
    Wait (at most C{seconds}) for the processes to be gone.

    @return: those still alive.
    """
    for _ in range(int(seconds / 0.05)):
        living = [pid for pid in pids if alive(pid)]
        if not living:
            return []
        await deferLater(reactor, 0.05, lambda: None)
    return [pid for pid in pids if alive(pid)]


async def untilStarted(process: RunningProcess, number: int, old: int,
                       seconds: float = 10.0) -> int:
    """
    Wait (at most C{seconds}) for worker C{number} to be started again.

    @return: its new pid.
    """
    for _ in range(int(seconds / 0.05)):
        pid = workerPids(process).get(number, old)
        if pid != old:
            return pid
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"worker {number} was not started again:\n{process.text()}")


@inReactor
async def test_workersServeAndStop(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    Two workers serve clients through one listening socket, each worker's
    log lines come out of the parent with its number, and SIGTERM stops the
    parent after every worker has closed its clients and exited.
    """
    process, port, pids = await startPool(pki, passwordFile, tmp_path)
    assert sorted(pids) == [1, 2] and all(alive(pid) for pid in pids.values())
    clients = [Client("localhost", port, "s3cret", ca=[pki.caCert]) for _ in range(6)]
    closed = [_next(client, "close") for client in clients]
    for number, client in enumerate(clients):
        await client.connect()
        assert await client.request({"n": number}) == {"n": number}
    assert re.search(r"\[worker [12]\] .*client 0 authenticated from 127\.0\.0\.1:",
                     process.text())
    process.signal("TERM")
    outcome = await process.ended
    for d in closed:
        await d
    assert _stoppedBySignal(outcome), outcome
    assert "all 2 workers stopped" in outcome.out
    assert await untilGone(list(pids.values())) == []
    assert "Traceback" not in outcome.out + outcome.err
    assert "s3cret" not in outcome.out + outcome.err


@inReactor
async def test_killedWorkerRestarted(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    A worker killed with SIGKILL is started again (and the log says so); its
    clients reconnect through the shared socket and are served.
    """
    process, port, pids = await startPool(pki, passwordFile, tmp_path)
    client = Client("localhost", port, "s3cret", ca=[pki.caCert], reconnectInterval=0.2)
    await client.connect()
    assert client.factory.client is not None and client.factory.client.transport is not None
    localPort = client.factory.client.transport.getHost().port  # type: ignore[attr-defined]
    await process.waitFor(f"authenticated from 127.0.0.1:{localPort}")
    holder = re.search(rf"\[worker (\d)\] .*authenticated from 127\.0\.0\.1:{localPort}\b",
                       process.text())
    assert holder is not None
    number = int(holder.group(1))
    again = _next(client, "authenticated")
    os.kill(pids[number], signal.SIGKILL)
    await process.waitFor(f"worker {number} (pid {pids[number]}) ended")
    await again
    assert await client.request({"after": "restart"}) == {"after": "restart"}
    await process.waitFor("starting it again in 1 s")
    restarted = await untilStarted(process, number, pids[number])
    await process.waitFor(f"[worker {number}] worker {number} (pid {restarted}) accepting")
    assert alive(restarted)
    await client.disconnect()
    process.signal("TERM")
    outcome = await process.ended
    assert _stoppedBySignal(outcome), outcome
    assert await untilGone(list(workerPids(process).values())) == []


@inReactor
async def test_workersDieWithParent(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    A worker never outlives its parent: killed with SIGKILL, the parent
    cannot stop them, and they stop by themselves.
    """
    process, port, pids = await startPool(pki, passwordFile, tmp_path)
    process.signal("KILL")
    await process.ended
    assert await untilGone(list(pids.values())) == []


@inReactor
async def test_portInUse(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    With workers too, a port in use ends the parent with one line, and no
    worker starts.
    """
    first, port, pids = await startPool(pki, passwordFile, tmp_path, count=2)
    try:
        outcome = await twistd(*serverArgs(pki, passwordFile, port), "--workers", "2",
                               cwd=tmp_path).ended
    finally:
        first.signal("TERM")
        await first.ended
    assert outcome.code == 1
    assert "cannot listen on TLS port 127.0.0.1:" in outcome.err + outcome.out
    assert "worker 1 started" not in outcome.out



@inReactor
async def test_credentialsReloadedInEveryWorker(pki: PKI, tmp_path: Path) -> None:
    """
    With C{--workers 2 --credentials}, a C{SIGHUP} to the parent reaches
    every worker: each reloads the file, and revoked clients are closed on
    whichever worker holds them while the others stay.
    """
    from txtlsjson.credentials import addCredential, removeCredential

    credentials = tmp_path / "clients"
    secrets = {f"c{n}": addCredential(credentials, f"c{n}") for n in range(4)}
    arguments = [a for a in serverArgs(pki, tmp_path / "unused") if a not in (
        "--password-file", str(tmp_path / "unused"))]
    process = twistd(*arguments, "--credentials", str(credentials), "--workers", "2", cwd=tmp_path)
    clients: Dict[str, Client] = {}
    try:
        await process.waitFor("with 2 workers")
        for number in (1, 2):
            await process.waitFor(f"[worker {number}] worker {number} (pid ")
        port = int(re.search(r"port=(\d+)", process.text()).group(1))  # type: ignore[union-attr]
        for name, secret in secrets.items():
            clients[name] = Client("localhost", port, secret, ca=[pki.caCert])
            await clients[name].connect()
        closed = [_next(clients[name], "close") for name in ("c0", "c1")]
        removeCredential(credentials, "c0")
        removeCredential(credentials, "c1")
        process.signal("HUP")
        for number in (1, 2):
            await process.waitFor(f"[worker {number}] credentials reloaded from")
        for waiting in closed:
            await waiting
        for name in ("c2", "c3"):
            assert await clients[name].request({"still": name}) == {"still": name}
        process.signal("TERM")
        outcome = await process.ended
    finally:
        for client in clients.values():
            await client.disconnect()
        process.signal("KILL")
    assert _stoppedBySignal(outcome), outcome
    assert "SIGHUP: passing it on to the 2 workers" in outcome.out


@inReactor
async def test_metricsOfEveryWorker(pki: PKI, passwordFile: Path, tmp_path: Path) -> None:
    """
    With C{--workers 2 --metrics}, the parent serves each worker's metrics,
    told apart by a C{worker} label, asking the workers at each scrape: a
    client's requests show in its worker's series at once.
    """
    from .test_metrics import parse, scrape

    process = twistd(*serverArgs(pki, passwordFile), "--workers", "2",
                     "--metrics", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    client = None
    try:
        await process.waitFor("with 2 workers")
        await process.waitFor("Prometheus metrics")
        for number in (1, 2):
            await process.waitFor(f"[worker {number}] worker {number} (pid ")
        text = process.text()
        port = int(re.search(r"port=(\d+)", text).group(1))  # type: ignore[union-attr]
        metricsPort = int(re.search(r"Prometheus metrics .* on .*port=(\d+)", text).group(1))  # type: ignore[union-attr]
        client = Client("localhost", port, "s3cret", ca=[pki.caCert])
        await client.connect()
        for n in range(4):
            assert await client.request({"n": n}) == {"n": n}
        found = parse(await scrape(metricsPort))
        served = [found[f"tlsjson_requests_received_total{{worker={n}}}"] for n in "12"]
        assert sorted(served) == [0, 4], found
        assert sum(found[f"tlsjson_connections{{worker={n}}}"] for n in "12") == 1
        await client.disconnect()
        client = None
        process.signal("TERM")
        outcome = await process.ended
    finally:
        if client is not None:
            await client.disconnect()
        process.signal("KILL")
    assert _stoppedBySignal(outcome), outcome


def test_scrapeWaitsForWorkersAtMostASecond() -> None:
    """
    A scrape asks each worker for its counts and goes on when all have
    answered (its timer cancelled), or after L{METRICS_WAIT} without the
    ones that have not; a worker that ends counts as answered.
    """
    import json

    from twisted.internet.task import Clock

    from txtlsjson.metrics import ServerMetrics
    from txtlsjson.workers import METRICS_WAIT, WorkerPool

    class Stdin:
        def __init__(self) -> None:
            self.written: List[bytes] = []

        def write(self, data: bytes) -> None:
            self.written.append(data)

    class Worker:
        def __init__(self, number: int) -> None:
            self.number = number
            self.transport = Stdin()

    clock = Clock()
    pool = WorkerPool({"workers": 2, "credentials": None, "metrics": None},  # type: ignore[arg-type]
                      None, reactor=clock)
    workers = {1: Worker(1), 2: Worker(2)}
    pool.workers = workers  # type: ignore[assignment]
    answer = json.dumps(ServerMetrics().snapshot()).encode()
    done: List[Any] = []
    pool.refreshMetrics().addCallback(done.append)
    assert [w.transport.written for w in workers.values()] == [[b"metrics\n"]] * 2
    pool._metricsReceived(1, answer)
    assert done == []
    pool._metricsReceived(2, answer)
    assert done == [None] and clock.getDelayedCalls() == []
    assert sorted(pool.metrics) == [1, 2]

    late: List[Any] = []
    pool.refreshMetrics().addCallback(late.append)
    pool._answered(2)  # worker 2 ended
    clock.advance(METRICS_WAIT - 0.01)
    assert late == []
    clock.advance(0.01)
    assert late == [None] and clock.getDelayedCalls() == []
