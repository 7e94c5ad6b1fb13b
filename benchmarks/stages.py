"""
txtlsjson's own per-byte work on a big message, stage by stage, at 1 MiB
and 16 MiB: encoding whole, encoding as a connection that has sent a long
line does (a string of 2 MiB or more piece by piece, as it is sent),
framing (fed in 32 KiB pieces, as TLS delivers them) and decoding -- next
to a plain copy of the same bytes, the machine's own reference: a 1 MiB
message stays in the CPU's caches, a 16 MiB one does not, so even a copy
slows down per byte.

    python -m benchmarks.stages
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Dict


def best(function: Callable[[], object], repeats: int = 5) -> float:
    """
    The fastest of C{repeats} timings of C{function}, in seconds.
    """
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(size: int) -> Dict[str, float]:
    """
    MB/s of each stage for a request carrying a string of C{size} bytes.
    """
    from txtlsjson.codec import decodeLine, encodeMessageLine
    from txtlsjson.pieced import PiecedLine, encodeLongMessage
    from txtlsjson.framing import LineBuffer

    request = {"op": "len", "data": "x" * size}
    line = encodeMessageLine(request, "requestId", 1)
    received = line[:-1]
    pieces = [line[i:i + 32768] for i in range(0, len(line), 32768)]

    def encodePieced() -> None:
        line = encodeLongMessage(request, "requestId", 1)
        if isinstance(line, PiecedLine):
            for _ in line.pieces():
                pass

    def frame() -> None:
        buffer = LineBuffer()
        for piece in pieces:
            buffer.feed(piece, 64 * 1024 * 1024)

    megabytes = size / 1e6
    return {
        "copy": megabytes / best(lambda: bytearray(line)),
        "encode": megabytes / best(lambda: encodeMessageLine(request, "requestId", 1)),
        "pieced": megabytes / best(encodePieced),
        "frame": megabytes / best(frame),
        "decode": megabytes / best(lambda: decodeLine(received)),
    }


def main() -> None:
    """
    Print the table.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from txtlsjson.codec import CODEC

    small, big = measure(1 << 20), measure(16 << 20)
    print(f"codec {CODEC}")
    print(f"{'stage':8} {'1 MiB':>12} {'16 MiB':>12} {'ratio':>7}")
    for stage in small:
        print(f"{stage:8} {small[stage]:9.0f} MB/s {big[stage]:9.0f} MB/s "
              f"{big[stage] / small[stage]:6.2f}x")


if __name__ == "__main__":
    main()
