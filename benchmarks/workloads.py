"""
The sizes of the benchmark workloads, full and quick, and their
descriptions: shared by the suite (C{run.py}), which prints them, and the
peers (C{peer.py}), which run them.
"""

from __future__ import annotations

from typing import Any, Dict

#: Workload sizes: message and request counts, the conc window, the big
#: message sizes with the number of timed requests of each, and the number
#: of clients held at once.
FULL: Dict[str, Any] = {
    "send": 100_000, "rtt": 20_000, "conc": 100_000, "window": 1000,
    "big": [(1024 * 1024, 96), (16 * 1024 * 1024, 8)], "many": 5000}
QUICK: Dict[str, Any] = {
    "send": 10_000, "rtt": 2_000, "conc": 10_000, "window": 1000,
    "big": [(1024 * 1024, 4), (16 * 1024 * 1024, 1)], "many": 500}


def describe(workload: str, sizes: Dict[str, Any]) -> str:
    """
    The table's description of C{workload} run at C{sizes}.
    """
    if workload.endswith("<"):
        return f"{workload[:-1]}, server->client"
    if workload.startswith("big"):
        return f"big: {workload[3:]} MiB string requests"
    return {
        "send": f"send: {sizes['send']:,} one-way messages client->server",
        "rtt": f"rtt: {sizes['rtt']:,} sequential requests",
        "conc": f"conc: {sizes['conc']:,} requests, {sizes['window']:,} outstanding",
        "many": f"many: {sizes['many']:,} clients at once",
        "many-rsa": f"many: {sizes['many']:,} clients at once, RSA 2048",
    }[workload]
