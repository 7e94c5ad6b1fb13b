"""
The benchmark suite: txtlsjson against Twisted AMP over TLS and a bare
JSON-lines-over-TLS ceiling (and, for big messages, the bytes of the string
with no JSON), each run as a server process and a client process on
127.0.0.1, interleaved in the same run.

    python -m benchmarks.run                 # the full suite, 3 runs (about 7 minutes)
    python -m benchmarks.run --quick --runs 1
    python -m benchmarks.run --workloads send,rtt --impls txtlsjson,bare

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
from typing import Any, Dict, List, Optional, Tuple

from benchmarks.workloads import FULL, QUICK, describe

REPOSITORY = Path(__file__).resolve().parent.parent
IMPLS = ["txtlsjson", "amp", "bare", "bytes"]
WORKLOADS = ["send", "rtt", "conc", "big1", "big16", "many",
             "send<", "rtt<", "conc<"]
#: AMP values are limited to 64 KiB: the big workloads do not apply; the
#: bytes floor exists for them alone.
NOT_APPLICABLE = {("amp", "big1"): "64 KiB value limit", ("amp", "big16"): "64 KiB value limit"}
NOT_APPLICABLE.update({("bytes", workload): "big only"
                       for workload in WORKLOADS if not workload.startswith("big")})


def certificates() -> Tuple[str, str]:
    sys.path.insert(0, str(REPOSITORY))
    from txtlsjson.certs import makeCertificate, writeKeyPair

    directory = tempfile.mkdtemp(prefix="txtlsjson-bench-")
    key, certificate = makeCertificate("localhost", ["localhost"], keyType="ecdsa")
    keyPath, certPath = writeKeyPair(directory, "server", key, certificate)
    return str(certPath), str(keyPath)


def runPair(impl: str, workload: str, cert: str, key: str, quick: bool,
            env: Dict[str, str]) -> Dict[str, Any]:
    """
    Start a server process and a client process for one measurement.
    """
    common = ["--impl", impl] + (["--quick"] if quick else [])
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.peer", "serve", "--cert", cert, "--key", key, *common],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=env, text=True)
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("READY "):
            raise RuntimeError(f"{impl} server did not start: {line}{server.stdout.read()}")  # type: ignore[union-attr]
        port = line.split()[1]
        if workload == "many":
            role, extra = "many", []
        else:
            role = "client"
            extra = ["--workload", workload.rstrip("<")] + (["--reverse"] if workload.endswith("<") else [])
        client = subprocess.run(
            [sys.executable, "-m", "benchmarks.peer", role, "--port", port, "--ca", cert,
             *common, *extra],
            capture_output=True, cwd=REPOSITORY, env=env, text=True, timeout=600)
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
    parser.add_argument("--impls", default=",".join(IMPLS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--codec", choices=["orjson", "json"], default=None,
                        help="force the JSON codec (default: orjson if installed)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    args = parser.parse_args(argv)
    impls = args.impls.split(",")
    workloads = args.workloads.split(",")
    env = dict(os.environ)
    if args.codec == "json":
        env["TXTLSJSON_CODEC"] = "json"
    env["PYTHONPATH"] = str(REPOSITORY)
    sys.path.insert(0, str(REPOSITORY))
    from txtlsjson import codec

    codecName = "json" if args.codec == "json" else codec.CODEC
    cert, key = certificates()
    import twisted

    print(f"txtlsjson benchmarks: {platform.machine()} {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, Twisted {twisted.__version__}, codec {codecName}, "
          f"{args.runs} run(s){' (quick)' if args.quick else ''}", flush=True)
    results: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
    started = time.time()
    for run in range(args.runs):
        for workload in workloads:
            for impl in impls:
                if (impl, workload) in NOT_APPLICABLE:
                    continue
                result = runPair(impl, workload, cert, key, args.quick, env)
                results.setdefault((impl, workload), []).append(result)
                shown = (f"{result['perConnection'] / 1024:.1f} KiB/conn"
                         if workload == "many" else f"{formatValue(result['value'])} {result['unit']}")
                if "firstRequest" in result:
                    shown += f" (first request {formatValue(result['firstRequest'])} {result['unit']})"
                print(f"  run {run + 1} {workload:6} {impl:9} {shown}", flush=True)
    print(f"({time.time() - started:.0f} s)\n")
    print(table(results, impls, workloads, QUICK if args.quick else FULL))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {f"{i}/{w}": r for (i, w), r in results.items()}, indent=1))


def table(results: Dict[Tuple[str, str], List[Dict[str, Any]]], impls: List[str],
          workloads: List[str], sizes: Dict[str, Any]) -> str:
    """
    The results as an RST table: median [min-max] per implementation, and
    txtlsjson's ratio to each other implementation.
    """
    others = [i for i in impls if i != "txtlsjson"]
    header = ["workload"] + impls + [f"vs {o}" for o in others]
    rows: List[List[str]] = []
    for workload in workloads:
        # (metric, label added to the description, unit, scale, higher is better)
        metrics: List[Tuple[str, str, Optional[str], float, bool]]
        if workload == "many":
            metrics = [("perConnection", " (KiB/conn)", "KiB/conn", 1 / 1024, False),
                       ("connectRate", " (conn/s)", "conn/s", 1, True),
                       ("roundRate", " (req/s)", "req/s", 1, True)]
        elif workload.startswith("big"):
            metrics = [("value", "", None, 1, True),
                       ("firstRequest", ", first request alone", None, 1, True)]
        else:
            metrics = [("value", "", None, 1, True)]
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
            for other in others:
                if "txtlsjson" in medians and other in medians and medians[other]:
                    ratio = medians["txtlsjson"] / medians[other]
                    row.append(f"{ratio:.2f}x" + ("" if higherBetter else " (lower is better)"))
                else:
                    row.append("--")
            rows.append(row)
        if workload == "big16" and "big1" in workloads:
            rows.append(linearity(results, impls, others))
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(h.ljust(w) for h, w in zip(header, widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append(rule)
    return "\n".join(lines)


def linearity(results: Dict[Tuple[str, str], List[Dict[str, Any]]], impls: List[str],
              others: List[str]) -> List[str]:
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
    return row + ["--"] * len(others)


if __name__ == "__main__":
    main()
