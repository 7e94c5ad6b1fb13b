"""
C{twistd tlsjson --workers N} against one process: concurrent requests
from several client processes at once, summed.

    python -m benchmarks.workers                    # workers 1 and 2, 3 clients, 3 runs
    python -m benchmarks.workers --workers 1,2,4 --clients 4 --runs 5
    python -m benchmarks.workers --driver node   # the clients are Node.js tls-json peers

Each run starts the real C{twistd -n tlsjson} (the built-in echo handler)
for each worker count in turn, waits until every worker accepts, then runs
the C{conc} workload of C{benchmarks.peer} from C{--clients} processes at
once and adds up their requests per second.  The clients share the
machine's cores with the server, as they would on one host.  Prints, per
worker count, the median with min and max and the ratio to the first
count.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from benchmarks.peer import PASSWORD
from benchmarks.run import REPOSITORY, certificates, peerCommand

#: Seconds a server may take to start, and a client to finish.
START_LIMIT = 30.0
CLIENT_LIMIT = 600.0


def startServer(workers: int, cert: str, key: str, passwordFile: str,
                log: Path) -> "tuple[subprocess.Popen[bytes], int]":
    """
    Start C{twistd tlsjson --workers N} on a free port of 127.0.0.1.

    @return: the process and its port, once every worker accepts.
    """
    twistd = str(Path(sys.executable).parent / "twistd")
    process = subprocess.Popen(
        [twistd, "-n", "--pidfile=", f"--logfile={log}", "tlsjson", "--port", "0",
         "--interface", "127.0.0.1", "--cert", cert, "--key", key,
         "--password-file", passwordFile, "--workers", str(workers),
         "--request-timeout", "600", "--keepalive-interval", "0"],
        cwd=REPOSITORY, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        port = re.search(r"port=(\d+)", text)
        ready = text.count(" accepting on ") >= workers if workers > 1 else port is not None
        if port and ready:
            return process, int(port.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"twistd ended: {text}")
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"twistd did not start within {START_LIMIT} s")


def load(port: int, cert: str, clients: int, quick: bool, driver: str) -> float:
    """
    Run C{conc} from C{clients} processes at once, each a C{driver} peer
    (C{txtlsjson} or C{node}).

    @return: their requests per second, added up.
    """
    command = peerCommand(driver, "client", quick,
                          ["--port", str(port), "--ca", cert, "--workload", "conc"])
    running = [subprocess.Popen(command, cwd=REPOSITORY, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    total = 0.0
    for process in running:
        out, err = process.communicate(timeout=CLIENT_LIMIT)
        if process.returncode != 0:
            raise RuntimeError(f"client failed:\n{out}\n{err}")
        total += json.loads(out.strip().splitlines()[-1])["value"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts (default: 1,2)")
    parser.add_argument("--clients", type=int, default=3, help="client processes (default: 3)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10,000 requests a client")
    parser.add_argument("--driver", choices=["txtlsjson", "node"], default="txtlsjson",
                        help="the client processes' implementation (default: txtlsjson)")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    cert, key = certificates()
    directory = Path(tempfile.mkdtemp(prefix="txtlsjson-workers-"))
    passwordFile = directory / "password"
    passwordFile.write_text(PASSWORD)
    os.environ["PYTHONPATH"] = str(REPOSITORY)
    print(f"--workers benchmark: {os.cpu_count()} cores, {args.clients} {args.driver} client processes "
          f"running conc at once, {args.runs} run(s)", flush=True)
    results: Dict[int, List[float]] = {n: [] for n in counts}
    for run in range(args.runs):
        for count in counts:
            log = directory / f"twistd-{run}-{count}.log"
            process, port = startServer(count, cert, key, str(passwordFile), log)
            try:
                figure = load(port, cert, args.clients, args.quick, args.driver)
            finally:
                process.terminate()
                process.wait(timeout=30)
            results[count].append(figure)
            print(f"  run {run + 1} --workers {count}: {figure / 1000:,.1f}k req/s", flush=True)
    base = statistics.median(results[counts[0]])
    print()
    for count in counts:
        values = results[count]
        median = statistics.median(values)
        print(f"--workers {count}: {median / 1000:,.1f}k req/s "
              f"[{min(values) / 1000:,.1f}k-{max(values) / 1000:,.1f}k]  "
              f"{median / base:.2f}x --workers {counts[0]}")


if __name__ == "__main__":
    main()
