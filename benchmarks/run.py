"""
The benchmark suite: txtlsjson against Twisted AMP over TLS and a bare
JSON-lines-over-TLS ceiling (and, for big messages, the bytes of the string
with no JSON), each run as a server process and a client process on
127.0.0.1, interleaved in the same run.

    python -m benchmarks.run                 # the full suite, 3 runs (about 7 minutes)
    python -m benchmarks.run --quick --runs 1
    python -m benchmarks.run --workloads send,rtt --impls txtlsjson,bare
    python -m benchmarks.run --against-node  # txtlsjson server and client against Node's

An implementation named C{S/C} runs server C{S} with client C{C}: C{node} is
a tls-json peer in Node.js (C{benchmarks/node/peer.js}), so C{txtlsjson/node}
is a txtlsjson server driven by the Node client.  C{--against-node} runs
C{txtlsjson/node}, C{node} and C{node/txtlsjson} and gives the server's ratio
(txtlsjson server against the Node server, both under the Node client) and
the client's (txtlsjson client against the Node client, both against the
Node server).  C{many-rsa} is C{many} with an RSA 2048 certificate instead
of ECDSA P-256.  C{floor} (C{--impls floor/node,node,node/floor}) is the
tls-json wire on Twisted with nothing else: its ratios to Node show what a
Twisted implementation could reach at best.

Prints, per workload, the median of the runs with min and max, and
txtlsjson's median as a ratio to each other implementation's.  The suite
checks every workload's result (no message lost or duplicated) and exits
non-zero if one fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from benchmarks.workloads import FULL, QUICK, describe

REPOSITORY = Path(__file__).resolve().parent.parent
IMPLS = ["txtlsjson", "amp", "bare", "bytes"]
WORKLOADS = ["send", "rtt", "conc", "big1", "big16", "many",
             "send<", "rtt<", "conc<"]
#: What C{--against-node} runs: a txtlsjson server under the Node client, the
#: Node server and client, and a txtlsjson client against the Node server.
NODE_IMPLS = ["txtlsjson/node", "node", "node/txtlsjson"]
NODE_WORKLOADS = ["send", "rtt", "conc", "big1", "big16", "many", "many-rsa"]
#: The ratios of C{--against-node}: (subject, reference, column heading),
#: each shown when both are run.  The floor's (C{--impls floor/node,node,
#: node/floor}, with txtlsjson's or alone) show the least a Twisted
#: implementation of the wire costs against Node: what txtlsjson could
#: reach on this platform.
NODE_RATIOS = [("txtlsjson/node", "node", "server vs Node"),
               ("node/txtlsjson", "node", "client vs Node"),
               ("floor/node", "node", "floor server vs Node"),
               ("node/floor", "node", "floor client vs Node")]
#: Column headings for the implementations that are pairs.
HEADINGS = {"txtlsjson/node": "txtlsjson server, Node client",
            "node": "Node server, Node client",
            "node/txtlsjson": "Node server, txtlsjson client",
            "floor/node": "floor server, Node client",
            "node/floor": "Node server, floor client"}
NODE_PEER = REPOSITORY / "benchmarks" / "node" / "peer.js"
#: AMP values are limited to 64 KiB: the big workloads do not apply; the
#: bytes floor exists for them alone.
NOT_APPLICABLE = {("amp", "big1"): "64 KiB value limit", ("amp", "big16"): "64 KiB value limit"}
NOT_APPLICABLE.update({("bytes", workload): "big only"
                       for workload in WORKLOADS if not workload.startswith("big")})


def certificates(keyType: str = "ecdsa") -> Tuple[str, str]:
    """
    A fresh certificate for C{localhost} with a key of C{keyType}, and its
    key: their paths.
    """
    sys.path.insert(0, str(REPOSITORY))
    from txtlsjson.certs import makeCertificate, writeKeyPair

    directory = tempfile.mkdtemp(prefix="txtlsjson-bench-")
    key, certificate = makeCertificate("localhost", ["localhost"], keyType=keyType)
    keyPath, certPath = writeKeyPair(directory, "server", key, certificate)
    return str(certPath), str(keyPath)


def peerCommand(impl: str, role: str, quick: bool, arguments: List[str]) -> List[str]:
    """
    The command line of one peer process: C{impl}'s server or client.
    """
    if impl == "node":
        sizes = QUICK if quick else FULL
        return ["node", "--expose-gc", str(NODE_PEER), role, *arguments, "--sizes", json.dumps(sizes)]
    return [sys.executable, "-m", "benchmarks.peer", role, "--impl", impl,
            *(["--quick"] if quick else []), *arguments]


def pinnedTo(cpu: Optional[int]) -> Optional[Callable[[], None]]:
    """
    What a peer process runs before it starts, to run on C{cpu} alone (no
    pinning for L{None}).
    """
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def runPair(impl: str, workload: str, keyPairs: Dict[str, Tuple[str, str]], quick: bool,
            env: Dict[str, str], pin: bool = False) -> Dict[str, Any]:
    """
    Start a server process and a client process for one measurement.

    @param impl: an implementation (both sides), or C{"server/client"}.
    @param keyPairs: certificate and key paths by key type.
    @param pin: run the server on the second CPU and the client on the
        first, each alone.
    """
    serverImpl, _, clientImpl = impl.partition("/")
    clientImpl = clientImpl or serverImpl
    cert, key = keyPairs["rsa" if workload == "many-rsa" else "ecdsa"]
    server = subprocess.Popen(
        peerCommand(serverImpl, "serve", quick, ["--cert", cert, "--key", key]),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=env, text=True,
        preexec_fn=pinnedTo(1 if pin else None))
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("READY "):
            raise RuntimeError(f"{impl} server did not start: {line}{server.stdout.read()}")  # type: ignore[union-attr]
        port = line.split()[1]
        if workload.startswith("many"):
            role, extra = "many", []
        else:
            role = "client"
            extra = ["--workload", workload.rstrip("<")] + (["--reverse"] if workload.endswith("<") else [])
        client = subprocess.run(
            peerCommand(clientImpl, role, quick, ["--port", port, "--ca", cert, *extra]),
            capture_output=True, cwd=REPOSITORY, env=env, text=True, timeout=600,
            preexec_fn=pinnedTo(0 if pin else None))
        lines = client.stdout.strip().splitlines()
        if client.returncode != 0 or not lines:
            raise RuntimeError(f"{impl} {workload} failed:\n{client.stdout}\n{client.stderr}")
        return json.loads(lines[-1])  # type: ignore[no-any-return]
    finally:
        server.kill()
        server.wait()


def figure(result: Dict[str, Any], metric: str) -> float:
    return float(result[metric])


def summarise(values: List[float]) -> Tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def formatValue(value: float) -> str:
    if value >= 100_000:
        return f"{value / 1000:,.0f}k"
    if value >= 1000:
        return f"{value / 1000:,.1f}k"
    return f"{value:,.1f}"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="txtlsjson benchmark suite")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smaller workloads (a smoke test)")
    parser.add_argument("--impls", default=None,
                        help=f"default {','.join(IMPLS)}; with --against-node {','.join(NODE_IMPLS)}")
    parser.add_argument("--workloads", default=None,
                        help=f"default {','.join(WORKLOADS)}; with --against-node {','.join(NODE_WORKLOADS)}")
    parser.add_argument("--against-node", action="store_true",
                        help="compare txtlsjson's server and client with a Node.js tls-json peer's")
    parser.add_argument("--codec", choices=["orjson", "json"], default=None,
                        help="force the JSON codec (default: orjson if installed)")
    parser.add_argument("--reactor", choices=["epoll", "asyncio"], default="epoll",
                        help="the Python peers' reactor (default: epoll, Twisted's default here)")
    parser.add_argument("--pin", action="store_true",
                        help="run each server on the second CPU and each client on the first, "
                             "each alone: steadier figures on a shared machine (needs 2 CPUs)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args(argv)
    impls = (args.impls or ",".join(NODE_IMPLS if args.against_node else IMPLS)).split(",")
    workloads = (args.workloads or ",".join(NODE_WORKLOADS if args.against_node else WORKLOADS)).split(",")
    ratios = ([ratio for ratio in NODE_RATIOS if ratio[0] in impls and ratio[1] in impls]
              if args.against_node else
              [("txtlsjson", other, f"vs {other}") for other in impls if other != "txtlsjson"])
    env = dict(os.environ)
    if args.codec == "json":
        env["TXTLSJSON_CODEC"] = "json"
    env["PYTHONPATH"] = str(REPOSITORY)
    if args.reactor == "asyncio":
        env["TXTLSJSON_BENCH_REACTOR"] = "asyncio"
    sys.path.insert(0, str(REPOSITORY))
    from txtlsjson import codec

    codecName = "json" if args.codec == "json" else codec.CODEC
    keyPairs = {keyType: certificates(keyType) for keyType in ("ecdsa", "rsa")}
    import twisted

    if any("node" in impl for impl in impls):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"Node.js {node}", flush=True)
    print(f"txtlsjson benchmarks: {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, Twisted {twisted.__version__}, {args.reactor} reactor, "
          f"codec {codecName}, "
          f"{args.runs} run(s){' (quick)' if args.quick else ''}"
          f"{', server on CPU 1 and client on CPU 0' if args.pin else ''}", flush=True)
    results: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    started = time.time()
    for run in range(args.runs):
        for workload in workloads:
            for impl in impls:
                if (impl, workload) in NOT_APPLICABLE:
                    continue
                result = runPair(impl, workload, keyPairs, args.quick, env, args.pin)
                results.setdefault((impl, workload), []).append(result)
                shown = (f"{result['perConnection'] / 1024:.1f} KiB/conn"
                         if workload.startswith("many") else f"{formatValue(result['value'])} {result['unit']}")
                if "firstRequest" in result:
                    shown += f" (first request {formatValue(result['firstRequest'])} {result['unit']})"
                print(f"  run {run + 1} {workload:8} {impl:14} {shown}", flush=True)
    print(f"({time.time() - started:.0f} s)\n")
    print(table(results, impls, workloads, QUICK if args.quick else FULL, ratios))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {f"{i}/{w}": r for (i, w), r in results.items()}, indent=1))


def table(results: Dict[Tuple[str, str], List[Dict[str, Any]]], impls: List[str],
          workloads: List[str], sizes: Dict[str, Any], ratios: List[Tuple[str, str, str]]) -> str:
    """
    The results as an RST table: median [min-max] per implementation, and
    the ratios asked for, each a (subject, reference, heading): the
    subject's median over the reference's.
    """
    header = ["workload"] + [HEADINGS.get(i, i) for i in impls] + [heading for _, _, heading in ratios]
    rows: List[List[str]] = []
    for workload in workloads:
        # (metric, label added to the description, unit, scale, higher is better)
        metrics: List[Tuple[str, str, Optional[str], float, bool]]
        if workload.startswith("many"):
            # The connect rate is the slower side's; each side's CPU a
            # connection says which, and what the other could take.
            metrics = [("perConnection", " (KiB/conn)", "KiB/conn", 1 / 1024, False),
                       ("connectRate", " (conn/s)", "conn/s", 1, True),
                       ("serverCpu", ", server CPU a connection", "us/conn", 1, False),
                       ("clientCpu", ", client CPU a connection", "us/conn", 1, False),
                       ("roundRate", " (req/s)", "req/s", 1, True)]
        elif workload.startswith("big"):
            metrics = [("value", "", None, 1, True),
                       ("firstRequest", ", first request alone", None, 1, True)]
        else:
            # The side running the loop is the client, or with "<" the server.
            local, peer = ("server", "client") if workload.endswith("<") else ("client", "server")
            metrics = [("value", "", None, 1, True),
                       ("peerCpu", f", {peer} CPU", "us/op", 1, False),
                       ("localCpu", f", {local} CPU", "us/op", 1, False)]
        for metric, label, unitName, scale, higherBetter in metrics:
            row = [describe(workload, sizes) + label]
            medians: Dict[str, float] = {}
            for impl in impls:
                runs = results.get((impl, workload))
                if not runs:
                    row.append(f"n/a ({NOT_APPLICABLE.get((impl, workload), 'not run')})")
                    continue
                median, low, high = summarise([figure(r, metric) * scale for r in runs])
                medians[impl] = median
                unit = unitName or runs[0]["unit"]
                row.append(f"{formatValue(median)} {unit} [{formatValue(low)}-{formatValue(high)}]")
            for subject, reference, _ in ratios:
                if subject in medians and reference in medians and medians[reference]:
                    ratio = medians[subject] / medians[reference]
                    row.append(f"{ratio:.2f}x" + ("" if higherBetter else " (lower is better)"))
                else:
                    row.append("--")
            rows.append(row)
        if workload == "big16" and "big1" in workloads:
            rows.append(linearity(results, impls, len(ratios)))
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append(rule)
    return "\n".join(lines)


def linearity(results: Dict[Tuple[str, str], List[Dict[str, Any]]], impls: List[str],
              ratioColumns: int) -> List[str]:
    """
    The table row giving, for each implementation, its median MB/s at 16 MiB
    as a share of its median at 1 MiB: at 1.00x a byte costs the same in
    either (the target is 0.8x or more).
    """
    row = ["big: 16 MiB MB/s as a share of 1 MiB's"]
    for impl in impls:
        small, big = results.get((impl, "big1")), results.get((impl, "big16"))
        if not small or not big:
            row.append("--")
            continue
        share = (statistics.median(figure(r, "value") for r in big)
                 / statistics.median(figure(r, "value") for r in small))
        row.append(f"{share:.2f}x")
    return row + ["--"] * ratioColumns


if __name__ == "__main__":
    main()
