"""
Where a round trip's wall-clock time goes, on this machine.

Two measurements:

  - the machine's own cost of a round trip between two processes: a plain
    socket ping-pong (no TLS, no Twisted, no JSON), with the processes on
    two CPUs and then on one.  Where waking a process on the other CPU is
    dear (a virtual machine whose idle CPUs halt), it is most of a round
    trip, and both implementations pay it twice a round trip.  (On one
    CPU the woken process may run before C{send} returns, so there only
    the round trip means anything);
  - a txtlsjson server's round trip under the Node client's C{rtt}
    workload, phase by phase: from epoll's return to the read (the
    reactor's dispatch), the read, from the read to the request handler
    (TLS, framing, decoding, the session), from the handler to the send
    (the answer, encoding, TLS), the send, the rest of the reactor's turn,
    and the time asleep until the next request.

    python -m benchmarks.timeline

The server's phases are timed by wrapping Twisted's C{tcp.Connection}
read and write methods, the reactor's poller and the benchmark's request
handler, each wrapper adding a fraction of a microsecond: figures to
compare phases with each other, not with the suite's tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPOSITORY = Path(__file__).resolve().parent.parent

#: The marks of one round trip of the server, in order (see L{_Marks}).
ROUND_TRIP = "ErdhsSeE"

#: The server's phases: each from one mark of L{ROUND_TRIP} to the next.
PHASES = [
    "epoll's return -> the read (dispatch)",
    "the read (recv)",
    "the read -> the handler",
    "the handler -> the send",
    "the send (send)",
    "the send -> epoll",
    "asleep in epoll",
]


def median(values: Sequence[float]) -> float:
    """
    The median of C{values}, or NaN if there are none.
    """
    return statistics.median(values) if values else float("nan")


# -- the machine's own round trip -----------------------------------------------

def pingPong(cpus: Optional[Tuple[int, int]], n: int = 20_000) -> Dict[str, float]:
    """
    A plain socket ping-pong between this process and a child, 100 bytes
    each way, with C{TCP_NODELAY}.

    @param cpus: the CPUs to run this process and the child on, or L{None}
        to leave it to the scheduler.
    @return: the round trip (the mean) and the send call's time (the
        median), in microseconds.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    before = os.sched_getaffinity(0)
    child = os.fork()
    if child == 0:
        try:
            if cpus is not None:
                os.sched_setaffinity(0, {cpus[1]})
            peer = socket.create_connection(("127.0.0.1", port))
            peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(n):
                peer.sendall(b"x" * 100)
                peer.recv(1000)
        finally:
            os._exit(0)
    try:
        if cpus is not None:
            os.sched_setaffinity(0, {cpus[0]})
        # Bounded: a child that died (or never connected) ends the
        # measurement with an error, not a hang.
        listener.settimeout(30)
        connection, _ = listener.accept()
        connection.settimeout(30)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        clock = time.perf_counter_ns
        sends = []
        start = clock()
        for _ in range(n):
            if not connection.recv(1000):
                raise RuntimeError("the ping-pong child closed its connection early")
            sent = clock()
            connection.sendall(b"y" * 100)
            sends.append(clock() - sent)
        elapsed = clock() - start
    finally:
        os.waitpid(child, 0)
        os.sched_setaffinity(0, before)
        listener.close()
    return {"roundTrip": elapsed / n / 1000, "send": median(sends) / 1000}


# -- a txtlsjson server's round trip --------------------------------------------

