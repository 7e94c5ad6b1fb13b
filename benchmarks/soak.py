"""
Soak: many clients sending and requesting both ways against a real twistd
server process for a bounded time, while a fault injector keeps cutting a
fraction of them.  At the end every request has resolved or failed, no
message arrived twice, the server's memory is back near its baseline, and
no connection or timer is left on the server.

    python -m benchmarks.soak                          # 200 clients, 60 s
    python -m benchmarks.soak --clients 50 --seconds 10

The test suite runs a short version (tests/test_soak.py).  Everything runs
on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import gc
import json
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import LoopingCall, deferLater

PASSWORD = "soak-password"


class SoakHandler:
    """
    The server side of the soak (a C{twistd tlsjson --handler}): it pushes a
    numbered message to each client every 50 ms and a request every fourth
    time, counts what it receives, and answers C{{"op": "stats"}} with its
    bookkeeping.
    """

    def __init__(self, server: Any) -> None:
        from twisted.internet import reactor

        self.server = server
        self.reactor = reactor
        self.lastSeq: Dict[str, int] = {}
        self.messages = 0
        self.duplicates = 0
        self.pushers: Dict[int, LoopingCall] = {}
        self.pushed: Dict[int, int] = {}
        self.resolved = 0
        self.failed = 0
        self.pending: Dict[int, Deferred[Any]] = {}
        self.nextRequest = 0

    def authenticated(self, connectionId: int, peer: Any) -> None:
        pusher = LoopingCall(self._push, connectionId)
        pusher.clock = self.reactor
        self.pushers[connectionId] = pusher
        self.pushed[connectionId] = 0
        pusher.start(0.05, now=False)

    def _push(self, connectionId: int) -> None:
        seq = self.pushed[connectionId] = self.pushed[connectionId] + 1
        self.server.send(connectionId, {"seq": seq})
        if seq % 4 == 0:
            self.nextRequest += 1
            ident = self.nextRequest
            d = self.server.request(connectionId, {"ping": ident})
            self.pending[ident] = d
            d.addCallbacks(self._resolved, self._failed, callbackArgs=(ident,),
                           errbackArgs=(ident,))

    def _resolved(self, response: Any, ident: int) -> None:
        del self.pending[ident]
        self.resolved += 1

    def _failed(self, failure: Any, ident: int) -> None:
        del self.pending[ident]
        self.failed += 1

    def close(self, connectionId: int) -> None:
        pusher = self.pushers.pop(connectionId, None)
        if pusher is not None and pusher.running:
            pusher.stop()
        self.pushed.pop(connectionId, None)

    def message(self, connectionId: int, message: Any) -> None:
        client, seq = message["client"], message["seq"]
        if seq <= self.lastSeq.get(client, 0):
            self.duplicates += 1
        else:
            self.lastSeq[client] = seq
        self.messages += 1

    def request(self, connectionId: int, request: Any) -> Any:
        if request.get("op") != "stats":
            return {"echo": request}
        # The asking connection is not part of the soak: no pushing to it.
        self.close(connectionId)
        gc.collect()
        # Twisted's DelayedCall has func; IDelayedCall does not promise it.
        calls = [repr(getattr(c, "func", c)) for c in self.reactor.getDelayedCalls()]
        return {
            "messages": self.messages,
            "duplicates": self.duplicates,
            "serverRequests": {"resolved": self.resolved, "failed": self.failed,
                               "pending": len(self.pending)},
            "connections": len(self.server.factory.connections),
            "timers": calls,
            "rss": _rss(),
        }


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # type: ignore[no-any-return]


class SoakClient:
    """
    One client of the soak: sends numbered messages and requests every
    tick, answers the server's requests, and checks the server's numbered
    messages arrive once each and in order on each connection.
    """

    def __init__(self, name: str, port: int, ca: Path, reactor: Any) -> None:
        from txtlsjson import Client

        self.name = name
        self.client = Client("localhost", port, PASSWORD, ca=[ca], reconnectInterval=0.1,
                             requestTimeout=5, idleTimeout=5, connectTimeout=5,
                             reactor=reactor)
        self.seq = 0
        self.requests: List[Deferred[Any]] = []
        self.lastPushed = 0
        self.duplicates = 0
        self.authentications = 0
        self.client.on("authenticated", self._authenticated)
        self.client.on("message", self._message)
        self.client.on("request", lambda request, res: res.send({"pong": request["ping"]}))
        self.client.on("error", lambda error: None)

    def _authenticated(self) -> None:
        self.authentications += 1
        self.lastPushed = 0

    def _message(self, message: Any) -> None:
        if message["seq"] <= self.lastPushed:
            self.duplicates += 1
        self.lastPushed = message["seq"]

    def tick(self) -> None:
        if not self.client.isAuthenticated:
            return
        self.seq += 1
        self.client.send({"client": self.name, "seq": self.seq})
        self.requests.append(self.client.request({"client": self.name, "n": self.seq}))


async def runSoak(reactor: Any, clients: int, seconds: float, flakyFraction: float = 0.25,
                  log: Any = None) -> Dict[str, Any]:
    """
    Run the soak and return its report (see L{main}).
    """
    from tests.faults import FlakyProxy
    from tests.processes import REPOSITORY, twistd
    from txtlsjson import Client
    from txtlsjson.certs import makeCertificate, writeKeyPair

    say = log or (lambda text: None)
    directory = Path(tempfile.mkdtemp(prefix="txtlsjson-soak-"))
    key, certificate = makeCertificate("localhost", ["localhost"], keyType="ecdsa")
    keyPath, certPath = writeKeyPair(directory, "server", key, certificate)
    (directory / "password").write_text(PASSWORD)
    port = _freePort()
    server = twistd("-n", "--pidfile=", "--logfile=" + str(directory / "server.log"),
                    "tlsjson", "--port", str(port), "--interface", "127.0.0.1",
                    "--cert", str(certPath), "--key", str(keyPath),
                    "--password-file", str(directory / "password"),
                    "--keepalive-interval", "1", "--keepalive-timeout", "1",
                    "--handler", "benchmarks.soak:SoakHandler",
                    env={"PYTHONPATH": str(REPOSITORY)}, cwd=directory, limit=seconds + 120)
    proxy = FlakyProxy(reactor, port, seed=2026, maxLife=1.0, maxBytes=8000)
    proxyPort = proxy.listen()

    async def stats() -> Dict[str, Any]:
        asker = Client("localhost", port, PASSWORD, ca=[certPath], reactor=reactor)
        await asker.connect()
        try:
            return await asker.request({"op": "stats"})
        finally:
            await asker.disconnect()

    soakers: List[SoakClient] = []
    try:
        for _ in range(200):
            if (directory / "server.log").exists() and \
                    "listening on" in (directory / "server.log").read_text():
                break
            await deferLater(reactor, 0.05, lambda: None)
        baseline = await stats()
        flaky = int(clients * flakyFraction)
        for i in range(clients):
            target = proxyPort if i < flaky else port
            soakers.append(SoakClient(f"c{i}", target, certPath, reactor))
        say(f"{clients} clients ({flaky} through the flaky proxy), {seconds} s")
        for soaker in soakers:
            soaker.client.connect()
        ticks = int(seconds / 0.05)
        for tick in range(ticks):
            for soaker in soakers:
                soaker.tick()
            await deferLater(reactor, 0.05, lambda: None)
            if log and tick % int(max(1, 5 / 0.05)) == 0:
                connected = sum(s.client.isAuthenticated for s in soakers)
                say(f"  t={tick * 0.05:5.1f}s connected={connected}/{clients} "
                    f"cuts={proxy.cuts}")
        proxy.flakiness = 0.0
        await gatherResults([s.client.disconnect() for s in soakers])
        await proxy.stop()
        await deferLater(reactor, 0.5, lambda: None)  # let the server see every close
        final = await stats()
    finally:
        for soaker in soakers:
            await soaker.client.disconnect()
        server.signal("TERM")
        await server.ended

    outcomes: Dict[str, int] = {"resolved": 0, "failed": 0, "hanging": 0}
    for soaker in soakers:
        for d in soaker.requests:
            if not d.called:
                outcomes["hanging"] += 1
                continue
            results: List[Any] = []
            d.addBoth(results.append)
            outcomes["resolved" if isinstance(results[0], dict) else "failed"] += 1
    return {
        "clients": clients,
        "seconds": seconds,
        "cuts": proxy.cuts,
        "authentications": sum(s.authentications for s in soakers),
        "clientRequests": outcomes,
        "serverRequests": final["serverRequests"],
        "messagesToServer": final["messages"],
        "duplicatesAtServer": final["duplicates"],
        "duplicatesAtClients": sum(s.duplicates for s in soakers),
        "serverConnectionsLeft": final["connections"] - 1,
        "serverTimersLeft": final["timers"],
        "serverRSS": {"baseline": baseline["rss"], "end": final["rss"]},
    }


def check(report: Dict[str, Any], rssSlack: int = 32 * 1024 * 1024) -> List[str]:
    """
    @return: what the report shows to be wrong (nothing, if all is well).
    """
    problems = []
    if report["clientRequests"]["hanging"]:
        problems.append(f"{report['clientRequests']['hanging']} client requests left hanging")
    if report["serverRequests"]["pending"]:
        problems.append(f"{report['serverRequests']['pending']} server requests left pending")
    if report["duplicatesAtServer"] or report["duplicatesAtClients"]:
        problems.append("duplicated messages")
    if report["serverConnectionsLeft"]:
        problems.append(f"{report['serverConnectionsLeft']} connections left on the server")
    # The asking connection's keepalive ping is the only timer allowed.
    others = [t for t in report["serverTimersLeft"] if "_ping" not in t and "_pongTimedOut" not in t]
    if others or len(report["serverTimersLeft"]) > 1:
        problems.append(f"timers left on the server: {report['serverTimersLeft']}")
    rss = report["serverRSS"]
    if rss["end"] > rss["baseline"] + rssSlack:
        problems.append(f"server RSS {rss['end']} not back near its baseline {rss['baseline']}")
    if not report["clientRequests"]["resolved"] or not report["serverRequests"]["resolved"]:
        problems.append("no request resolved at all")
    return problems


def main(argv: Optional[List[str]] = None) -> None:
    """
    Run the soak from the command line and print its report as JSON.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--flaky", type=float, default=0.25,
                        help="fraction of clients behind the flaky proxy (default: 0.25)")
    args = parser.parse_args(argv)

    import resource

    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import react

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run(_: Any) -> None:
        report = await runSoak(reactor, args.clients, args.seconds, args.flaky,
                               log=lambda text: print(text, flush=True))
        print(json.dumps(report, indent=2))
        problems = check(report)
        for problem in problems:
            print("PROBLEM:", problem)
        if problems:
            raise SystemExit(1)
        print("soak passed")

    react(lambda r: ensureDeferred(run(r)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