class _Marks:
    """
    Timestamps of the server's events, in the order they happen: C{E}
    epoll returned, C{r} the read began, C{d} the read returned data, C{h}
    the handler was called, C{s} the send began, C{S} it returned, C{e}
    epoll was entered.
    """

    def __init__(self) -> None:
        self.marks: List[Tuple[str, int]] = []

    def install(self, reactor: Any, handlerClass: Any) -> None:
        """
        Wrap what marks the events: Twisted's TCP connection, C{reactor}'s
        poller, and C{handlerClass}'s C{request}.
        """
        from twisted.internet import tcp

        marks = self.marks
        clock = time.perf_counter_ns

        def timed(original: Any, before: str, after: Optional[str] = None) -> Any:
            def wrapper(*args: Any) -> Any:
                marks.append((before, clock()))
                try:
                    return original(*args)
                finally:
                    if after is not None:
                        marks.append((after, clock()))
            return wrapper

        for owner, name, before, after in [(tcp.Connection, "doRead", "r", None),
                                           (tcp.Connection, "_dataReceived", "d", None),
                                           (tcp.Connection, "writeSomeData", "s", "S"),
                                           (handlerClass, "request", "h", None)]:
            setattr(owner, name, timed(getattr(owner, name), before, after))
        reactor._poller = _TimedPoller(reactor._poller, timed(reactor._poller.poll, "e", "E"))

    def phases(self) -> Dict[str, float]:
        """
        The median of each of L{PHASES} over the round trips whose marks
        came exactly as L{ROUND_TRIP} (the first tenth left out: warming
        up), and how many there were (C{roundTrips}).
        """
        names = "".join(name for name, _ in self.marks)
        times = [at for _, at in self.marks]
        trips = []
        start = names.find(ROUND_TRIP)
        while start != -1:
            trips.append(times[start:start + len(ROUND_TRIP)])
            # The epoll return that ends one round trip begins the next.
            start = names.find(ROUND_TRIP, start + len(ROUND_TRIP) - 1)
        trips = trips[len(trips) // 10:]
        result = {"roundTrips": float(len(trips))}
        for i, label in enumerate(PHASES):
            result[label] = median([(trip[i + 1] - trip[i]) / 1000 for trip in trips])
        return result


class _TimedPoller:
    """
    The reactor's epoll object, with its C{poll} timed (an epoll object
    takes no new attributes).
    """

    def __init__(self, poller: Any, poll: Any) -> None:
        self._poller = poller
        self.poll = poll

    def __getattr__(self, name: str) -> Any:
        return getattr(self._poller, name)


def serve(cert: str, key: str) -> None:
    """
    Run the benchmark's txtlsjson server with its phases timed, until
    SIGINT; then print the phases as one JSON line.
    """
    from twisted.internet import reactor

    from benchmarks import peer
    from benchmarks.workloads import FULL

    marks = _Marks()
    marks.install(reactor, peer.Handler)
    port = peer.SERVE["txtlsjson"](0, cert, key, peer.Handler(FULL))
    print(f"READY {port}", flush=True)
    reactor.run()
    print(json.dumps(marks.phases()), flush=True)


def serverRoundTrip() -> Dict[str, Any]:
    """
    The Node client's C{rtt} workload against a timed txtlsjson server.

    @return: the client's figure and the server's phases.
    """
    from benchmarks.run import certificates, peerCommand

    cert, key = certificates()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.timeline", "serve", "--cert", cert, "--key", key],
        stdout=subprocess.PIPE, cwd=REPOSITORY, text=True)
    assert server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"the server did not start: {line}")
        client = subprocess.run(
            peerCommand("node", "client", False,
                        ["--port", line.split()[1], "--ca", cert, "--workload", "rtt"]),
            capture_output=True, cwd=REPOSITORY, text=True, timeout=600)
        if client.returncode != 0:
            raise RuntimeError(f"the Node client failed:\n{client.stdout}{client.stderr}")
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return {"client": json.loads(client.stdout.strip().splitlines()[-1]),
            "phases": json.loads(output.strip().splitlines()[-1])}


def main(argv: Optional[List[str]] = None) -> None:
    """
    Print both measurements.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("role", nargs="?", choices=["measure", "serve"], default="measure")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args(argv)
    if args.role == "serve":
        serve(args.cert, args.key)
        return

    print("A plain socket round trip between two processes (us; the round trip a mean, "
          "the send call a median):", flush=True)
    cpus = sorted(os.sched_getaffinity(0))
    placements: List[Tuple[str, Optional[Tuple[int, int]]]] = [("left to the scheduler", None)]
    if len(cpus) >= 2:
        placements.append((f"on CPUs {cpus[0]} and {cpus[1]}", (cpus[0], cpus[1])))
    placements.append((f"both on CPU {cpus[0]}", (cpus[0], cpus[0])))
    for label, placement in placements:
        figures = pingPong(placement)
        print(f"  {label:24s} round trip {figures['roundTrip']:6.1f}   send {figures['send']:6.1f}",
              flush=True)

    if shutil.which("node") is None:
        sys.exit("Node.js (node) is not on the PATH: the server's phases are timed "
                 "under the Node client, benchmarks/node/peer.js")
    print("A txtlsjson server's round trip under the Node client (rtt; medians, us):", flush=True)
    measured = serverRoundTrip()
    phases = measured["phases"]
    for label in PHASES:
        print(f"  {label:40s} {phases[label]:6.1f}")
    print(f"  ({phases['roundTrips']:,.0f} round trips; the Node client measured "
          f"{measured['client']['value']:,.0f} req/s with the wrappers in place)")


if __name__ == "__main__":
    sys.path.insert(0, str(REPOSITORY))
    main()
